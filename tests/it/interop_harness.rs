//! Checks of the oidc-provider interop harness itself (`tests/interop/server.mjs` through
//! `support::oidc_provider`), driven with plain HTTP and hand-made JWTs, independently of the
//! crate's client code: what the scenarios in the feature modules rely on the harness doing.

use crate::support::oidc_provider::OidcProvider;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use p256::ecdsa::{signature::Signer as _, Signature, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

const REDIRECT: &str = "http://127.0.0.1:1/cb";
const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const AT_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn clients() -> Value {
    json!([
        {
            "client_id": "svc",
            "client_secret": "svc-secret",
            "grant_types": ["client_credentials", TE],
            "redirect_uris": [],
            "response_types": []
        },
        {
            "client_id": "app",
            "client_secret": "app-secret",
            "grant_types": ["authorization_code", "refresh_token", DEVICE],
            "redirect_uris": [REDIRECT],
            "response_types": ["code"]
        },
        {
            "client_id": "public-agent",
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "redirect_uris": [REDIRECT],
            "response_types": ["code"]
        },
        {
            "client_id": "dpop-svc",
            "client_secret": "dpop-secret",
            "grant_types": ["client_credentials", TE],
            "redirect_uris": [],
            "response_types": [],
            "dpop_bound_access_tokens": true
        }
    ])
}

fn pkce() -> (String, String) {
    let verifier = B64.encode(rand::random::<[u8; 32]>());
    let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

async fn form(
    p: &OidcProvider,
    path: &str,
    auth: Option<(&str, &str)>,
    params: &[(&str, &str)],
    dpop: Option<String>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = p.http_client().post(p.url(path)).form(params);
    if let Some((id, secret)) = auth {
        req = req.basic_auth(id, Some(secret));
    }
    if let Some(proof) = dpop {
        req = req.header("DPoP", proof);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

async fn get(
    p: &OidcProvider,
    url: &str,
    authz: Option<String>,
    dpop: Option<String>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut req = p.http_client().get(url);
    if let Some(a) = authz {
        req = req.header("Authorization", a);
    }
    if let Some(proof) = dpop {
        req = req.header("DPoP", proof);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null);
    (status, headers, body)
}

/// Minimal ES256 DPoP proof maker for the test.
struct Dpop {
    key: SigningKey,
    jwk: Value,
}

impl Dpop {
    fn new() -> Self {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": B64.encode(point.x().unwrap()),
            "y": B64.encode(point.y().unwrap()),
        });
        Dpop { key, jwk }
    }

    fn thumbprint(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":{},"y":{}}}"#,
            self.jwk["x"], self.jwk["y"]
        );
        B64.encode(Sha256::digest(canonical.as_bytes()))
    }

    fn proof(
        &self,
        htm: &str,
        htu: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> String {
        let header = json!({ "typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk });
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut payload = json!({
            "jti": B64.encode(rand::random::<[u8; 16]>()),
            "htm": htm,
            "htu": htu,
            "iat": iat,
        });
        if let Some(n) = nonce {
            payload["nonce"] = json!(n);
        }
        if let Some(at) = access_token {
            payload["ath"] = json!(B64.encode(Sha256::digest(at.as_bytes())));
        }
        let input = format!(
            "{}.{}",
            B64.encode(serde_json::to_vec(&header).unwrap()),
            B64.encode(serde_json::to_vec(&payload).unwrap())
        );
        let sig: Signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig.to_bytes()))
    }
}

#[tokio::test]
async fn interop_harness_discovery_and_issuer_override() {
    let Some(p) = OidcProvider::start(json!({ "clients": clients() })).await else {
        return;
    };
    let (s1, _, oidc) = get(&p, &p.url("/.well-known/openid-configuration"), None, None).await;
    let (s2, _, oauth) = get(
        &p,
        &p.url("/.well-known/oauth-authorization-server"),
        None,
        None,
    )
    .await;
    println!("openid-configuration: {s1}, oauth-authorization-server: {s2}");
    assert_eq!(s1, 200);
    assert_eq!(s2, 200, "RFC 8414 path");
    assert_eq!(oidc["issuer"], json!(p.issuer));
    assert_eq!(oauth["issuer"], json!(p.issuer));
    assert_eq!(oidc["token_endpoint"], json!(p.url("/token")));
    assert_eq!(oidc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        oidc["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    println!(
        "discovery: {}",
        serde_json::to_string_pretty(&oidc).unwrap()
    );
    let (s, _, jwks) = get(&p, &p.url("/jwks"), None, None).await;
    assert_eq!(s, 200);
    let algs: Vec<_> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].clone())
        .collect();
    assert_eq!(algs, vec![json!("ES256"), json!("RS256")]);
    drop(p);

    let Some(evil) =
        OidcProvider::start(json!({ "issuer_override": "https://as.example.com" })).await
    else {
        return;
    };
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (_, _, doc) = get(&evil, &evil.url(path), None, None).await;
        assert_eq!(doc["issuer"], json!("https://as.example.com"));
        assert_eq!(doc["token_endpoint"], json!(evil.url("/token")));
    }
}

#[tokio::test]
async fn interop_harness_client_credentials_code_refresh_device() {
    let cfg = json!({
        "clients": clients(),
        "resource_indicators": ["https://rs.example.com/"],
        "resource_scopes": "read write",
        "access_token_ttl": 300,
        "refresh_token_ttl": 600,
        // clients() lists the token-exchange grant, only valid when enabled.
        "token_exchange": true,
    });
    let Some(p) = OidcProvider::start(cfg).await else {
        return;
    };

    // client_credentials with a resource: JWT access token for that audience.
    let (s, _, body) = form(
        &p,
        "/token",
        Some(("svc", "svc-secret")),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://rs.example.com/"),
            ("scope", "read"),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    println!("client_credentials: {body}");
    assert_eq!(body["token_type"], json!("Bearer"));
    assert_eq!(body["expires_in"], json!(300));
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["aud"], json!("https://rs.example.com/"));
    assert_eq!(c["sub"], json!("svc"));
    assert_eq!(c["scope"], json!("read"));
    // unknown resource
    let (s, _, body) = form(
        &p,
        "/token",
        Some(("svc", "svc-secret")),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://other.example.com/"),
        ],
        None,
    )
    .await;
    println!("unknown resource: {s} {body}");
    assert_eq!(body["error"], json!("invalid_target"));

    // Authorization code + PKCE, headless.
    let (verifier, challenge) = pkce();
    let code = p
        .authorize_headless(
            "app",
            REDIRECT,
            "read write",
            &challenge,
            "st1",
            &[("resource", "https://rs.example.com/")],
        )
        .await;
    let (s, _, body) = form(
        &p,
        "/token",
        Some(("app", "app-secret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    println!("authorization_code: {body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], json!("agent-user"));
    assert_eq!(c["aud"], json!("https://rs.example.com/"));
    let first_rt = body["refresh_token"].as_str().unwrap().to_owned();

    // Rotate three times.
    let mut rts = vec![first_rt.clone()];
    for _ in 0..3 {
        let (s, _, body) = form(
            &p,
            "/token",
            Some(("app", "app-secret")),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rts.last().unwrap()),
            ],
            None,
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let c = claims(body["access_token"].as_str().unwrap());
        assert_eq!(
            c["aud"],
            json!("https://rs.example.com/"),
            "granted resource kept"
        );
        let next = body["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(&next, rts.last().unwrap(), "refresh token rotated");
        rts.push(next);
    }
    // Reuse of a rotated token: invalid_grant, and the grant is revoked.
    let (s, _, body) = form(
        &p,
        "/token",
        Some(("app", "app-secret")),
        &[("grant_type", "refresh_token"), ("refresh_token", &rts[1])],
        None,
    )
    .await;
    println!("reuse of rotated refresh token: {s} {body}");
    assert_eq!(s, 400);
    assert_eq!(body["error"], json!("invalid_grant"));
    let (s, _, body) = form(
        &p,
        "/token",
        Some(("app", "app-secret")),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rts.last().unwrap()),
        ],
        None,
    )
    .await;
    println!("newest refresh token after reuse: {s} {body}");
    assert_eq!(body["error"], json!("invalid_grant"));

    // Public client, no resource: opaque access token + refresh token.
    let (verifier, challenge) = pkce();
    let location = p
        .authorize_redirect(&[
            ("client_id", "public-agent"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", "s2"),
        ])
        .await;
    println!("public client redirect: {location}");
    assert!(
        location.contains(&format!("iss={}", urlencode(&p.issuer))),
        "RFC 9207 iss"
    );
    let code = reqwest::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let (s, _, body) = form(
        &p,
        "/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "public-agent"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{body}");
    println!("public client token: {body}");
    assert!(body["refresh_token"].is_string());
    assert!(body["id_token"].is_string());
    let at = body["access_token"].as_str().unwrap();
    let (s, _, me) = get(&p, &p.url("/me"), Some(format!("Bearer {at}")), None).await;
    assert_eq!(s, 200);
    assert_eq!(me["sub"], json!("agent-user"));

    // PKCE is mandatory even for confidential clients.
    let missing = p
        .authorize_redirect(&[
            ("client_id", "app"),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "read"),
            ("state", "s3"),
        ])
        .await;
    println!("no PKCE: {missing}");
    assert!(missing.contains("error=invalid_request"));

    // Device flow.
    let (s, _, dev) = form(
        &p,
        "/device/auth",
        Some(("app", "app-secret")),
        &[("scope", "read"), ("resource", "https://rs.example.com/")],
        None,
    )
    .await;
    assert_eq!(s, 200, "{dev}");
    println!("device authorization: {dev}");
    let device_code = dev["device_code"].as_str().unwrap();
    let poll = [("grant_type", DEVICE), ("device_code", device_code)];
    let (s, _, body) = form(&p, "/token", Some(("app", "app-secret")), &poll, None).await;
    assert_eq!(
        (s, body["error"].clone()),
        (400, json!("authorization_pending"))
    );
    p.approve_device(dev["user_code"].as_str().unwrap()).await;
    let (s, _, body) = form(&p, "/token", Some(("app", "app-secret")), &poll, None).await;
    assert_eq!(s, 200, "{body}");
    println!("device token: {body}");
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(c["sub"], json!("agent-user"));
    assert_eq!(c["scope"], json!("read"));
    assert!(body["refresh_token"].is_string());
    // Denied device flow.
    let (_, _, dev) = form(
        &p,
        "/device/auth",
        Some(("app", "app-secret")),
        &[("scope", "read")],
        None,
    )
    .await;
    p.deny_device(dev["user_code"].as_str().unwrap()).await;
    let (s, _, body) = form(
        &p,
        "/token",
        Some(("app", "app-secret")),
        &[
            ("grant_type", DEVICE),
            ("device_code", dev["device_code"].as_str().unwrap()),
        ],
        None,
    )
    .await;
    assert_eq!((s, body["error"].clone()), (400, json!("access_denied")));
}

fn urlencode(s: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("v", s)])
        .unwrap()
        .query()
        .unwrap()
        .trim_start_matches("v=")
        .to_owned()
}

#[tokio::test]
async fn interop_harness_token_exchange_and_resource_server() {
    let cfg = json!({
        "clients": clients(),
        "resource_server": true,
        "token_exchange": true,
        "resource_indicators": ["https://rs.example.com/"],
    });
    let Some(p) = OidcProvider::start(cfg).await else {
        return;
    };
    let api = p.resource.clone().expect("resource URL");
    assert_eq!(api, p.url("/api"));

    // Resource server: challenge, metadata.
    let (s, h, _) = get(&p, &format!("{api}/hello"), None, None).await;
    assert_eq!(s, 401);
    let www = h["www-authenticate"].to_str().unwrap();
    println!("RS challenge: {www}");
    assert!(www.starts_with(&format!(
        "Bearer resource_metadata=\"{}\"",
        p.url("/.well-known/oauth-protected-resource/api")
    )));
    let (s, _, meta) = get(
        &p,
        &p.url("/.well-known/oauth-protected-resource/api"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    println!("RS metadata: {meta}");
    assert_eq!(meta["resource"], json!(api));
    assert_eq!(meta["authorization_servers"], json!([p.issuer]));

    // User token for the API (subject), service token (actor).
    let (verifier, challenge) = pkce();
    let code = p
        .authorize_headless(
            "app",
            REDIRECT,
            "read write",
            &challenge,
            "x",
            &[("resource", &api)],
        )
        .await;
    let (_, _, user) = form(
        &p,
        "/token",
        Some(("app", "app-secret")),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
            ("redirect_uri", REDIRECT),
        ],
        None,
    )
    .await;
    let user_at = user["access_token"].as_str().unwrap().to_owned();
    let (s, _, ok) = get(
        &p,
        &format!("{api}/hello"),
        Some(format!("Bearer {user_at}")),
        None,
    )
    .await;
    assert_eq!(s, 200, "{ok}");
    println!("RS success: {ok}");
    assert_eq!(ok["sub"], json!("agent-user"));
    assert_eq!(ok["scope"], json!("read write"));
    let (s, h, _) = get(
        &p,
        &format!("{api}/require/admin"),
        Some(format!("Bearer {user_at}")),
        None,
    )
    .await;
    assert_eq!(s, 403);
    println!(
        "insufficient scope: {}",
        h["www-authenticate"].to_str().unwrap()
    );
    let (s, h, _) = get(
        &p,
        &format!("{api}/hello"),
        Some("Bearer garbage.garbage.garbage".into()),
        None,
    )
    .await;
    assert_eq!(s, 401);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("invalid_token"));

    let (_, _, svc) = form(
        &p,
        "/token",
        Some(("svc", "svc-secret")),
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://rs.example.com/"),
        ],
        None,
    )
    .await;
    let svc_at = svc["access_token"].as_str().unwrap().to_owned();

    // Delegation: narrower scope, the API audience, svc as actor.
    let (s, _, ex) = form(
        &p,
        "/token",
        Some(("svc", "svc-secret")),
        &[
            ("grant_type", TE),
            ("subject_token", &user_at),
            ("subject_token_type", AT_TYPE),
            ("actor_token", &svc_at),
            ("actor_token_type", AT_TYPE),
            ("scope", "read"),
            ("resource", &api),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{ex}");
    println!("token exchange: {ex}");
    assert_eq!(ex["issued_token_type"], json!(AT_TYPE));
    assert_eq!(ex["token_type"], json!("Bearer"));
    assert_eq!(ex["scope"], json!("read"));
    let ex_at = ex["access_token"].as_str().unwrap().to_owned();
    let c = claims(&ex_at);
    assert_eq!(c["sub"], json!("agent-user"));
    assert_eq!(c["act"], json!({ "sub": "svc" }));
    assert_eq!(c["client_id"], json!("svc"));
    let (s, _, ok) = get(
        &p,
        &format!("{api}/x"),
        Some(format!("Bearer {ex_at}")),
        None,
    )
    .await;
    assert_eq!(s, 200, "{ok}");
    assert_eq!(ok["act"], json!({ "sub": "svc" }));

    // Second hop: chain of actors.
    let (s, _, ex2) = form(
        &p,
        "/token",
        Some(("svc", "svc-secret")),
        &[
            ("grant_type", TE),
            ("subject_token", &ex_at),
            ("subject_token_type", AT_TYPE),
            ("actor_token", &user_at),
            ("actor_token_type", AT_TYPE),
        ],
        None,
    )
    .await;
    assert_eq!(s, 200, "{ex2}");
    let c = claims(ex2["access_token"].as_str().unwrap());
    assert_eq!(
        c["act"],
        json!({ "sub": "agent-user", "act": { "sub": "svc" } })
    );

    // Errors.
    let base = [
        ("grant_type", TE),
        ("subject_token", ex_at.as_str()),
        ("subject_token_type", AT_TYPE),
    ];
    let mut wider = base.to_vec();
    wider.push(("scope", "read write"));
    let (s, _, e) = form(&p, "/token", Some(("svc", "svc-secret")), &wider, None).await;
    println!("exchange, wider scope: {s} {e}");
    assert_eq!((s, e["error"].clone()), (400, json!("invalid_scope")));
    let mut target = base.to_vec();
    target.push(("audience", "https://nowhere.example.com/"));
    let (s, _, e) = form(&p, "/token", Some(("svc", "svc-secret")), &target, None).await;
    println!("exchange, unknown audience: {s} {e}");
    assert_eq!((s, e["error"].clone()), (400, json!("invalid_target")));
    let bogus = [
        ("grant_type", TE),
        ("subject_token", "nope"),
        ("subject_token_type", AT_TYPE),
    ];
    let (s, _, e) = form(&p, "/token", Some(("svc", "svc-secret")), &bogus, None).await;
    println!("exchange, bogus subject: {s} {e}");
    assert_eq!((s, e["error"].clone()), (400, json!("invalid_grant")));
}

#[tokio::test]
async fn interop_harness_dpop_nonces_at_as_and_rs() {
    let cfg = json!({
        "clients": clients(),
        "dpop_nonce": true,
        "resource_server": true,
        "resource_nonce": true,
        "token_exchange": true,
        "dpop_bound_access_tokens_required": true,
    });
    let Some(p) = OidcProvider::start(cfg).await else {
        return;
    };
    let api = p.resource.clone().unwrap();
    let key = Dpop::new();
    let token_url = p.url("/token");
    let params = [
        ("grant_type", "client_credentials"),
        ("resource", api.as_str()),
        ("scope", "read"),
    ];

    // DPoP-bound client without proof.
    let (s, _, e) = form(
        &p,
        "/token",
        Some(("dpop-svc", "dpop-secret")),
        &params,
        None,
    )
    .await;
    println!("no proof: {s} {e}");
    assert_eq!((s, e["error"].clone()), (400, json!("invalid_grant")));

    // Proof without nonce: use_dpop_nonce + DPoP-Nonce header.
    let (s, h, e) = form(
        &p,
        "/token",
        Some(("dpop-svc", "dpop-secret")),
        &params,
        Some(key.proof("POST", &token_url, None, None)),
    )
    .await;
    println!("AS nonce challenge: {s} {e} headers={h:?}");
    assert_eq!((s, e["error"].clone()), (400, json!("use_dpop_nonce")));
    let nonce = h["dpop-nonce"].to_str().unwrap().to_owned();

    let (s, _, body) = form(
        &p,
        "/token",
        Some(("dpop-svc", "dpop-secret")),
        &params,
        Some(key.proof("POST", &token_url, Some(&nonce), None)),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    println!("DPoP token: {body}");
    assert_eq!(body["token_type"], json!("DPoP"));
    let at = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&at)["cnf"]["jkt"], json!(key.thumbprint()));

    // Resource server: Bearer downgrade refused, nonce demanded, then OK.
    let url = format!("{api}/data");
    let (s, _, _) = get(&p, &url, Some(format!("Bearer {at}")), None).await;
    assert_eq!(s, 401);
    let (s, h, e) = get(
        &p,
        &url,
        Some(format!("DPoP {at}")),
        Some(key.proof("GET", &url, None, Some(&at))),
    )
    .await;
    println!(
        "RS nonce challenge: {s} {e} {}",
        h["www-authenticate"].to_str().unwrap()
    );
    assert_eq!(s, 401);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("DPoP error=\"use_dpop_nonce\""));
    let rs_nonce = h["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = key.proof("GET", &url, Some(&rs_nonce), Some(&at));
    let (s, _, ok) = get(&p, &url, Some(format!("DPoP {at}")), Some(proof.clone())).await;
    assert_eq!(s, 200, "{ok}");
    println!("RS DPoP success: {ok}");
    assert_eq!(ok["cnf"]["jkt"], json!(key.thumbprint()));
    // Replay of the same proof.
    let (s, h, _) = get(&p, &url, Some(format!("DPoP {at}")), Some(proof)).await;
    assert_eq!(s, 401);
    println!("RS replay: {}", h["www-authenticate"].to_str().unwrap());
    // Wrong key.
    let other = Dpop::new();
    let (s, _, _) = get(
        &p,
        &url,
        Some(format!("DPoP {at}")),
        Some(other.proof("GET", &url, Some(&rs_nonce), Some(&at))),
    )
    .await;
    assert_eq!(s, 401);

    // Token exchange with a DPoP proof: bound result.
    let te = [
        ("grant_type", TE),
        ("subject_token", at.as_str()),
        ("subject_token_type", AT_TYPE),
    ];
    let (s, h, e) = form(
        &p,
        "/token",
        Some(("dpop-svc", "dpop-secret")),
        &te,
        Some(key.proof("POST", &token_url, None, None)),
    )
    .await;
    assert_eq!((s, e["error"].clone()), (400, json!("use_dpop_nonce")));
    let nonce = h["dpop-nonce"].to_str().unwrap().to_owned();
    let (s, _, ex) = form(
        &p,
        "/token",
        Some(("dpop-svc", "dpop-secret")),
        &te,
        Some(key.proof("POST", &token_url, Some(&nonce), None)),
    )
    .await;
    assert_eq!(s, 200, "{ex}");
    assert_eq!(ex["token_type"], json!("DPoP"));
    assert_eq!(
        claims(ex["access_token"].as_str().unwrap())["cnf"]["jkt"],
        json!(key.thumbprint())
    );
}

/// Runs `openssl` with `args` in `dir`; false when it is missing or fails.
fn openssl(dir: &std::path::Path, args: &[&str]) -> bool {
    std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[tokio::test]
async fn interop_harness_mtls_client_auth_and_bound_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    // Extensions make `x509 -req` issue X.509 v3 (webpki rejects v1).
    std::fs::write(
        d.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let steps: Vec<Vec<&str>> = vec![
        [
            &["req", "-x509"][..],
            &ec[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Test CA",
            ],
        ]
        .concat(),
        [
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
        [
            &["req"][..],
            &ec[..],
            &[
                "-keyout",
                "client.key",
                "-out",
                "client.csr",
                "-subj",
                "/CN=agent/O=Example",
            ],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    ];
    for step in &steps {
        if !openssl(d, step) {
            eprintln!("openssl unavailable or failed ({step:?}); skipping mTLS smoke test");
            return;
        }
    }
    let path = |n: &str| d.join(n).to_str().unwrap().to_owned();
    let cfg = json!({
        "tls": { "cert": path("server.pem"), "key": path("server.key"), "ca": path("ca.pem") },
        "resource_server": true,
        "clients": [{
            "client_id": "mtls",
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=agent,O=Example",
            "tls_client_certificate_bound_access_tokens": true,
            "grant_types": ["client_credentials"],
            "redirect_uris": [],
            "response_types": []
        }]
    });
    let Some(p) = OidcProvider::start(cfg).await else {
        return;
    };
    assert!(p.issuer.starts_with("https://127.0.0.1:"));
    let api = p.resource.clone().unwrap();

    let (s, _, doc) = get(
        &p,
        &p.url("/.well-known/oauth-authorization-server"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 200);
    println!("mtls_endpoint_aliases: {}", doc["mtls_endpoint_aliases"]);
    assert_eq!(
        doc["mtls_endpoint_aliases"]["token_endpoint"],
        json!(p.url("/token"))
    );
    assert_eq!(
        doc["tls_client_certificate_bound_access_tokens"],
        json!(true)
    );

    let mut pem = std::fs::read(d.join("client.pem")).unwrap();
    pem.extend(std::fs::read(d.join("client.key")).unwrap());
    let identity = reqwest::Identity::from_pem(&pem).unwrap();
    let with_cert = p.http_client_builder().identity(identity).build().unwrap();

    let resp = with_cert
        .post(p.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "mtls"),
            ("resource", api.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let at = body["access_token"].as_str().unwrap().to_owned();
    let c = claims(&at);
    println!("mTLS token claims: {c}");
    assert!(c["cnf"]["x5t#S256"].is_string());

    // Without the certificate: client auth fails, bound token refused.
    let (s, _, e) = form(
        &p,
        "/token",
        None,
        &[("grant_type", "client_credentials"), ("client_id", "mtls")],
        None,
    )
    .await;
    assert_eq!((s, e["error"].clone()), (401, json!("invalid_client")));
    let (s, _, _) = get(&p, &format!("{api}/x"), Some(format!("Bearer {at}")), None).await;
    assert_eq!(s, 401);
    let resp = with_cert
        .get(format!("{api}/x"))
        .header("Authorization", format!("Bearer {at}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}
