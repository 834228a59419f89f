//! Client registration: Dynamic Client Registration (RFC 7591) and client ID metadata
//! documents, against the embedded server, scripted hostile servers and oidc-provider. Every
//! test is named `registration_*`, so `cargo test registration` runs them all.
//!
//! - `dcr`: register, then use the client (client credentials), typed error responses.
//! - `cimd`: a `client_id` URL accepted at `/authorize` and `/token`, refused documents.
//! - `interop`: registration then authorization code + PKCE, written once and run against
//!   the embedded server and oidc-provider.
//! - `hardening`: echoed secrets, retries, limits and URL checks.
//! - `store`: a registration persisted in a `FileStore` and used again.
//! - `agent`: agents registering on first use (DCR kept across restarts, redone after
//!   `invalid_client`, CIMD where supported) and the code flow's PKCE metadata check.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::Value;
use url::Url;

use crate::support::prelude::{
    AuthorizationServer, HttpTransport, OAuthClient, PendingAuthorization, Registration,
    TestServer, TokenParams, TokenSet, TransportConfig,
};

mod agent;
mod cimd;
mod dcr;
mod hardening;
mod interop;
mod store;

/// The redirect URI the tests register (loopback: the embedded server accepts any port).
pub const REDIRECT: &str = "http://127.0.0.1:1/cb";

/// A transport with short backoffs.
pub fn transport() -> HttpTransport {
    let mut config = TransportConfig::default();
    config.min_backoff = Duration::from_millis(10);
    config.max_backoff = Duration::from_millis(50);
    HttpTransport::with_config(config).unwrap()
}

/// The authorization server at `issuer` (plain `http` on loopback is allowed).
pub fn server_at(issuer: &str) -> AuthorizationServer {
    AuthorizationServer::new(issuer, transport()).unwrap()
}

/// A client of `server` for `registration`, authenticating as it says.
pub fn client_for(server: AuthorizationServer, registration: &Registration) -> OAuthClient {
    let auth = registration.client_auth(None).unwrap();
    OAuthClient::builder(server, registration.client_id.clone())
        .auth(auth)
        .build()
}

/// A plain HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The embedded server's auto-approved answer to an authorization request: its redirect.
pub async fn approve_at_testkit(pending: &PendingAuthorization) -> Url {
    let resp = http().get(pending.url.clone()).send().await.unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match location {
        Some(l) if status == 302 => Url::parse(&l).unwrap(),
        _ => panic!("authorization refused: {status} {:?}", resp.text().await),
    }
}

/// Authorization code + PKCE at the embedded server for `client`: scope `read`, the
/// server's resource.
pub async fn code_flow_at_testkit(server: &TestServer, client: &OAuthClient) -> TokenSet {
    let pending = client
        .authorization_url(
            REDIRECT,
            &TokenParams::new()
                .scope("read")
                .resource(server.resource_url()),
        )
        .await
        .unwrap();
    let callback = approve_at_testkit(&pending).await;
    client.exchange_code(&pending, &callback).await.unwrap()
}

/// The JWT payload of `token`.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
}
