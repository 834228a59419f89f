#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
mod challenge;
mod client_auth;
mod clock;
mod deadline;
mod error;
mod event;
mod jwt;
#[cfg(test)]
mod layering;
#[cfg(feature = "middleware")]
mod middleware;
mod secret;
mod session;
mod sync;
mod token;

pub mod assertion;
pub mod cache;
pub mod dangerous;
pub mod delegation;
pub mod discovery;
pub mod dpop;
pub mod grant;
pub mod jose;
pub mod registration;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod transport;

// The public interface: what an agent author reaches for first is here; everything else lives in
// exactly one of the namespaces above.
pub use agent::{
    Agent, AgentBuilder, AgentRequest, AuthorizationPrompt, AuthorizationReason, DpopMode,
};
pub use client_auth::{AssertionKey, ClientAuth};
pub use discovery::resource_metadata::ResourceMetadata;
pub use discovery::server_metadata::{AuthorizationServer, ServerMetadata};
pub use dpop::key::DpopKey;
pub use error::{Error, ErrorContext, OAuthError, OAuthErrorCode, Result};
pub use event::{AgentEvent, ConsentRequest};
pub use grant::client::OAuthClient;
pub use grant::request::TokenParams;
#[cfg(feature = "middleware")]
pub use middleware::AgentMiddleware;
pub use secret::SecretString;
pub use session::RefreshingSource;
pub use token::{AccessToken, Binding, RefreshToken, Scope, TokenSet, TokenType};
pub use transport::client::{HttpTransport, TransportConfig};
#[cfg(feature = "mtls")]
pub use transport::tls::{ClientIdentity, TrustRoots};

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<HttpTransport>();
    check::<AuthorizationServer>();
    check::<SecretString>();
    check::<TokenSet>();
    #[cfg(feature = "mtls")]
    check::<ClientIdentity>();
    #[cfg(feature = "mtls")]
    check::<TrustRoots>();
}

/// Entry points for the fuzz targets in `fuzz/`; not part of the public API.
#[doc(hidden)]
pub mod __fuzz {
    /// Parses arbitrary bytes as `WWW-Authenticate` lines (split at `\n`)
    /// and panics if a successful parse does not survive a round trip.
    pub fn challenge(data: &[u8]) {
        crate::challenge::fuzz(data)
    }

    /// Parses arbitrary bytes as a token endpoint response body (JSON content type, 200 and
    /// 400), which must give a token set or a typed error.
    pub fn token_response(data: &[u8]) {
        crate::grant::fuzz_token_response(data)
    }

    /// Reads arbitrary bytes (lossily as text) as an unverified JWT, and as an access token whose
    /// `cnf` and delegation chain are read through it; then verifies it (with a fixed key) and
    /// reads the verified chain of what verifies.
    pub fn jwt(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let _ = crate::jwt::unverified_claims(&text);
        let token = crate::token::AccessToken::new(text.into_owned());
        let _ = crate::delegation::unverified_delegation_chain(&token);
        let set = crate::token::TokenSet::new(
            token,
            crate::token::TokenType::Bearer,
            std::time::SystemTime::UNIX_EPOCH,
        );
        let _ = set.unverified_cnf();
        // The verified path: parsing, algorithm and key checks, claims (RFC 7515 §A.3 key).
        let key = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        if let Ok(key) = crate::jose::VerifyingJwk::from_json(&key) {
            let validation = crate::jose::Validation::new("joe");
            if let Ok(jwt) = crate::jose::verify_jwt(set.access_token.secret(), &[key], &validation)
            {
                let _ = crate::delegation::VerifiedChain::from_verified(jwt);
            }
        }
    }

    /// Parses arbitrary bytes (after the first, which gives a chunk size) as a
    /// `text/event-stream`, in one push and in chunks of that size, and panics unless both give
    /// the same events and end in the same state.
    pub fn sse(data: &[u8]) {
        crate::transport::fuzz_sse(data)
    }

    /// Parses arbitrary bytes as a client registration response (201 and 400), a client ID
    /// metadata document and a stored registration record.
    pub fn registration(data: &[u8]) {
        crate::registration::fuzz(data)
    }

    /// Parses arbitrary bytes as authorization server and protected resource metadata, and as
    /// a JWK Set (each key as a verification key).
    pub fn metadata(data: &[u8]) {
        let _ = crate::discovery::jwks::parse_jwks(data, &crate::discovery::JwksConfig::default());
        let _ = crate::discovery::server_metadata::ServerMetadata::from_json(
            data,
            "https://as.example",
        );
        if let Ok(url) = url::Url::parse("https://api.example/v1/x") {
            let _ = crate::discovery::resource_metadata::ResourceMetadata::from_json(data, &url);
        }
    }
}
