//! Workload identity and ID-JAGs against node oidc-provider: its JWT bearer grant handler and
//! ID-JAG issuance (tests/interop/server.mjs), two provider instances for the two legs.

use std::sync::Arc;
use std::time::Duration;

use agent_oauth::assertion::AssertionSource;
use agent_oauth::grant::IdJagIssuer;
use agent_oauth::testkit::TestIdentityIssuer;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::Digest as _;

use super::claims;
use crate::support::oidc_provider::OidcProvider;
use crate::support::prelude::{
    Agent, AuthorizationServer, ClientAuth, HttpTransport, OAuthClient, OAuthErrorCode, TokenParams,
};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// GET `path` at `p` as JSON.
async fn get_json(p: &OidcProvider, path: &str) -> Value {
    let body = p
        .http_client()
        .get(p.url(path))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// The harness's grant counters.
async fn counters(p: &OidcProvider) -> Value {
    get_json(p, "/test/counters").await
}

fn client(issuer: &str, client_id: &str, auth: ClientAuth) -> OAuthClient {
    let server = AuthorizationServer::new(issuer, HttpTransport::new().unwrap()).unwrap();
    OAuthClient::builder(server, client_id).auth(auth).build()
}

#[tokio::test]
async fn workload_identity_interop_rotating_token_file_at_oidc_provider() {
    let platform = TestIdentityIssuer::new("https://kubernetes.default.svc");
    let Some(p) = OidcProvider::start(json!({
        "resource_server": true,
        "jwt_bearer": {"trusted": [{"issuer": platform.issuer(),
                                    "jwks": {"keys": [platform.public_jwk()]}}]},
        "clients": [{
            "client_id": "workload", "token_endpoint_auth_method": "none",
            "grant_types": [JWT_BEARER], "redirect_uris": [], "response_types": []
        }],
    }))
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let write = |sub: &str| {
        let tmp = dir.path().join("token.tmp");
        std::fs::write(
            &tmp,
            platform.mint(sub, &p.issuer, Duration::from_secs(3600)),
        )
        .unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };
    write("system:serviceaccount:agents:one");
    let resource = p.url("/api");
    // oidc-provider identifies every token request's client: a public client, no secret.
    let agent = Agent::builder()
        .issuer(&p.issuer)
        .client_id("workload")
        .client_auth(ClientAuth::none())
        .jwt_bearer(AssertionSource::file(&path))
        .resource(&resource)
        .scope("read")
        .build()
        .await
        .unwrap();
    let resp = agent.get(&resource).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{}", p.stderr_log());
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["sub"], "system:serviceaccount:agents:one");
    // DPoP-bound by default: the provider bound the token to the agent's key.
    assert!(body["cnf"]["jkt"].is_string(), "{body}");

    write("system:serviceaccount:agents:two");
    let t = agent
        .client()
        .unwrap()
        .jwt_bearer_from(
            &AssertionSource::file(&path),
            &TokenParams::new().resource(&resource),
        )
        .await
        .unwrap();
    assert_eq!(
        claims(t.access_token.secret())["sub"],
        "system:serviceaccount:agents:two"
    );
    assert_eq!(counters(&p).await["jwt_bearer"], 2);

    // An assertion of an untrusted issuer is invalid_grant.
    let stranger = TestIdentityIssuer::new("https://evil.example");
    let e = agent
        .client()
        .unwrap()
        .jwt_bearer(
            &stranger
                .mint("sa", &p.issuer, Duration::from_secs(60))
                .into(),
            &TokenParams::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidGrant),
        "{e}"
    );
}

/// The ID token and refresh token of a headless login at `idp` for client `app`.
async fn login(idp: &OidcProvider) -> (String, Option<String>) {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = b64.encode(rand::random::<[u8; 32]>());
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let code = idp
        .authorize_headless(
            "app",
            REDIRECT,
            "openid offline_access",
            &challenge,
            "s",
            &[("prompt", "consent")],
        )
        .await;
    let body: Value = idp
        .http_client()
        .post(idp.url("/token"))
        .basic_auth("app", Some("app-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap();
    let id_token = body["id_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no id_token: {body}"))
        .to_owned();
    (id_token, body["refresh_token"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn id_jag_interop_both_legs_across_two_oidc_providers() {
    let app = |grants: Value| {
        json!([{
            "client_id": "app", "client_secret": "app-secret",
            "grant_types": grants, "redirect_uris": [REDIRECT], "response_types": ["code"]
        }])
    };
    let Some(idp) = OidcProvider::start(json!({
        "token_exchange": true, "id_jag": true,
        "resource_indicators": ["https://any.example/"],
        "clients": app(json!(["authorization_code", "refresh_token", TE])),
    }))
    .await
    else {
        return;
    };
    let idp_jwks = get_json(&idp, "/jwks").await;
    let Some(mcp_as) = OidcProvider::start(json!({
        "resource_server": true,
        "jwt_bearer": {"trusted": [{"issuer": idp.issuer, "jwks": idp_jwks}]},
        "clients": app(json!([JWT_BEARER])),
    }))
    .await
    else {
        return;
    };
    let (id_token, refresh_token) = login(&idp).await;
    let idp_client = || {
        client(
            &idp.issuer,
            "app",
            ClientAuth::client_secret_basic("app-secret"),
        )
    };
    let issuer = Arc::new(IdJagIssuer::new(
        idp_client(),
        AssertionSource::fixed(id_token),
    ));
    let resource = mcp_as.url("/api");
    let agent = Agent::builder()
        .issuer(&mcp_as.issuer)
        .client_id("app")
        .client_auth(ClientAuth::client_secret("app-secret"))
        .enterprise_authorization(issuer.clone())
        .resource(&resource)
        .scope("read")
        .build()
        .await
        .unwrap();
    let resp = agent.get(&resource).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}\n{}",
        idp.stderr_log(),
        mcp_as.stderr_log()
    );
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["sub"], "agent-user");
    assert_eq!(body["client_id"], "app");
    assert_eq!(body["scope"], "read");

    // A second access token from the cached ID-JAG: one ID-JAG, two JWT bearer grants.
    issuer
        .access_token(
            agent.client().unwrap(),
            &TokenParams::new().resource(&resource).scope("read"),
        )
        .await
        .unwrap();
    assert_eq!(counters(&idp).await["id_jag"], 1);
    assert_eq!(counters(&mcp_as).await["jwt_bearer"], 2);

    // The ID-JAG cannot be used by another client of the AS (its client_id claim).
    let jag = issuer
        .id_jag(&mcp_as.issuer, &resource, Some(&"read".into()))
        .await
        .unwrap();
    let c = claims(jag.assertion().expose_secret());
    assert_eq!(c["aud"], json!(mcp_as.issuer));
    assert_eq!(c["resource"], json!(resource));
    assert_eq!(c["client_id"], "app");

    // A refresh-derived ID token: the IdP grant's refresh token yields the subject.
    let refresh_token = refresh_token.expect("a refresh token for offline_access");
    let from_refresh = IdJagIssuer::from_refresh_token(
        idp_client(),
        agent_oauth::RefreshToken::new(refresh_token),
    );
    let jag = from_refresh
        .id_jag(&mcp_as.issuer, &resource, None)
        .await
        .unwrap();
    assert_eq!(claims(jag.assertion().expose_secret())["sub"], "agent-user");
    assert_eq!(counters(&idp).await["id_jag"], 2);
}
