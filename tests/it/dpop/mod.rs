//! DPoP (RFC 9449) at the token endpoint, through `OAuthClient`, and the Agent's nonce handling
//! at a resource.
//!
//! - `token_endpoint`: every grant binds its token to the client's key (or to a child key for
//!   token exchange), `dpop_jkt` in the authorization URL, Bearer answers refused, proofs
//!   checked by an independent verifier, proof `iat` in the server's clock.
//! - `nonce`: the `use_dpop_nonce` retry (exactly one, only for a new nonce), nonce caching,
//!   fresh client assertions and proofs per attempt.
//! - `scenarios`: client credentials and the code flow with refresh, nonces demanded, against
//!   both servers (`support::servers`);
//! - `interop`: userinfo with `ath`, replay and nonces at node `oidc-provider` (skipped when
//!   Node.js is missing);
//! - `resource_nonce`: resources that ask for a nonce with 400, or never stop asking.
//!
//! All but `resource_nonce` need the `josekit` feature (client assertions, and the scripted
//! server's independent verifier).
//!
//! The embedded test server (`agent_oauth::testkit`) checks proofs with its own code; the
//! scripted server in `scripted` checks them with josekit and answers as each test dictates.

#[cfg(feature = "josekit")]
mod interop;
#[cfg(feature = "josekit")]
mod nonce;
mod resource_nonce;
#[cfg(feature = "josekit")]
mod scenarios;
#[cfg(feature = "josekit")]
mod scripted;
#[cfg(feature = "josekit")]
mod token_endpoint;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::prelude::{
    AuthorizationServer, ClientAuth, DpopKey, HttpTransport, OAuthClient,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

/// Unix time, seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The decoded payload of a compact JWS / JWT (not verified).
pub fn jwt_payload(jwt: &str) -> Value {
    let part = jwt.split('.').nth(1).expect("JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url payload"))
        .expect("JSON payload")
}

/// The decoded protected header of a compact JWS (not verified).
pub fn jwt_header(jwt: &str) -> Value {
    let part = jwt.split('.').next().expect("JWT has a header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url header"))
        .expect("JSON header")
}

/// An `OAuthClient` for `client_id` at `issuer` (discovered), with `auth` and an optional key.
pub async fn client(
    issuer: &str,
    client_id: &str,
    auth: ClientAuth,
    key: Option<&DpopKey>,
) -> OAuthClient {
    let server = AuthorizationServer::new(issuer, HttpTransport::new().unwrap()).unwrap();
    let mut b = OAuthClient::builder(server, client_id).auth(auth);
    if let Some(k) = key {
        b = b.dpop(k.clone());
    }
    b.build()
}

/// `cnf.jkt` of a JWT access token.
pub fn cnf_jkt(access_token: &str) -> String {
    jwt_payload(access_token)["cnf"]["jkt"]
        .as_str()
        .unwrap_or_else(|| panic!("no cnf.jkt in {}", jwt_payload(access_token)))
        .to_owned()
}
