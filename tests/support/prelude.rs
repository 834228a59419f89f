//! Everything the integration tests use from `agent_oauth`, in one place.
//!
//! Tests import the crate only through this module (`use crate::support::prelude::...`), so a
//! change of the public paths touches this file alone.

pub use agent_oauth::grant::{
    DeviceAuthorization, LoopbackRedirect, PendingAuthorization, TokenExchangeRequest,
};
pub use agent_oauth::testkit::{TestClient, TestClientAuth, TestServer, TestServerConfig};
#[cfg(feature = "middleware")]
pub use agent_oauth::AgentMiddleware;
pub use agent_oauth::{
    ath, challenges_from_headers, dangerous, delegation_chain, fetch_resource_metadata,
    parse_challenges, resource_matches, resource_metadata_from_challenges, resource_metadata_url,
    AccessToken, Agent, AgentBuilder, AgentEvent, AssertionKey, AuthorizationServer, CacheConfig,
    Challenge, ChallengeError, ChallengeErrorKind, ClientAuth, DpopKey, DpopMode, Endpoint, Error,
    FileStore, HttpRequest, HttpResponse, HttpTransport, MemoryStore, MetadataPolicy, NonceCache,
    OAuthClient, OAuthClientBuilder, OAuthErrorCode, PublicJwk, RefreshToken, RefreshingSource,
    ResourceMetadata, Result, RetryPolicy, Scope, ServerMetadata, StoreLock, StoreOutcome,
    StoredGrant, TokenCache, TokenHandle, TokenKey, TokenParams, TokenSet, TokenSource, TokenStore,
    TokenType, TransportConfig, TransportErrorKind, Versioned,
};
#[cfg(feature = "mtls")]
pub use agent_oauth::{cnf_x5t_s256, ClientIdentity, KeyFormat, TrustRoots};
