//! Tests of the embedded test server itself, driven with plain reqwest and DPoP proofs built
//! here with p256 (independently of the crate's client code).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::prelude::{TestClient, TestClientAuth, TestServer, TestServerConfig};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

// ---------------------------------------------------------------- helpers

fn b64(d: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn jwt(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(sig.to_bytes()))
}

/// A DPoP key and proof builder.
struct Dpop {
    key: SigningKey,
}

impl Dpop {
    fn new() -> Self {
        Dpop {
            key: SigningKey::random(&mut rand::rngs::OsRng),
        }
    }

    fn jwk(&self) -> Value {
        let p = self.key.verifying_key().to_encoded_point(false);
        json!({"kty":"EC","crv":"P-256","x": b64(p.x().unwrap()), "y": b64(p.y().unwrap())})
    }

    fn jkt(&self) -> String {
        let j = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            j["x"].as_str().unwrap(),
            j["y"].as_str().unwrap()
        );
        b64(Sha256::digest(canonical.as_bytes()))
    }

    fn proof_claims(&self, claims: Value) -> String {
        jwt(
            &self.key,
            &json!({"typ":"dpop+jwt","alg":"ES256","jwk": self.jwk()}),
            &claims,
        )
    }

    fn proof(&self, htm: &str, htu: &str, nonce: Option<&str>, token: Option<&str>) -> String {
        let mut c =
            json!({"jti": b64(rand::random::<[u8; 16]>()), "htm": htm, "htu": htu, "iat": now()});
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        if let Some(t) = token {
            c["ath"] = json!(b64(Sha256::digest(t.as_bytes())));
        }
        self.proof_claims(c)
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

async fn read(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = r.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        body,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// How a test request authenticates its client.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Post(&'a str, &'a str),
    None(&'a str),
}

async fn post(url: &str, auth: Auth<'_>, params: &[(&str, &str)], dpop: Option<String>) -> Resp {
    let mut form: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut req = http().post(url);
    match auth {
        Auth::Basic(id, secret) => req = req.basic_auth(id, Some(secret)),
        Auth::Post(id, secret) => {
            form.push(("client_id".into(), id.into()));
            form.push(("client_secret".into(), secret.into()));
        }
        Auth::None(id) => form.push(("client_id".into(), id.into())),
    }
    if let Some(p) = dpop {
        req = req.header("DPoP", p);
    }
    read(req.form(&form).send().await.unwrap()).await
}

const AGENT: Auth<'static> = Auth::Basic("agent", "agent-secret");
const PUBLIC: Auth<'static> = Auth::None("public-agent");

fn token_url(s: &TestServer) -> String {
    format!("{}/token", s.issuer())
}

async fn client_credentials(s: &TestServer, scope: &str) -> Resp {
    let resource = s.resource_url();
    post(
        &token_url(s),
        AGENT,
        &[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            ("resource", &resource),
        ],
        None,
    )
    .await
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn api(url: &str, scheme: &str, token: &str, dpop: Option<String>) -> Resp {
    let mut req = http()
        .get(url)
        .header("Authorization", format!("{scheme} {token}"));
    if let Some(p) = dpop {
        req = req.header("DPoP", p);
    }
    read(req.send().await.unwrap()).await
}

fn pkce() -> (String, String) {
    let verifier = b64(rand::random::<[u8; 32]>());
    let challenge = b64(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// Run /authorize and return the code from the redirect.
async fn authorize(
    s: &TestServer,
    client_id: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut q = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", "http://127.0.0.1:4567/cb"),
        ("scope", "read write offline_access"),
        ("state", "st4te"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    q.extend_from_slice(extra);
    let r = http()
        .get(format!("{}/authorize", s.issuer()))
        .query(&q)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let loc = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(loc.path(), "/cb");
    assert_eq!(loc.port(), Some(4567));
    let get = |k: &str| {
        loc.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(get("state").as_deref(), Some("st4te"));
    assert_eq!(get("iss").as_deref(), Some(s.issuer()));
    get("code").expect("code in redirect")
}

// ---------------------------------------------------------------- metadata

#[tokio::test]
async fn testkit_metadata_at_both_paths() {
    let s = TestServer::start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let r = read(
            http()
                .get(format!("{}{path}", s.issuer()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
        let m = &r.body;
        assert_eq!(m["issuer"], s.issuer());
        assert_eq!(m["token_endpoint"], format!("{}/token", s.issuer()));
        assert_eq!(
            m["authorization_endpoint"],
            format!("{}/authorize", s.issuer())
        );
        assert_eq!(m["jwks_uri"], format!("{}/jwks", s.issuer()));
        assert_eq!(m["revocation_endpoint"], format!("{}/revoke", s.issuer()));
        assert_eq!(
            m["introspection_endpoint"],
            format!("{}/introspect", s.issuer())
        );
        assert_eq!(
            m["device_authorization_endpoint"],
            format!("{}/device/auth", s.issuer())
        );
        assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(m["dpop_signing_alg_values_supported"], json!(["ES256"]));
        assert_eq!(m["authorization_response_iss_parameter_supported"], true);
        let grants = m["grant_types_supported"].as_array().unwrap();
        for g in [
            "client_credentials",
            "authorization_code",
            "refresh_token",
            "urn:ietf:params:oauth:grant-type:device_code",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ] {
            assert!(grants.contains(&json!(g)), "{g}");
        }
        assert_eq!(
            m["token_endpoint_auth_methods_supported"],
            json!([
                "none",
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ])
        );
        assert!(m["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("admin")));
    }
    let jwks = read(
        http()
            .get(format!("{}/jwks", s.issuer()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(jwks.body["keys"][0]["kty"], "EC");
    assert!(jwks.body["keys"][0].get("d").is_none());
}

// ---------------------------------------------------------------- client authentication

#[tokio::test]
async fn testkit_client_credentials_basic_and_post() {
    let s = TestServer::start().await;
    let r = client_credentials(&s, "read write").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body.get("refresh_token").is_none());
    let c = claims(r.body["access_token"].as_str().unwrap());
    assert_eq!(c["iss"], s.issuer());
    assert_eq!(c["sub"], "agent");
    assert_eq!(c["client_id"], "agent");
    assert_eq!(c["aud"], s.resource_url());
    assert_eq!(c["scope"], "read write");
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());

    let r = post(
        &token_url(&s),
        Auth::Post("agent-post", "agent-post-secret"),
        &[("grant_type", "client_credentials"), ("scope", "read")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // No resource requested: the audience is the issuer.
    assert_eq!(
        claims(r.body["access_token"].as_str().unwrap())["aud"],
        s.issuer()
    );

    // A secret_post client cannot use Basic, and vice versa.
    let r = post(
        &token_url(&s),
        Auth::Basic("agent-post", "agent-post-secret"),
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "invalid_client");
    assert_eq!(s.stats().grants.client_credentials, 2);
}

#[tokio::test]
async fn testkit_basic_credentials_are_form_urlencoded() {
    let secret = "p:ss+w/rd %é";
    let cfg = TestServerConfig::default().with_client(TestClient::new(
        "odd id:1",
        TestClientAuth::SecretBasic(secret.to_owned()),
    ));
    let s = TestServer::start_with(cfg).await;
    let enc = |v: &str| url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let header = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc("odd id:1"), enc(secret)))
    );
    assert!(header.len() > 10);
    let send = |h: String| {
        let url = token_url(&s);
        async move {
            read(
                http()
                    .post(url)
                    .header("Authorization", h)
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let r = send(header).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        claims(r.body["access_token"].as_str().unwrap())["client_id"],
        "odd id:1"
    );
    // The raw (unencoded) secret is not the encoded one: '+' decodes to a space.
    let r = send(format!(
        "Basic {}",
        STANDARD.encode("odd%20id%3A1:p:ss+w/rd %é")
    ))
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn testkit_wrong_secret_is_invalid_client() {
    let s = TestServer::start().await;
    let r = post(
        &token_url(&s),
        Auth::Basic("agent", "nope"),
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "invalid_client");
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let r = post(
        &token_url(&s),
        Auth::Post("agent-post", "nope"),
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    assert_eq!((r.status.as_u16(), r.error()), (401, "invalid_client"));
    let r = post(
        &token_url(&s),
        Auth::None("unknown"),
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    assert_eq!((r.status.as_u16(), r.error()), (401, "invalid_client"));
    // Public clients cannot use client_credentials.
    let r = post(
        &token_url(&s),
        PUBLIC,
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    assert_eq!(r.error(), "unauthorized_client");
    // Scope outside the client's allowance.
    let cfg = TestServerConfig::default().with_client(
        TestClient::new("narrow", TestClientAuth::SecretPost("x".into())).with_scope("read"),
    );
    let s = TestServer::start_with(cfg).await;
    let r = post(
        &token_url(&s),
        Auth::Post("narrow", "x"),
        &[
            ("grant_type", "client_credentials"),
            ("scope", "read admin"),
        ],
        None,
    )
    .await;
    assert_eq!(r.error(), "invalid_scope");
}

#[tokio::test]
async fn testkit_private_key_jwt() {
    let key = SigningKey::random(&mut rand::rngs::OsRng);
    let jwk = Dpop { key: key.clone() }.jwk();
    let cfg = TestServerConfig::default()
        .with_client(TestClient::new("pkjwt", TestClientAuth::PrivateKeyJwt(jwk)));
    let s = TestServer::start_with(cfg).await;
    let assertion = |aud: &str, jti: &str, exp: i64| {
        jwt(
            &key,
            &json!({"alg":"ES256","typ":"JWT"}),
            &json!({"iss":"pkjwt","sub":"pkjwt","aud":aud,"jti":jti,"exp":exp,"iat":now()}),
        )
    };
    let send = |a: String| {
        let url = token_url(&s);
        async move {
            read(
                http()
                    .post(url)
                    .form(&[
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &a),
                    ])
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let a = assertion(s.issuer(), "j1", now() + 60);
    let r = send(a.clone()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // Replayed jti.
    let r = send(a).await;
    assert_eq!(r.error(), "invalid_client");
    // Token endpoint as audience is fine too.
    let r = send(assertion(&token_url(&s), "j2", now() + 60)).await;
    assert_eq!(r.status, 200);
    // Wrong audience, expired.
    assert_eq!(
        send(assertion("https://other", "j3", now() + 60))
            .await
            .error(),
        "invalid_client"
    );
    assert_eq!(
        send(assertion(s.issuer(), "j4", now() - 1)).await.error(),
        "invalid_client"
    );
    // Signed by another key.
    let other = SigningKey::random(&mut rand::rngs::OsRng);
    let forged = jwt(
        &other,
        &json!({"alg":"ES256"}),
        &json!({"iss":"pkjwt","sub":"pkjwt","aud":s.issuer(),"jti":"j5","exp":now()+60}),
    );
    assert_eq!(send(forged).await.error(), "invalid_client");
}

// ---------------------------------------------------------------- refresh tokens

#[tokio::test]
async fn testkit_refresh_rotation_and_reuse_revokes_grant() {
    let s = TestServer::start().await;
    let rt0 = s.issue_refresh_token("agent", "read write offline_access");
    let refresh = |rt: String, scope: Option<&'static str>| {
        let url = token_url(&s);
        let resource = s.resource_url();
        async move {
            let mut p = vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", rt.as_str()),
            ];
            if let Some(sc) = scope {
                p.push(("scope", sc));
            }
            let _ = resource;
            post(&url, AGENT, &p, None).await
        }
    };
    let r1 = refresh(rt0.clone(), Some("read")).await;
    assert_eq!(r1.status, 200, "{:?}", r1.body);
    assert_eq!(r1.body["scope"], "read");
    let rt1 = r1.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt0);
    let at1 = r1.body["access_token"].as_str().unwrap().to_owned();

    // Widening on refresh is refused; the scope of the grant is still intact.
    let r = refresh(rt1.clone(), Some("read admin")).await;
    assert_eq!(r.error(), "invalid_scope");
    let r2 = refresh(rt1.clone(), None).await;
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body["scope"], "offline_access read write");
    let rt2 = r2.body["refresh_token"].as_str().unwrap().to_owned();

    // Reuse of a rotated token: invalid_grant and the whole grant is gone.
    let r = refresh(rt0, None).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "invalid_grant"));
    let r = refresh(rt2, None).await;
    assert_eq!(r.error(), "invalid_grant");
    let r = post(
        &format!("{}/introspect", s.issuer()),
        AGENT,
        &[("token", &at1)],
        None,
    )
    .await;
    assert_eq!(r.body["active"], false);
    let st = s.stats();
    assert_eq!(st.grants.refresh_token, 2);
    assert_eq!(st.revoked_grants, 1);
    // A refresh token of another client.
    let other = s.issue_refresh_token("agent-post", "read");
    assert_eq!(refresh(other, None).await.error(), "invalid_grant");
}

#[tokio::test]
async fn testkit_refresh_without_rotation() {
    let s =
        TestServer::start_with(TestServerConfig::default().with_rotate_refresh_tokens(false)).await;
    let rt = s.issue_refresh_token("agent", "read");
    for _ in 0..2 {
        let r = post(
            &token_url(&s),
            AGENT,
            &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body["refresh_token"], rt.as_str());
    }
    s.revoke_all();
    let r = post(
        &token_url(&s),
        AGENT,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        None,
    )
    .await;
    assert_eq!(r.error(), "invalid_grant");
}

// ---------------------------------------------------------------- authorization code

#[tokio::test]
async fn testkit_authorization_code_with_pkce() {
    let s = TestServer::start().await;
    let (verifier, challenge) = pkce();
    let resource = s.resource_url();
    let code = authorize(&s, "public-agent", &challenge, &[("resource", &resource)]).await;
    let exchange = |code: String, verifier: String, redirect: &'static str| {
        let url = token_url(&s);
        async move {
            post(
                &url,
                PUBLIC,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("code_verifier", &verifier),
                    ("redirect_uri", redirect),
                ],
                None,
            )
            .await
        }
    };
    let (wrong, _) = pkce();
    let r = exchange(code.clone(), wrong, "http://127.0.0.1:4567/cb").await;
    assert_eq!(r.error(), "invalid_grant");
    let r = exchange(code.clone(), verifier.clone(), "http://127.0.0.1:9999/cb").await;
    assert_eq!(r.error(), "invalid_grant");
    let r = exchange(code.clone(), verifier.clone(), "http://127.0.0.1:4567/cb").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let at = r.body["access_token"].as_str().unwrap().to_owned();
    let rt = r.body["refresh_token"].as_str().unwrap().to_owned();
    let c = claims(&at);
    assert_eq!(c["sub"], "agent-user");
    assert_eq!(c["aud"], s.resource_url());
    assert_eq!(
        api(&s.resource_url(), "Bearer", &at, None).await.status,
        200
    );

    // Second use: refused, and the tokens of the first use are revoked.
    let r = exchange(code, verifier, "http://127.0.0.1:4567/cb").await;
    assert_eq!(r.error(), "invalid_grant");
    assert_eq!(
        api(&s.resource_url(), "Bearer", &at, None).await.status,
        401
    );
    let r = post(
        &token_url(&s),
        PUBLIC,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        None,
    )
    .await;
    assert_eq!(r.error(), "invalid_grant");
    assert_eq!(s.stats().grants.authorization_code, 1);
}

#[tokio::test]
async fn testkit_authorize_errors() {
    let s = TestServer::start().await;
    let get = |q: Vec<(&'static str, String)>| {
        let url = format!("{}/authorize", s.issuer());
        async move { http().get(url).query(&q).send().await.unwrap() }
    };
    let (_, challenge) = pkce();
    // Unknown redirect_uri: no redirect.
    let r = get(vec![
        ("response_type", "code".into()),
        ("client_id", "public-agent".into()),
        ("redirect_uri", "https://evil.example/cb".into()),
        ("code_challenge", challenge.clone()),
        ("code_challenge_method", "S256".into()),
    ])
    .await;
    assert_eq!(r.status(), 400);
    // Missing PKCE: redirected error with state and iss.
    let r = get(vec![
        ("response_type", "code".into()),
        ("client_id", "public-agent".into()),
        ("redirect_uri", "http://127.0.0.1/cb".into()),
        ("state", "x".into()),
    ])
    .await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(loc.contains("error=invalid_request"), "{loc}");
    assert!(loc.contains("state=x"));
    // plain method refused.
    let r = get(vec![
        ("response_type", "code".into()),
        ("client_id", "public-agent".into()),
        ("code_challenge", challenge),
        ("code_challenge_method", "plain".into()),
    ])
    .await;
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("error=invalid_request"));
}

#[tokio::test]
async fn testkit_dpop_jkt_binds_the_code_and_public_refresh_tokens() {
    let s = TestServer::start().await;
    let key = Dpop::new();
    let (verifier, challenge) = pkce();
    let jkt = key.jkt();
    let code = authorize(&s, "public-agent", &challenge, &[("dpop_jkt", &jkt)]).await;
    let params = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("code_verifier", verifier.as_str()),
        ("redirect_uri", "http://127.0.0.1:4567/cb"),
    ];
    let tu = token_url(&s);
    // Proof from another key: refused.
    let other = Dpop::new();
    let r = post(
        &tu,
        PUBLIC,
        &params,
        Some(other.proof("POST", &tu, None, None)),
    )
    .await;
    assert_eq!(r.error(), "invalid_grant");
    let r = post(
        &tu,
        PUBLIC,
        &params,
        Some(key.proof("POST", &tu, None, None)),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(
        claims(r.body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        jkt
    );
    let rt = r.body["refresh_token"].as_str().unwrap().to_owned();
    let p = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt.as_str()),
    ];
    // The refresh token of a public client is bound to the key.
    assert_eq!(post(&tu, PUBLIC, &p, None).await.error(), "invalid_grant");
    assert_eq!(
        post(&tu, PUBLIC, &p, Some(other.proof("POST", &tu, None, None)))
            .await
            .error(),
        "invalid_grant"
    );
    let r = post(&tu, PUBLIC, &p, Some(key.proof("POST", &tu, None, None))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "DPoP");
}

// ---------------------------------------------------------------- device flow

async fn device_start(s: &TestServer) -> Value {
    let r = post(
        &format!("{}/device/auth", s.issuer()),
        PUBLIC,
        &[("scope", "read offline_access")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

async fn poll_device(s: &TestServer, device_code: &str) -> Resp {
    post(
        &token_url(s),
        PUBLIC,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn testkit_device_flow_pending_then_approved() {
    let s = TestServer::start_with(
        TestServerConfig::default().with_device_interval(Duration::from_secs(1)),
    )
    .await;
    let d = device_start(&s).await;
    let user_code = d["user_code"].as_str().unwrap();
    assert_eq!(user_code.len(), 9);
    assert_eq!(&user_code[4..5], "-");
    assert_eq!(d["interval"], 1);
    assert_eq!(d["verification_uri"], format!("{}/device", s.issuer()));
    assert!(d["verification_uri_complete"]
        .as_str()
        .unwrap()
        .contains(user_code));
    let dc = d["device_code"].as_str().unwrap();
    let poll = || poll_device(&s, dc);
    assert_eq!(poll().await.error(), "authorization_pending");
    assert!(s.approve_device(&user_code.to_lowercase()));
    assert!(!s.approve_device("ZZZZ-ZZZZ"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = poll().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["refresh_token"].is_string());
    assert_eq!(
        claims(r.body["access_token"].as_str().unwrap())["sub"],
        "agent-user"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(poll().await.error(), "invalid_grant");
    assert_eq!(s.stats().grants.device_code, 1);
}

#[tokio::test]
async fn testkit_device_flow_slow_down_and_denied() {
    let s = TestServer::start_with(
        TestServerConfig::default().with_device_interval(Duration::from_secs(1)),
    )
    .await;
    let d = device_start(&s).await;
    let dc = d["device_code"].as_str().unwrap();
    let poll = || poll_device(&s, dc);
    assert_eq!(poll().await.error(), "authorization_pending");
    assert_eq!(poll().await.error(), "slow_down");
    assert!(s.deny_device(d["user_code"].as_str().unwrap()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(poll().await.error(), "access_denied");

    // Expiry.
    let s = TestServer::start_with(
        TestServerConfig::default()
            .with_device_interval(Duration::from_secs(1))
            .with_device_code_ttl(Duration::from_secs(1)),
    )
    .await;
    let d = device_start(&s).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = post(
        &token_url(&s),
        PUBLIC,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", d["device_code"].as_str().unwrap()),
        ],
        None,
    )
    .await;
    assert_eq!(r.error(), "expired_token");
}

// ---------------------------------------------------------------- faults

#[tokio::test]
async fn testkit_fault_injection_and_latency() {
    let s = TestServer::start().await;
    s.fail_next(2, 503, Some(7));
    for _ in 0..2 {
        let r = client_credentials(&s, "read").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after").as_deref(), Some("7"));
        assert_eq!(r.error(), "temporarily_unavailable");
    }
    assert_eq!(client_credentials(&s, "read").await.status, 200);
    s.fail_next(1, 500, None);
    let r = client_credentials(&s, "read").await;
    assert_eq!((r.status.as_u16(), r.error()), (500, "server_error"));
    assert!(r.header("retry-after").is_none());
    s.set_latency(Duration::from_millis(300));
    let t = std::time::Instant::now();
    assert_eq!(client_credentials(&s, "read").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(s.stats().token_requests, 5);
}

// ---------------------------------------------------------------- DPoP at the token endpoint

#[tokio::test]
async fn testkit_dpop_nonce_challenge_then_success() {
    let s = TestServer::start_with(TestServerConfig::default().with_require_dpop_nonce(true)).await;
    let key = Dpop::new();
    let tu = token_url(&s);
    let p = [("grant_type", "client_credentials"), ("scope", "read")];
    let r = post(&tu, AGENT, &p, Some(key.proof("POST", &tu, None, None))).await;
    assert_eq!((r.status.as_u16(), r.error()), (400, "use_dpop_nonce"));
    let nonce = r.header("dpop-nonce").expect("DPoP-Nonce");
    let r = post(
        &tu,
        AGENT,
        &p,
        Some(key.proof("POST", &tu, Some(&nonce), None)),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "DPoP");
    assert!(r.header("dpop-nonce").is_some());
    assert_eq!(
        claims(r.body["access_token"].as_str().unwrap())["cnf"]["jkt"],
        key.jkt()
    );
    // A wrong nonce is also a nonce challenge.
    let r = post(
        &tu,
        AGENT,
        &p,
        Some(key.proof("POST", &tu, Some("bogus"), None)),
    )
    .await;
    assert_eq!(r.error(), "use_dpop_nonce");
    assert_eq!(s.stats().nonce_challenges, 2);
}

#[tokio::test]
async fn testkit_dpop_proof_checks() {
    let s = TestServer::start().await;
    let key = Dpop::new();
    let tu = token_url(&s);
    let p = [("grant_type", "client_credentials")];
    // Replayed jti.
    let proof = key.proof("POST", &tu, None, None);
    assert_eq!(post(&tu, AGENT, &p, Some(proof.clone())).await.status, 200);
    assert_eq!(
        post(&tu, AGENT, &p, Some(proof)).await.error(),
        "invalid_dpop_proof"
    );
    // Wrong htu, wrong htm.
    let wrong = format!("{}/other", s.issuer());
    assert_eq!(
        post(&tu, AGENT, &p, Some(key.proof("POST", &wrong, None, None)))
            .await
            .error(),
        "invalid_dpop_proof"
    );
    assert_eq!(
        post(&tu, AGENT, &p, Some(key.proof("GET", &tu, None, None)))
            .await
            .error(),
        "invalid_dpop_proof"
    );
    // htu with a query still matches (query and fragment are ignored).
    assert_eq!(
        post(
            &tu,
            AGENT,
            &p,
            Some(key.proof("POST", &format!("{tu}?x=1"), None, None))
        )
        .await
        .status,
        200
    );
    // Stale iat.
    let stale = key.proof_claims(json!({"jti":"a","htm":"POST","htu":tu,"iat": now() - 600}));
    assert_eq!(
        post(&tu, AGENT, &p, Some(stale)).await.error(),
        "invalid_dpop_proof"
    );
    for iat in [json!(i64::MIN), json!(i64::MAX), json!(1e300), json!("now")] {
        let odd = key.proof_claims(
            json!({"jti": b64(rand::random::<[u8; 8]>()), "htm": "POST", "htu": tu, "iat": iat}),
        );
        assert_eq!(
            post(&tu, AGENT, &p, Some(odd)).await.error(),
            "invalid_dpop_proof"
        );
    }
    // Wrong typ, private key in the header, garbage.
    let bad_typ = jwt(
        &key.key,
        &json!({"typ":"JWT","alg":"ES256","jwk":key.jwk()}),
        &json!({"jti":"b","htm":"POST","htu":tu,"iat":now()}),
    );
    assert_eq!(
        post(&tu, AGENT, &p, Some(bad_typ)).await.error(),
        "invalid_dpop_proof"
    );
    let mut private = key.jwk();
    private["d"] = json!(b64(key.key.to_bytes()));
    let with_d = jwt(
        &key.key,
        &json!({"typ":"dpop+jwt","alg":"ES256","jwk":private}),
        &json!({"jti":"c","htm":"POST","htu":tu,"iat":now()}),
    );
    assert_eq!(
        post(&tu, AGENT, &p, Some(with_d)).await.error(),
        "invalid_dpop_proof"
    );
    assert_eq!(
        post(&tu, AGENT, &p, Some("x.y.z".into())).await.error(),
        "invalid_dpop_proof"
    );
    // Two DPoP headers.
    let r = read(
        http()
            .post(&tu)
            .basic_auth("agent", Some("agent-secret"))
            .header("DPoP", key.proof("POST", &tu, None, None))
            .header("DPoP", key.proof("POST", &tu, None, None))
            .form(&p)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(), "invalid_dpop_proof");
}

// ---------------------------------------------------------------- protected resource

#[tokio::test]
async fn testkit_resource_challenge_and_metadata() {
    let s = TestServer::start().await;
    let r = read(http().get(s.resource_url()).send().await.unwrap()).await;
    assert_eq!(r.status, 401);
    let challenges = r.all("www-authenticate");
    let md = format!("{}/.well-known/oauth-protected-resource/api", s.issuer());
    assert!(challenges[0].starts_with("DPoP "), "{challenges:?}");
    assert!(challenges[0].contains("algs=\"ES256\""));
    assert!(challenges[1].starts_with("Bearer "));
    assert!(challenges[1].contains(&format!("resource_metadata=\"{md}\"")));
    let m = read(http().get(&md).send().await.unwrap()).await;
    assert_eq!(m.body["resource"], s.resource_url());
    assert_eq!(m.body["authorization_servers"], json!([s.issuer()]));
    assert_eq!(m.body["bearer_methods_supported"], json!(["header"]));
    assert_eq!(m.body["dpop_bound_access_tokens_required"], false);
    let st = s.stats();
    assert_eq!((st.resource_requests, st.resource_rejections), (1, 1));
}

#[tokio::test]
async fn testkit_resource_bearer_success_and_rejections() {
    let s = TestServer::start().await;
    let at = client_credentials(&s, "read").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api(
        &format!("{}/items?x=1", s.resource_url()),
        "Bearer",
        &at,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["ok"], true);
    assert_eq!(r.body["sub"], "agent");
    assert_eq!(r.body["client_id"], "agent");
    assert_eq!(r.body["scope"], "read");
    assert_eq!(r.body["path"], "/api/items");
    assert_eq!(r.body["method"], "GET");
    assert_eq!(r.body["jkt"], Value::Null);
    // Insufficient scope.
    let r = api(
        &format!("{}/admin/users", s.resource_url()),
        "Bearer",
        &at,
        None,
    )
    .await;
    assert_eq!(r.status, 403);
    let c = r.header("www-authenticate").unwrap();
    assert!(c.starts_with("Bearer "), "{c}");
    assert!(
        c.contains("error=\"insufficient_scope\"") && c.contains("scope=\"admin\""),
        "{c}"
    );
    let admin = client_credentials(&s, "read admin").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        api(
            &format!("{}/admin/users", s.resource_url()),
            "Bearer",
            &admin,
            None
        )
        .await
        .status,
        200
    );
    // Garbage, tampered, wrong audience.
    let r = api(&s.resource_url(), "Bearer", "garbage", None).await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));
    let mut tampered = at.clone();
    tampered.push('A');
    assert_eq!(
        api(&s.resource_url(), "Bearer", &tampered, None)
            .await
            .status,
        401
    );
    let no_aud = post(
        &token_url(&s),
        AGENT,
        &[("grant_type", "client_credentials")],
        None,
    )
    .await;
    let r = api(
        &s.resource_url(),
        "Bearer",
        no_aud.body["access_token"].as_str().unwrap(),
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    // Revoked.
    s.revoke_all();
    assert_eq!(
        api(&s.resource_url(), "Bearer", &at, None).await.status,
        401
    );
    // Expired.
    let s = TestServer::start_with(
        TestServerConfig::default().with_access_token_ttl(Duration::from_secs(1)),
    )
    .await;
    let at = client_credentials(&s, "read").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        api(&s.resource_url(), "Bearer", &at, None).await.status,
        401
    );
}

#[tokio::test]
async fn testkit_resource_dpop_with_nonce() {
    let s = TestServer::start_with(
        TestServerConfig::default()
            .with_resource_require_dpop_nonce(true)
            .with_resource_dpop_required(true),
    )
    .await;
    let key = Dpop::new();
    let tu = token_url(&s);
    let resource = s.resource_url();
    let r = post(
        &tu,
        AGENT,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "read"),
            ("resource", &resource),
        ],
        Some(key.proof("POST", &tu, None, None)),
    )
    .await;
    let at = r.body["access_token"].as_str().unwrap().to_owned();
    let as_nonce = r.header("dpop-nonce").unwrap();
    let url = format!("{resource}/data");
    // Bearer presentation of a DPoP-bound token.
    let r = api(&url, "Bearer", &at, None).await;
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    // No nonce: challenge.
    let r = api(
        &url,
        "DPoP",
        &at,
        Some(key.proof("GET", &url, None, Some(&at))),
    )
    .await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("DPoP "));
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"use_dpop_nonce\""));
    let nonce = r.header("dpop-nonce").unwrap();
    assert_ne!(
        nonce, as_nonce,
        "resource nonces are distinct from the AS ones"
    );
    // Missing ath, wrong key, wrong htu.
    let r = api(
        &url,
        "DPoP",
        &at,
        Some(key.proof("GET", &url, Some(&nonce), None)),
    )
    .await;
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_dpop_proof"));
    let r = api(
        &url,
        "DPoP",
        &at,
        Some(Dpop::new().proof("GET", &url, Some(&nonce), Some(&at))),
    )
    .await;
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_dpop_proof"));
    let r = api(
        &url,
        "DPoP",
        &at,
        Some(key.proof("GET", &resource, Some(&nonce), Some(&at))),
    )
    .await;
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_dpop_proof"));
    // Success, htu without the query.
    let r = api(
        &format!("{url}?q=1"),
        "DPoP",
        &at,
        Some(key.proof("GET", &url, Some(&nonce), Some(&at))),
    )
    .await;
    assert_eq!(r.status, 200, "{:?} {:?}", r.body, r.headers);
    assert_eq!(r.body["jkt"], key.jkt());
    // A Bearer token is refused where DPoP is required.
    let bearer = client_credentials(&s, "read").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api(&url, "Bearer", &bearer, None).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("DPoP "));
    let m = read(
        http()
            .get(format!(
                "{}/.well-known/oauth-protected-resource/api",
                s.issuer()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(m.body["dpop_bound_access_tokens_required"], true);
    assert!(s.stats().nonce_challenges >= 1);
}

// ---------------------------------------------------------------- token exchange

#[tokio::test]
async fn testkit_token_exchange() {
    let s = TestServer::start().await;
    let resource = s.resource_url();
    let subject = client_credentials(&s, "read write").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let actor = client_credentials(&s, "read").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let at_type = "urn:ietf:params:oauth:token-type:access_token";
    let exchange = |scope: &'static str, subject: String, actor: Option<String>| {
        let url = token_url(&s);
        let resource = resource.clone();
        async move {
            let mut p = vec![
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange".to_owned(),
                ),
                ("subject_token", subject),
                ("subject_token_type", at_type.to_owned()),
                ("scope", scope.to_owned()),
                ("resource", resource),
            ];
            if let Some(a) = actor {
                p.push(("actor_token", a));
                p.push(("actor_token_type", at_type.to_owned()));
            }
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post(
                &url,
                Auth::Post("agent-post", "agent-post-secret"),
                &p,
                None,
            )
            .await
        }
    };
    let r = exchange("read", subject.clone(), None).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["issued_token_type"], at_type);
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body.get("refresh_token").is_none());
    let c = claims(r.body["access_token"].as_str().unwrap());
    assert_eq!(
        (
            c["sub"].as_str(),
            c["client_id"].as_str(),
            c["scope"].as_str()
        ),
        (Some("agent"), Some("agent-post"), Some("read"))
    );
    assert_eq!(c["aud"], resource);
    // Widening refused.
    assert_eq!(
        exchange("read admin", subject.clone(), None).await.error(),
        "invalid_scope"
    );
    // Act chain: first delegation, then a second hop nests the first actor.
    let first = exchange("read", subject.clone(), Some(actor.clone())).await;
    let first_at = first.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&first_at)["act"], json!({"sub": "agent"}));
    let second_actor = post(
        &token_url(&s),
        Auth::Post("agent-post", "agent-post-secret"),
        &[("grant_type", "client_credentials")],
        None,
    )
    .await
    .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = exchange("read", first_at, Some(second_actor)).await;
    let second_at = second.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        claims(&second_at)["act"],
        json!({"sub": "agent-post", "act": {"sub": "agent"}})
    );
    let r = api(&s.resource_url(), "Bearer", &second_at, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["act"]["act"]["sub"], "agent");
    // Invalid subject token.
    assert_eq!(
        exchange("read", "nope".into(), None).await.error(),
        "invalid_request"
    );
    assert_eq!(s.stats().grants.token_exchange, 3);
}

// ---------------------------------------------------------------- revocation and introspection

#[tokio::test]
async fn testkit_revocation_and_introspection() {
    let s = TestServer::start().await;
    let intro = format!("{}/introspect", s.issuer());
    let revoke = format!("{}/revoke", s.issuer());
    let at = client_credentials(&s, "read").await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = post(&intro, AGENT, &[("token", &at)], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["client_id"], "agent");
    assert_eq!(r.body["sub"], "agent");
    assert_eq!(r.body["scope"], "read");
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["aud"], s.resource_url());
    assert!(r.body["exp"].is_i64());
    // Unauthenticated introspection.
    let r = post(&intro, Auth::Basic("agent", "bad"), &[("token", &at)], None).await;
    assert_eq!(r.status, 401);
    // Revoke the access token.
    let r = post(
        &revoke,
        AGENT,
        &[("token", &at), ("token_type_hint", "access_token")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        post(&intro, AGENT, &[("token", &at)], None).await.body["active"],
        false
    );
    // Unknown tokens: 200.
    assert_eq!(
        post(&revoke, AGENT, &[("token", "unknown")], None)
            .await
            .status,
        200
    );
    // Refresh token: introspect then revoke, which revokes the grant.
    let rt = s.issue_refresh_token("agent", "read offline_access");
    let r = post(
        &token_url(&s),
        AGENT,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
        None,
    )
    .await;
    let rt2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    let at2 = r.body["access_token"].as_str().unwrap().to_owned();
    let r = post(&intro, AGENT, &[("token", &rt2)], None).await;
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["scope"], "offline_access read");
    // Another client cannot revoke it.
    let r = post(
        &revoke,
        Auth::Post("agent-post", "agent-post-secret"),
        &[("token", &rt2)],
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        post(&revoke, AGENT, &[("token", &rt2)], None).await.status,
        200
    );
    assert_eq!(
        post(&intro, AGENT, &[("token", &rt2)], None).await.body["active"],
        false
    );
    assert_eq!(
        post(&intro, AGENT, &[("token", &at2)], None).await.body["active"],
        false
    );
    assert_eq!(s.stats().revoked_grants, 1);
    // DPoP-bound token introspection shows cnf.
    let key = Dpop::new();
    let tu = token_url(&s);
    let r = post(
        &tu,
        AGENT,
        &[("grant_type", "client_credentials")],
        Some(key.proof("POST", &tu, None, None)),
    )
    .await;
    let r = post(
        &intro,
        AGENT,
        &[("token", r.body["access_token"].as_str().unwrap())],
        None,
    )
    .await;
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(r.body["cnf"]["jkt"], key.jkt());
}

// ---------------------------------------------------------------- robustness

#[tokio::test]
async fn testkit_malformed_requests_get_oauth_errors() {
    let s = TestServer::start().await;
    let tu = token_url(&s);
    // Not a form.
    let r = read(
        http()
            .post(&tu)
            .basic_auth("agent", Some("agent-secret"))
            .body("{}")
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(), "invalid_request");
    // Garbage bytes in a form.
    let r = read(
        http()
            .post(&tu)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(vec![0xff, 0x00, b'%', b'=', b'&', b'&'])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(r.status.is_client_error());
    assert!(!r.error().is_empty());
    // Bad Basic header.
    let r = read(
        http()
            .post(&tu)
            .header("authorization", "Basic !!!")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(), "invalid_client");
    // Duplicate parameters.
    let r = read(
        http()
            .post(&tu)
            .basic_auth("agent", Some("agent-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials&grant_type=refresh_token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.error(), "invalid_request");
    // Unknown grant type.
    let r = post(&tu, AGENT, &[("grant_type", "password")], None).await;
    assert_eq!(r.error(), "unsupported_grant_type");
    // Two authentication mechanisms.
    let r = post(
        &tu,
        AGENT,
        &[("grant_type", "client_credentials"), ("client_secret", "x")],
        None,
    )
    .await;
    assert_eq!(r.error(), "invalid_request");
    // Bad resource indicator.
    let r = post(
        &tu,
        AGENT,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "not a uri"),
        ],
        None,
    )
    .await;
    assert_eq!(r.error(), "invalid_target");
    // Malformed Authorization at the resource, and an unknown route.
    let r = read(
        http()
            .get(s.resource_url())
            .header("authorization", "Bearer")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 400);
    let r = read(
        http()
            .get(format!("{}/nope", s.issuer()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404);
    // The server still works.
    assert_eq!(client_credentials(&s, "read").await.status, 200);
}

#[tokio::test]
async fn testkit_drop_stops_the_server() {
    let s = TestServer::start().await;
    let client = http();
    let url = format!("{}/.well-known/oauth-authorization-server", s.issuer());
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(client.get(&url).send().await.is_err());
    assert!(http().get(&url).send().await.is_err());
}
