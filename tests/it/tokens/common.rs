//! Helpers shared by the token tests.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::support::prelude::TestServer;
use crate::support::prelude::{
    AccessToken, AuthorizationServer, ClientAuth, HttpTransport, OAuthClient, RefreshToken,
    TokenSet, TokenType, TransportConfig,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

/// A transport with short backoffs, so retry tests stay fast.
pub fn fast_transport() -> HttpTransport {
    let mut config = TransportConfig::default();
    config.min_backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(50);
    HttpTransport::with_config(config).unwrap()
}

/// A client of `issuer` (plain `http` on loopback is allowed).
pub fn client_at(issuer: &str, client_id: &str, auth: ClientAuth) -> OAuthClient {
    let server = AuthorizationServer::new(issuer, fast_transport()).unwrap();
    OAuthClient::builder(server, client_id).auth(auth).build()
}

/// The default `agent` client of the test server (`client_secret_basic`).
pub fn agent(server: &TestServer) -> OAuthClient {
    client_at(
        server.issuer(),
        "agent",
        ClientAuth::client_secret_basic("agent-secret"),
    )
}

/// The JWT payload of `token`.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}

/// The `aud` claim as a list.
pub fn audiences(claims: &Value) -> Vec<String> {
    match &claims["aud"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A placeholder grant holding only `refresh_token` (its access token is already expired), as
/// an application would seed a store with a refresh token it obtained elsewhere.
pub fn grant_with_refresh_token(refresh_token: &str) -> TokenSet {
    let now = SystemTime::now();
    let mut t = TokenSet::new(
        AccessToken::new("placeholder-expired"),
        TokenType::Bearer,
        now - Duration::from_secs(120),
    );
    t.expires_at = Some(now - Duration::from_secs(60));
    t.refresh_token = Some(RefreshToken::new(refresh_token));
    t
}

/// A fresh ES256 key: (PKCS#8 PEM of the private key, public JWK).
pub fn es256_key() -> (String, Value) {
    use p256::pkcs8::{EncodePrivateKey as _, LineEnding};
    let key = p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng);
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let point = key.verifying_key().to_encoded_point(false);
    let jwk = json!({
        "kty": "EC",
        "crv": "P-256",
        "x": B64.encode(point.x().unwrap()),
        "y": B64.encode(point.y().unwrap()),
    });
    (pem, jwk)
}

/// The access token string of a cached token.
pub fn secret_of(t: &TokenSet) -> String {
    t.access_token.secret().to_owned()
}

/// Wait (polling, at most `limit`) until `cond` holds.
pub async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// `Arc` a store as the trait object the sources take.
pub fn dyn_store<S: crate::support::prelude::TokenStore>(
    s: S,
) -> Arc<dyn crate::support::prelude::TokenStore> {
    Arc::new(s)
}
