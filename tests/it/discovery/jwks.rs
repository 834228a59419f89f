//! The JWKS cache against a scripted server: fetched once from the metadata's `jwks_uri`,
//! refetched on an unknown `kid` (a rotated key is found, a flood of invented ones costs one
//! request per interval), and oversized or malformed documents refused with typed errors.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use super::{transport, RFC8414};
use crate::support::prelude::{
    sign_compact, AuthorizationServer, Error, Jwks, JwksConfig, RingSigner, Signer, Validation,
    VerificationError,
};
use crate::support::server::{guard, Reply, Scripted};

/// A signing key with its public JWK under `kid`.
struct Key {
    signer: RingSigner,
    kid: String,
}

impl Key {
    fn new(kid: &str) -> Key {
        Key {
            signer: RingSigner::generate().unwrap(),
            kid: kid.to_owned(),
        }
    }

    fn jwk(&self) -> Value {
        let mut jwk: Value = serde_json::from_str(&self.signer.public_jwk().to_json()).unwrap();
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    fn token(&self, issuer: &str) -> String {
        let header = B64.encode(json!({"alg": "ES256", "kid": self.kid}).to_string());
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 300;
        let claims = json!({"iss": issuer, "sub": "s", "exp": exp});
        sign_compact(&header, claims.to_string().as_bytes(), &self.signer).unwrap()
    }
}

fn serve_keys(s: &Scripted, keys: &[&Key]) {
    let doc = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    s.route(
        "/keys",
        Reply::json(200, &doc).header("content-type", "application/jwk-set+json"),
    );
}

/// A scripted issuer whose metadata names `/keys` as `jwks_uri`.
async fn issuer() -> (Scripted, String) {
    let s = Scripted::start().await;
    let issuer = s.origin();
    s.route(
        RFC8414,
        Reply::json(
            200,
            &json!({"issuer": issuer, "token_endpoint": format!("{issuer}/token"),
                    "jwks_uri": format!("{issuer}/keys")}),
        ),
    );
    (s, issuer)
}

fn keys_of(issuer: &str, config: JwksConfig) -> Jwks {
    Jwks::with_config(
        AuthorizationServer::new(issuer, transport()).unwrap(),
        config,
    )
}

fn refusal<T: std::fmt::Debug>(r: agent_oauth::Result<T>) -> VerificationError {
    match r {
        Err(Error::Verification(v)) => v,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

#[tokio::test]
async fn jwks_unknown_kid_refetches_once_then_rate_limited() {
    let (s, iss) = issuer().await;
    let (old, new) = (Key::new("2026-11"), Key::new("2026-12"));
    serve_keys(&s, &[&old]);
    let jwks = keys_of(
        &iss,
        JwksConfig::default().min_refetch_interval(Duration::from_secs(60)),
    );
    let v = Validation::new(&iss);
    for _ in 0..3 {
        let jwt = guard(jwks.verify(&old.token(&iss), &v)).await.unwrap();
        assert_eq!(jwt.kid(), Some("2026-11"));
    }
    assert_eq!(s.hits_for("/keys"), 1, "cached");

    // The server rotates its key: the first token with the new kid makes one refetch.
    serve_keys(&s, &[&new]);
    let jwt = guard(jwks.verify(&new.token(&iss), &v)).await.unwrap();
    assert_eq!(jwt.claim("sub"), Some(&json!("s")));
    assert_eq!(s.hits_for("/keys"), 2);
    // The old key is gone from the refetched set: its tokens are refused now, from the cache
    // (within the interval, no fetch).
    assert_eq!(
        refusal(guard(jwks.verify(&old.token(&iss), &v)).await),
        VerificationError::UnknownKey(Some("2026-11".into()))
    );
    // A flood of invented kids within the interval: no fetch at all.
    for i in 0..20 {
        let forged = Key::new(&format!("forged-{i}"));
        assert!(matches!(
            refusal(guard(jwks.verify(&forged.token(&iss), &v)).await),
            VerificationError::UnknownKey(Some(_))
        ));
    }
    assert_eq!(s.hits_for("/keys"), 2);
    // Explicit refresh obeys the same interval.
    assert!(!jwks.refresh().await.unwrap());
    assert_eq!(s.hits_for("/keys"), 2);

    // With a short interval, an unknown kid after it has passed may fetch again.
    let quick = keys_of(
        &iss,
        JwksConfig::default().min_refetch_interval(Duration::from_millis(100)),
    );
    guard(quick.verify(&new.token(&iss), &v)).await.unwrap();
    assert_eq!(s.hits_for("/keys"), 3, "first use");
    let unknown = Key::new("later");
    assert!(guard(quick.verify(&unknown.token(&iss), &v)).await.is_err());
    assert_eq!(s.hits_for("/keys"), 4, "first unknown kid");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(guard(quick.verify(&unknown.token(&iss), &v)).await.is_err());
    assert_eq!(s.hits_for("/keys"), 5, "unknown kid after the interval");
}

#[tokio::test]
async fn jwks_concurrent_first_verifications_share_one_fetch() {
    let (s, iss) = issuer().await;
    let key = Key::new("k");
    serve_keys(&s, &[&key]);
    let jwks = keys_of(&iss, JwksConfig::default());
    let v = Validation::new(&iss);
    let token = key.token(&iss);
    let all = (0..16).map(|_| {
        let (jwks, v, token) = (jwks.clone(), v.clone(), token.clone());
        tokio::spawn(async move { jwks.verify(&token, &v).await.map(|_| ()) })
    });
    for r in futures_util_join(all).await {
        r.unwrap();
    }
    assert_eq!(s.hits_for("/keys"), 1);
}

async fn futures_util_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<agent_oauth::Result<T>>>,
) -> Vec<agent_oauth::Result<T>> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(guard(h).await.expect("task"));
    }
    out
}

#[tokio::test]
async fn jwks_oversized_and_malformed_documents_refused() {
    let (s, iss) = issuer().await;
    let key = Key::new("k");
    let token = key.token(&iss);
    let v = Validation::new(&iss);
    let padding = "x".repeat(70 * 1024);
    let oversized = json!({"keys": [key.jwk()], "padding": padding}).to_string();
    let too_many = json!({"keys": vec![key.jwk(); 40]}).to_string();
    let cases: Vec<(Reply, &str)> = vec![
        (
            Reply::json(200, &json!({})).body(oversized),
            "over the limit",
        ),
        (Reply::json(200, &json!({})).body(too_many), "40 keys"),
        (Reply::json(200, &json!({})).body("{\"keys\": [}"), "JWKS: "),
        (
            Reply::json(200, &json!({"keys": "none"})),
            "no `keys` array",
        ),
        (
            Reply::json(
                200,
                &json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "AA"}]}),
            ),
            "no usable signing key",
        ),
        (
            Reply::json(200, &json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})),
            "no usable signing key",
        ),
        (
            Reply::status(200)
                .header("content-type", "text/html")
                .body("<html>"),
            "expected a JSON content type",
        ),
    ];
    for (reply, want) in cases {
        s.route("/keys", reply);
        let jwks = keys_of(&iss, JwksConfig::default());
        match guard(jwks.verify(&token, &v)).await {
            Err(Error::InvalidResponse(m)) => {
                assert!(m.contains(want), "{m} (want {want})");
                assert!(m.contains("JWKS request"), "names the request: {m}");
                assert!(!m.contains(&token), "{m}");
            }
            other => panic!("{want}: expected InvalidResponse, got {other:?}"),
        }
    }
    s.route("/keys", Reply::status(404));
    let err = guard(keys_of(&iss, JwksConfig::default()).verify(&token, &v))
        .await
        .expect_err("404");
    assert_eq!(err.status(), Some(404), "{err:?}");
    // A smaller cap set by the caller.
    serve_keys(&s, &[&key]);
    let small = keys_of(&iss, JwksConfig::default().max_bytes(64));
    assert!(matches!(
        guard(small.verify(&token, &v)).await,
        Err(Error::InvalidResponse(m)) if m.contains("over the limit of 64")
    ));
    // With a good set it verifies.
    assert!(
        guard(keys_of(&iss, JwksConfig::default()).verify(&token, &v))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn jwks_uri_missing_or_refused_is_a_discovery_error() {
    let s = Scripted::start().await;
    let iss = s.origin();
    s.route(RFC8414, Reply::json(200, &json!({"issuer": iss})));
    let v = Validation::new(&iss);
    let token = Key::new("k").token(&iss);
    let err = guard(keys_of(&iss, JwksConfig::default()).verify(&token, &v))
        .await
        .expect_err("no jwks_uri");
    assert!(
        matches!(&err, Error::Discovery(m) if m.contains("no jwks_uri")),
        "{err:?}"
    );
    // A jwks_uri on another origin pointing into a private network.
    s.route(
        RFC8414,
        Reply::json(
            200,
            &json!({"issuer": iss, "jwks_uri": "https://10.1.2.3/keys"}),
        ),
    );
    let err = guard(keys_of(&iss, JwksConfig::default()).verify(&token, &v))
        .await
        .expect_err("internal jwks_uri");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");
    assert_eq!(s.hits_for("/keys"), 0);
    // An opaque token is refused before any fetch.
    let err = guard(keys_of(&iss, JwksConfig::default()).verify("opaque", &v))
        .await
        .expect_err("opaque");
    assert!(matches!(
        err,
        Error::Verification(VerificationError::Malformed(_))
    ));
}
