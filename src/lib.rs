#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
mod cache;
mod challenge;
mod client_auth;
mod clock;
mod discovery;
mod dpop;
mod error;
mod event;
mod jose;
mod jwt;
#[cfg(test)]
mod layering;
#[cfg(feature = "middleware")]
mod middleware;
mod secret;
mod session;
mod sync;
mod token;
mod transport;

pub mod dangerous;
pub mod delegation;
pub mod grant;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use agent::{Agent, AgentBuilder, AgentRequest, DpopMode};
pub use cache::{
    Binding, BoxFuture, CacheConfig, CachedToken, TokenCache, TokenHandle, TokenKey, TokenRef,
    TokenSource,
};
pub use client_auth::{AssertionKey, ClientAuth, JWT_BEARER_ASSERTION};
pub use delegation::{
    delegation_chain, ChildAgent, ChildRequest, DelegationBuilder, DelegationChain,
    UnverifiedClaims,
};
pub use discovery::{
    challenges_from_headers, fetch_resource_metadata, parse_challenges, resource_matches,
    resource_metadata_from_challenges, resource_metadata_url, AuthorizationServer, Challenge,
    ChallengeError, ChallengeErrorKind, Endpoint, MetadataPatch, MetadataPolicy,
    MtlsEndpointAliases, ResourceMetadata, ServerMetadata,
};
pub use dpop::{ath, normalize_htu, DpopKey, NonceCache};
pub use error::ErrorContext;
pub use error::{Error, OAuthError, OAuthErrorCode, Result, TransportErrorKind, MAX_ERROR_BODY};
pub use event::{AgentEvent, EventHook};
pub use grant::{OAuthClient, OAuthClientBuilder, TokenParams};
pub use jose::{sign_compact, P256Signer, PublicJwk, RingSigner, Signer};
#[cfg(feature = "middleware")]
pub use middleware::AgentMiddleware;
pub use secret::SecretString;
pub use session::RefreshingSource;
pub use store::{
    FileStore, MemoryStore, StoreLock, StoreOutcome, StoredGrant, TokenStore, Versioned,
};
pub use token::{AccessToken, Confirmation, RefreshToken, Scope, TokenSet, TokenType};
#[cfg(feature = "mtls")]
pub use transport::tls::{cnf_x5t_s256, ClientIdentity, KeyFormat, TrustRoots};
pub use transport::{
    FormRequest, HttpRequest, HttpResponse, HttpTransport, RetryPolicy, TransportConfig,
};

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

    /// Parses arbitrary bytes as authorization server and protected resource metadata.
    pub fn metadata(data: &[u8]) {
        let _ = crate::ServerMetadata::from_json(data, "https://as.example");
        if let Ok(url) = url::Url::parse("https://api.example/v1/x") {
            let _ = crate::ResourceMetadata::from_json(data, &url);
        }
    }
}
