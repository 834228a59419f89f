//! Workload identity and enterprise-managed authorization: the JWT bearer grant (RFC 7523) with
//! assertions from files, variables, commands and closures; SPIFFE JWT-SVIDs as client
//! assertions; ID-JAGs (both legs) with their cache. Against the embedded server here; against
//! oidc-provider in `interop`.

mod interop;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agent_oauth::assertion::AssertionSource;
use agent_oauth::grant::IdJagIssuer;
use agent_oauth::testkit::TestIdentityIssuer;

use crate::support::prelude::{
    Agent, AuthorizationServer, ClientAuth, Error, HttpTransport, OAuthClient, OAuthErrorCode,
    SecretString, TestClient, TestClientAuth, TestServer, TestServerConfig, TokenParams,
};

fn claims(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("b64"),
    )
    .expect("json")
}

fn client(issuer: &str, client_id: &str, auth: ClientAuth) -> OAuthClient {
    let server = AuthorizationServer::new(issuer, HttpTransport::new().unwrap()).unwrap();
    OAuthClient::builder(server, client_id).auth(auth).build()
}

/// A server trusting the workload platform `platform`.
async fn trusting(platform: &TestIdentityIssuer) -> TestServer {
    TestServer::start_with(
        TestServerConfig::default().with_trusted_issuer(platform.issuer(), platform.public_jwk()),
    )
    .await
}

#[tokio::test]
async fn workload_identity_agent_follows_a_rotating_token_file() {
    let platform = TestIdentityIssuer::new("https://kubernetes.default.svc");
    let server = trusting(&platform).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    let write = |sub: &str| {
        let jwt = platform.mint(sub, server.issuer(), Duration::from_secs(3600));
        // The kubelet's atomic writer: a new file renamed over the old one.
        let tmp = dir.path().join("token.tmp");
        std::fs::write(&tmp, &jwt).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        jwt
    };
    write("system:serviceaccount:agents:first");
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_auth(ClientAuth::omitted())
        .jwt_bearer(AssertionSource::file(&path))
        .resource(server.resource_url())
        .scope("read")
        .build()
        .await
        .unwrap();
    let resp = agent.get(server.resource_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["sub"], "system:serviceaccount:agents:first");
    assert_eq!(server.stats().grants.jwt_bearer, 1);

    // The platform rotates the file mid-run; the next token request carries the new token.
    write("system:serviceaccount:agents:second");
    server.revoke_all();
    let resp = agent.get(server.resource_url()).send().await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["sub"], "system:serviceaccount:agents:second");
    assert_eq!(server.stats().grants.jwt_bearer, 2);
}

#[tokio::test]
async fn jwt_bearer_grant_carries_scope_resource_and_dpop() {
    let platform = TestIdentityIssuer::new("https://spire.example");
    let server = trusting(&platform).await;
    let key = agent_oauth::DpopKey::generate();
    let server_md =
        AuthorizationServer::new(server.issuer(), HttpTransport::new().unwrap()).unwrap();
    let c = OAuthClient::builder(server_md, "")
        .auth(ClientAuth::omitted())
        .dpop(key.clone())
        .build();
    let assertion = SecretString::new(platform.mint(
        "spiffe://example.org/agent",
        server.issuer(),
        Duration::from_secs(300),
    ));
    let t = c
        .jwt_bearer(
            &assertion,
            &TokenParams::new()
                .scope("read write")
                .resource(server.resource_url()),
        )
        .await
        .unwrap();
    let cl = claims(t.access_token.secret());
    assert_eq!(cl["sub"], "spiffe://example.org/agent");
    assert_eq!(cl["scope"], "read write");
    assert_eq!(cl["aud"], server.resource_url());
    assert_eq!(cl["cnf"]["jkt"], key.thumbprint());
    assert_eq!(t.token_type.as_str(), "DPoP");
}

#[tokio::test]
async fn jwt_bearer_refused_assertions_are_typed_errors_without_the_assertion() {
    let platform = TestIdentityIssuer::new("https://kubernetes.default.svc");
    let server = trusting(&platform).await;
    let c = client(server.issuer(), "", ClientAuth::omitted());
    let stranger = TestIdentityIssuer::new("https://kubernetes.default.svc");
    for (why, jwt) in [
        (
            "signed by another key",
            stranger.mint("sa", server.issuer(), Duration::from_secs(60)),
        ),
        (
            "for another audience",
            platform.mint("sa", "https://elsewhere.example", Duration::from_secs(60)),
        ),
        (
            "expired",
            platform.mint_claims(serde_json::json!({
                "iss": platform.issuer(), "sub": "sa", "aud": server.issuer(),
                "iat": 1, "exp": 2,
            })),
        ),
    ] {
        let e = c
            .jwt_bearer(&SecretString::new(jwt.clone()), &TokenParams::new())
            .await
            .unwrap_err();
        assert_eq!(
            e.oauth_error().map(|o| o.error.clone()),
            Some(OAuthErrorCode::InvalidGrant),
            "{why}: {e}"
        );
        assert!(
            !format!("{e} {e:?}").contains(&jwt),
            "{why}: assertion leaked"
        );
    }
    // An expired assertion in a source never leaves the process.
    let before = server.stats().token_requests;
    let stale = AssertionSource::fixed(platform.mint_claims(serde_json::json!({
        "iss": platform.issuer(), "sub": "sa", "aud": server.issuer(), "iat": 1, "exp": 2,
    })));
    let e = c
        .jwt_bearer_from(&stale, &TokenParams::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Assertion { .. }), "{e:?}");
    assert_eq!(server.stats().token_requests, before);
}

#[tokio::test]
async fn workload_identity_assertion_from_env_and_command() {
    let platform = TestIdentityIssuer::new("https://token.actions.example");
    let server = trusting(&platform).await;
    let c = client(server.issuer(), "", ClientAuth::omitted());
    let jwt = platform.mint("repo:acme/agent", server.issuer(), Duration::from_secs(600));

    std::env::set_var("AGENT_OAUTH_IT_WORKLOAD_TOKEN", &jwt);
    let t = c
        .jwt_bearer_from(
            &AssertionSource::env("AGENT_OAUTH_IT_WORKLOAD_TOKEN"),
            &TokenParams::new(),
        )
        .await
        .unwrap();
    assert_eq!(claims(t.access_token.secret())["sub"], "repo:acme/agent");
    std::env::remove_var("AGENT_OAUTH_IT_WORKLOAD_TOKEN");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t");
    std::fs::write(&file, &jwt).unwrap();
    // A helper program that prints the token (here: cat); it runs once while the token is fresh.
    let source = AssertionSource::command("cat", [file.to_string_lossy().into_owned()]);
    for _ in 0..2 {
        c.jwt_bearer_from(&source, &TokenParams::new())
            .await
            .unwrap();
    }
    std::fs::remove_file(&file).unwrap();
    // The cached token is still fresh: no second run needed, so the missing file is not noticed.
    c.jwt_bearer_from(&source, &TokenParams::new())
        .await
        .unwrap();
    assert_eq!(server.stats().grants.jwt_bearer, 4);
}

#[tokio::test]
async fn spiffe_jwt_svid_authenticates_the_client() {
    let spire = TestIdentityIssuer::new("https://spire.example.org");
    let spiffe_id = "spiffe://example.org/ns/agents/sa/worker";
    let server = TestServer::start_with(
        TestServerConfig::default()
            .with_trusted_issuer(spire.issuer(), spire.public_jwk())
            .with_client(TestClient::new(spiffe_id, TestClientAuth::SpiffeJwt)),
    )
    .await;
    let svids = Arc::new(AtomicUsize::new(0));
    let (n, spire2, aud) = (svids.clone(), spire.clone(), server.issuer().to_owned());
    let source = AssertionSource::from_fn(move || {
        n.fetch_add(1, Ordering::SeqCst);
        let svid = spire2.mint(spiffe_id, &aud, Duration::from_secs(300));
        async move { Ok(SecretString::new(svid)) }
    });
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id(spiffe_id)
        .client_auth(ClientAuth::spiffe_jwt_svid(source))
        .resource(server.resource_url())
        .build()
        .await
        .unwrap();
    let resp = agent.get(server.resource_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["client_id"], spiffe_id);
    assert_eq!(server.stats().grants.client_credentials, 1);
    assert_eq!(svids.load(Ordering::SeqCst), 1);

    // An SVID of another workload is refused.
    let other = AssertionSource::fixed(spire.mint(
        "spiffe://example.org/ns/other",
        server.issuer(),
        Duration::from_secs(300),
    ));
    let e = client(
        server.issuer(),
        spiffe_id,
        ClientAuth::spiffe_jwt_svid(other),
    )
    .client_credentials(&TokenParams::new())
    .await
    .unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidClient),
        "{e}"
    );
}

/// The single sign-on provider, the enterprise identity provider trusting it, and the MCP
/// authorization server trusting the identity provider.
async fn enterprise_servers() -> (TestIdentityIssuer, TestServer, TestServer) {
    let sso = TestIdentityIssuer::new("https://sso.acme.example");
    let idp = TestServer::start_with(
        TestServerConfig::default()
            .with_id_jag_issuance(true)
            .with_trusted_issuer(sso.issuer(), sso.public_jwk()),
    )
    .await;
    let mcp_as = TestServer::start_with(
        TestServerConfig::default().with_trusted_issuer(idp.issuer(), idp.public_jwk()),
    )
    .await;
    (sso, idp, mcp_as)
}

/// [`enterprise_servers`] and the user's single sign-on ID token (audience: the MCP client at
/// the IdP).
async fn enterprise() -> (TestServer, TestServer, String) {
    let (sso, idp, mcp_as) = enterprise_servers().await;
    let id_token = sso.mint("alice@acme.example", "agent", Duration::from_secs(3600));
    (idp, mcp_as, id_token)
}

fn idp_client(idp: &TestServer) -> OAuthClient {
    client(
        idp.issuer(),
        "agent",
        ClientAuth::client_secret_basic("agent-secret"),
    )
}

#[tokio::test]
async fn id_jag_both_legs_and_the_cache_by_request_counts() {
    let (idp, mcp_as, id_token) = enterprise().await;
    let issuer = Arc::new(IdJagIssuer::new(
        idp_client(&idp),
        AssertionSource::fixed(id_token),
    ));
    let agent = Agent::builder()
        .issuer(mcp_as.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .enterprise_authorization(issuer.clone())
        .resource(mcp_as.resource_url())
        .scope("read")
        .build()
        .await
        .unwrap();
    let resp = agent.get(mcp_as.resource_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["sub"], "alice@acme.example");
    assert_eq!(body["client_id"], "agent");
    assert_eq!(idp.stats().grants.id_jag, 1);
    assert_eq!(mcp_as.stats().grants.jwt_bearer, 1);

    // The access token is revoked: the next one comes from the same ID-JAG (one IdP request).
    mcp_as.revoke_all();
    agent.get(mcp_as.resource_url()).send().await.unwrap();
    assert_eq!(idp.stats().grants.id_jag, 1);
    assert_eq!(mcp_as.stats().grants.jwt_bearer, 2);
    assert_eq!(issuer.issued(), 1);

    // The ID-JAG names the authorization server, the resource and the client.
    let jag = issuer
        .id_jag(
            mcp_as.issuer(),
            &mcp_as.resource_url(),
            Some(&"read".into()),
        )
        .await
        .unwrap();
    let c = claims(jag.assertion().expose_secret());
    assert_eq!(c["aud"], mcp_as.issuer());
    assert_eq!(c["resource"], mcp_as.resource_url());
    assert_eq!(c["client_id"], "agent");
    assert_eq!(c["iss"], idp.issuer());
    assert_eq!(idp.stats().grants.id_jag, 1, "still the cached one");
}

#[tokio::test]
async fn id_jag_renewed_near_expiry_and_per_resource() {
    let (idp, mcp_as, id_token) = enterprise().await;
    // ID-JAGs live 300 s at the embedded IdP: a margin above that renews on every use.
    let eager = IdJagIssuer::new(idp_client(&idp), AssertionSource::fixed(id_token.clone()))
        .renew_before(Duration::from_secs(400));
    let c = client(
        mcp_as.issuer(),
        "agent",
        ClientAuth::client_secret_basic("agent-secret"),
    );
    let params = TokenParams::new().resource(mcp_as.resource_url());
    eager.access_token(&c, &params).await.unwrap();
    eager.access_token(&c, &params).await.unwrap();
    assert_eq!(idp.stats().grants.id_jag, 2);

    let lazy = IdJagIssuer::new(idp_client(&idp), AssertionSource::fixed(id_token));
    lazy.access_token(&c, &params).await.unwrap();
    lazy.access_token(&c, &params.clone().scope("read"))
        .await
        .unwrap();
    lazy.access_token(&c, &TokenParams::new().resource(mcp_as.mcp_url()))
        .await
        .unwrap();
    assert_eq!(lazy.issued(), 3, "one per (resource, scope)");
}

#[tokio::test]
async fn id_jag_refusals_are_typed() {
    let (idp, mcp_as, id_token) = enterprise().await;
    // The ID token was issued to another client at the IdP.
    let wrong_aud = IdJagIssuer::new(
        client(
            idp.issuer(),
            "agent-post",
            ClientAuth::client_secret_post("agent-post-secret"),
        ),
        AssertionSource::fixed(id_token.clone()),
    );
    let c = client(
        mcp_as.issuer(),
        "agent",
        ClientAuth::client_secret_basic("agent-secret"),
    );
    let params = TokenParams::new().resource(mcp_as.resource_url());
    let e = wrong_aud.access_token(&c, &params).await.unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidGrant),
        "{e}"
    );
    // An ID-JAG issued to `agent` presented by another client is refused at the AS.
    let issuer = IdJagIssuer::new(idp_client(&idp), AssertionSource::fixed(id_token));
    let other = client(
        mcp_as.issuer(),
        "agent-post",
        ClientAuth::client_secret_post("agent-post-secret"),
    );
    let e = issuer.access_token(&other, &params).await.unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidGrant),
        "{e}"
    );
    // No resource: refused before any request.
    let e = issuer
        .access_token(&c, &TokenParams::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}

#[tokio::test]
async fn id_jag_discovery_from_grant_profiles() {
    let (_idp, mcp_as, _) = enterprise().await;
    let md = AuthorizationServer::new(mcp_as.issuer(), HttpTransport::new().unwrap())
        .unwrap()
        .metadata()
        .await
        .unwrap();
    assert_eq!(md.supports_id_jag(), Some(true));
    let mut none = (*md).clone();
    none.authorization_grant_profiles_supported = Some(vec![]);
    assert_eq!(none.supports_id_jag(), Some(false));
    none.authorization_grant_profiles_supported = None;
    none.grant_types_supported = Some(vec!["client_credentials".into()]);
    assert_eq!(none.supports_id_jag(), Some(false));
    none.grant_types_supported = None;
    assert_eq!(none.supports_id_jag(), None);
}

#[tokio::test]
async fn id_jag_hostile_identity_provider_answers_are_typed_errors() {
    use crate::support::prelude::ServerMetadata;
    use crate::support::server::{Reply, Scripted};
    let idp = Scripted::start().await;
    let mut md = ServerMetadata::default();
    md.issuer = idp.origin();
    md.token_endpoint = Some(idp.url("/token"));
    let server = AuthorizationServer::from_metadata(md, HttpTransport::new().unwrap()).unwrap();
    let id_token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2VjcmV0LXN1YmplY3Q";
    let issuer = IdJagIssuer::new(
        OAuthClient::builder(server, "agent").build(),
        AssertionSource::fixed(id_token),
    );
    let ask = || issuer.id_jag("https://as.example", "https://mcp.example/", None);

    // An access token instead of an ID-JAG.
    idp.push(Reply::json(
        200,
        &serde_json::json!({"access_token": "at", "token_type": "Bearer",
            "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"}),
    ));
    let e = ask().await.unwrap_err();
    assert!(matches!(e, Error::InvalidResponse(_)), "{e:?}");
    // No issued_token_type at all: not a token exchange answer.
    idp.push(Reply::json(
        200,
        &serde_json::json!({"access_token": "at", "token_type": "N_A"}),
    ));
    assert!(ask().await.is_err());
    // The IdP echoes the subject token in its error: never in our error.
    idp.push(Reply::json(
        400,
        &serde_json::json!({"error": "invalid_grant",
            "error_description": format!("bad subject {id_token}")}),
    ));
    let e = ask().await.unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidGrant)
    );
    assert!(!format!("{e} {e:?}").contains(id_token), "{e:?}");
    // Malformed JSON.
    idp.push(
        Reply::status(200)
            .header("content-type", "application/json")
            .body("{nope"),
    );
    assert!(matches!(
        ask().await.unwrap_err(),
        Error::InvalidResponse(_)
    ));
    // The request carried what the profile asks for.
    let form: std::collections::HashMap<String, String> =
        url::form_urlencoded::parse(&idp.requests()[0].body)
            .into_owned()
            .collect();
    assert_eq!(
        form["requested_token_type"],
        "urn:ietf:params:oauth:token-type:id-jag"
    );
    assert_eq!(
        form["subject_token_type"],
        "urn:ietf:params:oauth:token-type:id_token"
    );
    assert_eq!(form["audience"], "https://as.example");
    assert_eq!(form["resource"], "https://mcp.example/");
    assert!(!form.contains_key("actor_token"));
    // Nothing was cached from the failures.
    assert_eq!(issuer.issued(), 0);
}

#[tokio::test]
async fn id_jag_per_principal_tokens_never_cross_users() {
    let (sso, idp, mcp_as) = enterprise_servers().await;
    // The platform's users, each with the ID token of their own sign-on.
    let issuers: std::collections::HashMap<&str, Arc<IdJagIssuer>> = ["alice", "bob"]
        .into_iter()
        .map(|user| {
            let id_token = sso.mint(user, "agent", Duration::from_secs(3600));
            let issuer = IdJagIssuer::new(idp_client(&idp), AssertionSource::fixed(id_token));
            (user, Arc::new(issuer))
        })
        .collect();
    let by_user = issuers.clone();
    let agent = Agent::builder()
        .issuer(mcp_as.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .enterprise_authorization_for(move |p| p.id().and_then(|id| by_user.get(id).cloned()))
        .resource(mcp_as.resource_url())
        .scope("read")
        .build()
        .await
        .unwrap();

    let url = mcp_as.resource_url();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            let handle = agent.for_principal(user);
            let url = url.clone();
            tokio::spawn(async move {
                let resp = handle.get(&url).send().await.unwrap();
                let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
                (user, body["sub"].as_str().unwrap_or_default().to_owned())
            })
        })
        .collect();
    for c in calls {
        let (user, sub) = c.await.unwrap();
        assert_eq!(sub, user, "a principal was served another user's token");
    }
    assert_eq!(idp.stats().grants.id_jag, 2, "one ID-JAG per user");
    assert_eq!(issuers["alice"].issued(), 1);
    assert_eq!(issuers["bob"].issued(), 1);

    // A user without an enterprise identity must consent; nothing is sent for them.
    let before = mcp_as.stats().token_requests;
    let e = agent
        .for_principal("carol")
        .get(&url)
        .send()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ConsentRequired(_)), "{e:?}");
    assert_eq!(mcp_as.stats().token_requests, before);
    // The agent itself has none here either: a typed error, not a user's token.
    let e = agent.get(&url).send().await.unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}
