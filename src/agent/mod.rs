//! [`Agent`]: protected API calls end to end.
//!
//! An agent owns a transport, one authorization server and client registration, a token cache,
//! an optional DPoP key and token store. [`Agent::get`] (and friends) picks or obtains the token
//! for the URL's resource, attaches `Authorization` and `DPoP`, handles the resource's nonce
//! challenge, refreshes once on `invalid_token`, and — for a URL with no known resource —
//! follows the 401's RFC 9728 `resource_metadata` to learn which resource and authorization
//! server it belongs to (the MCP authorization flow).

mod builder;
mod core;
mod login;
mod request;
mod resources;

pub(crate) use builder::parse_resource;
pub use builder::{AgentBuilder, DpopMode};
pub use request::AgentRequest;

use std::fmt;
use std::sync::{Arc, RwLock};

use url::Url;

use crate::cache::TokenCache;
use crate::discovery::MetadataPolicy;
use crate::event::EventHook;
use crate::grant::OAuthClient;
use crate::session::Grant;
use crate::store::TokenStore;
use crate::token::Binding;
use crate::token::Scope;
use crate::transport::HttpTransport;

/// A resource the agent may send tokens to.
#[derive(Debug, Clone)]
pub(crate) struct ResourceInfo {
    pub(crate) resource: Url,
    pub(crate) scope: Option<Scope>,
}

struct AgentInner {
    transport: HttpTransport,
    client: OAuthClient,
    cache: TokenCache,
    /// Kept for a certificate rotation, which opens the grant again under the new binding.
    #[cfg_attr(not(feature = "mtls"), allow(dead_code))]
    store: Arc<dyn TokenStore>,
    scope: Option<Scope>,
    resources: RwLock<Vec<ResourceInfo>>,
    metadata_policy: MetadataPolicy,
    discover_resources: bool,
    allow_scope_upgrade: bool,
    events: Option<EventHook>,
    /// The user grant (after a login, or found in the store): the one home of its refresh
    /// token.
    grant: Grant,
    binding: Binding,
    #[cfg(feature = "mtls")]
    identity: Option<crate::transport::tls::ClientIdentity>,
    #[cfg(feature = "mtls")]
    roots: Option<crate::transport::tls::TrustRoots>,
}

/// An OAuth-enabled HTTP client for one agent. Cheap to clone; `Send + Sync`.
///
/// ```no_run
/// # async fn run() -> agent_oauth::Result<()> {
/// use agent_oauth::{Agent, ClientAuth};
/// let agent = Agent::builder()
///     .issuer("https://as.example.com")
///     .client_id("billing-agent")
///     .client_auth(ClientAuth::client_secret("s3cret"))
///     .scope("invoices:read")
///     .resource("https://api.example.com/invoices")
///     .build()
///     .await?;
/// let resp = agent.get("https://api.example.com/invoices/42").send().await?;
/// println!("{}", resp.status());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Agent {
    inner: Arc<AgentInner>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("client", &self.inner.client)
            .field("scope", &self.inner.scope.as_ref().map(ToString::to_string))
            .field("binding", &self.inner.binding)
            .finish_non_exhaustive()
    }
}
