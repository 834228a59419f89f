#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod clock;
mod discovery;
mod dpop;
mod error;
mod jose;
mod secret;
mod token;
mod transport;

pub mod dangerous;

pub use clock::{Clock, ClockSkew, SystemClock};
pub use discovery::{
    challenges_from_headers, fetch_resource_metadata, parse_challenges, resource_matches,
    resource_metadata_from_challenges, resource_metadata_url, AuthorizationServer, Challenge,
    ChallengeError, Endpoint, MetadataPolicy, MtlsEndpointAliases, ResourceMetadata,
    ServerMetadata,
};
pub use dpop::{ath, normalize_htu, DpopKey, NonceCache};
pub use error::{Error, OAuthError, OAuthErrorCode, Result, TransportErrorKind, MAX_ERROR_BODY};
pub use jose::{sign_compact, P256Signer, PublicJwk, RingSigner, Signer};
pub use secret::SecretString;
pub use token::{AccessToken, RefreshToken, Scope, TokenSet, TokenType};
pub use transport::{HttpRequest, HttpResponse, HttpTransport, RetryPolicy, TransportConfig};

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    check::<HttpTransport>();
    check::<AuthorizationServer>();
    check::<SecretString>();
    check::<TokenSet>();
}
