//! Everything the integration tests use from `agent_oauth`, in one place.
//!
//! Tests import the crate only through this module (`use crate::support::prelude::...`), so a
//! change of the public paths touches this file alone.

pub use agent_oauth::cache::{CacheConfig, TokenCache, TokenHandle, TokenKey, TokenSource};
pub use agent_oauth::delegation::{unverified_delegation_chain, verify_delegation_chain};
pub use agent_oauth::discovery::{
    challenges_from_headers, fetch_resource_metadata, parse_challenges, resource_matches,
    resource_metadata_from_challenges, resource_metadata_url, Challenge, ChallengeError,
    ChallengeErrorKind, Endpoint, Jwks, JwksConfig, MetadataPolicy, TrustPolicy,
};
pub use agent_oauth::dpop::{ath, NonceCache};
pub use agent_oauth::grant::{
    DeviceAuthorization, LoopbackRedirect, OAuthClientBuilder, PendingAuthorization,
    TokenExchangeRequest,
};
pub use agent_oauth::jose::{
    sign_compact, PublicJwk, RingSigner, Signer, Validation, VerificationError,
};
pub use agent_oauth::registration::{
    choose_auth_method, client_id_metadata_document_supported, register,
    validate_client_id_metadata_document, ClientMetadata, Registration, RegistrationKind,
};
#[cfg(feature = "redis")]
pub use agent_oauth::store::RedisStore;
pub use agent_oauth::store::{
    async_trait, conformance, FileStore, MemoryStore, SealKey, StoreLock, StoreOutcome,
    StoredGrant, TokenStore, Versioned,
};
pub use agent_oauth::testkit::{TestClient, TestClientAuth, TestServer, TestServerConfig};
#[cfg(feature = "mtls")]
pub use agent_oauth::transport::{cnf_x5t_s256, KeyFormat};
pub use agent_oauth::transport::{
    BodyStream, HttpRequest, HttpResponse, RetryPolicy, SseEvent, SseParser, SseStream,
    StreamingResponse, TransportErrorKind,
};
#[cfg(feature = "middleware")]
pub use agent_oauth::AgentMiddleware;
pub use agent_oauth::{
    dangerous, AccessToken, Agent, AgentBuilder, AgentEvent, AssertionKey, AuthorizationPrompt,
    AuthorizationReason, AuthorizationServer, ClientAuth, ConsentRequest, DpopKey, DpopMode, Error,
    HttpTransport, OAuthClient, OAuthErrorCode, RefreshToken, RefreshingSource, ResourceMetadata,
    Result, Scope, SecretString, ServerMetadata, TokenParams, TokenSet, TokenType, TransportConfig,
};
#[cfg(feature = "mtls")]
pub use agent_oauth::{ClientIdentity, TrustRoots};
