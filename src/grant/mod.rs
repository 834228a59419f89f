//! Grants: one file per RFC operation, each a method of [`OAuthClient`].
//!
//! - client credentials (RFC 6749 §4.4): [`OAuthClient::client_credentials`]
//! - authorization code + PKCE (RFC 6749 §4.1, RFC 7636, RFC 9207, RFC 8252):
//!   [`OAuthClient::authorization_url`], [`OAuthClient::exchange_code`], [`LoopbackRedirect`]
//! - device authorization (RFC 8628): [`OAuthClient::device_flow`]
//! - refresh (RFC 6749 §6): [`OAuthClient::refresh`]
//! - token exchange (RFC 8693): [`OAuthClient::token_exchange`]
//! - JWT bearer (RFC 7523): [`OAuthClient::jwt_bearer`], [`OAuthClient::jwt_bearer_from`];
//!   enterprise-managed authorization with ID-JAGs: [`IdJagIssuer`]
//! - revocation (RFC 7009) and introspection (RFC 7662): [`OAuthClient::revoke`],
//!   [`OAuthClient::introspect`]
//!
//! Every token request goes through one executor that authenticates the client (a fresh
//! assertion per attempt), attaches a fresh DPoP proof, retries once on `use_dpop_nonce` when
//! the nonce changed, and parses the response per RFC 6749 §5.

mod authorization_code;
pub(crate) mod client;
mod client_credentials;
mod device;
mod id_jag;
mod jwt_bearer;
mod pkce;
mod refresh;
pub(crate) mod request;
mod response;
mod revocation;
mod token_exchange;

pub use crate::client_auth::{JWT_BEARER_ASSERTION, JWT_SPIFFE_ASSERTION};
pub use authorization_code::{LoopbackRedirect, PendingAuthorization};
pub(crate) use client::OAuthClient;
pub use client::OAuthClientBuilder;
pub use client_credentials::CLIENT_CREDENTIALS;
pub use device::{DeviceAuthorization, DEVICE_CODE};
pub use id_jag::{IdJag, IdJagIssuer, ID_JAG_GRANT_PROFILE, ID_JAG_TOKEN_TYPE};
pub use jwt_bearer::JWT_BEARER;
pub use pkce::PkceVerifier;
pub use refresh::REFRESH_TOKEN;
pub(crate) use request::TokenParams;
pub use revocation::Introspection;
pub use token_exchange::{
    TokenExchangeRequest, ACCESS_TOKEN_TYPE, ID_TOKEN_TYPE, JWT_TOKEN_TYPE, REFRESH_TOKEN_TYPE,
    TOKEN_EXCHANGE,
};

/// Fuzz hook: parse `data` as a token response body with a 200 and a 400 status.
pub(crate) fn fuzz_token_response(data: &[u8]) {
    for status in [200u16, 400] {
        let Ok(resp) = http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(bytes::Bytes::copy_from_slice(data))
        else {
            return;
        };
        let _ = response::parse_token_response(
            &resp,
            &response::ParseOptions {
                requested_scope: None,
                default_expires_in: None,
                now: std::time::SystemTime::now(),
                dpop_sent: status == 200,
                accept_bearer: false,
                exchange: false,
            },
        );
    }
}
