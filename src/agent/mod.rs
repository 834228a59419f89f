//! [`Agent`]: protected API calls end to end.
//!
//! An agent owns a transport, one authorization server and client registration, a token cache,
//! an optional DPoP key and token store. [`Agent::get`] (and friends) picks or obtains the token
//! for the URL's resource, attaches `Authorization` and `DPoP`, handles the resource's nonce
//! challenge, refreshes once on `invalid_token`, and — for a URL with no known resource —
//! follows the 401's RFC 9728 `resource_metadata` to learn which resource and authorization
//! server it belongs to (the MCP authorization flow).

mod authority;
mod authorize;
mod builder;
mod core;
mod fast;
mod login;
mod machine;
mod principal;
mod request;
mod resources;

pub(crate) use authority::Authority;
use authority::Registrar;
use authorize::Authorizer;
pub use authorize::{AuthorizationPrompt, AuthorizationReason};
pub use builder::{AgentBuilder, DpopMode};
pub use request::AgentRequest;
pub(crate) use resources::parse_resource;

use std::fmt;
use std::sync::{Arc, RwLock};

use url::Url;

use crate::cache::{TokenCache, TokenHandle};
use crate::discovery::MetadataPolicy;
use crate::event::EventHook;
use crate::store::TokenStore;
use crate::token::Scope;
use crate::transport::HttpTransport;

/// A resource the agent may send tokens to, and the authorization server whose tokens it
/// takes (a token from one server is never sent to a resource that names another).
#[derive(Debug, Clone)]
pub(crate) struct ResourceInfo {
    pub(crate) resource: Url,
    pub(crate) scope: Option<Scope>,
    pub(crate) authority: Arc<Authority>,
    /// The cache handle for this resource's tokens with its scope, made on first use: a call
    /// that asks for no more scope reaches its token without building a key.
    pub(crate) handle: std::sync::OnceLock<TokenHandle>,
    /// The nonce store key of the resource's origin (the origin of every URL it covers), for
    /// the calls' [`NonceSlot`](crate::dpop::NonceSlot)s: built once, not once a call.
    pub(crate) nonce_key: Box<str>,
}

impl ResourceInfo {
    pub(crate) fn new(resource: Url, scope: Option<Scope>, authority: Arc<Authority>) -> Arc<Self> {
        let nonce_key =
            crate::dpop::NonceSlot::store_key(&resource, crate::dpop::NonceRole::Resource).into();
        Arc::new(ResourceInfo {
            nonce_key,
            resource,
            scope,
            authority,
            handle: std::sync::OnceLock::new(),
        })
    }
}

struct AgentInner {
    transport: HttpTransport,
    cache: TokenCache,
    store: Arc<dyn TokenStore>,
    scope: Option<Scope>,
    /// The configured authorization server, if any.
    home: Option<Arc<Authority>>,
    /// How the agent registers at, and which of, the authorization servers resources name.
    registrar: Registrar,
    /// Authorization servers learnt from resources, by issuer, created on first use.
    learnt: tokio::sync::Mutex<Vec<Arc<Authority>>>,
    /// Serializes first calls to unknown URLs, so concurrent ones share one discovery.
    discovery: tokio::sync::Mutex<()>,
    resources: RwLock<Vec<Arc<ResourceInfo>>>,
    /// `access_token`'s handles by the resource string the caller passed (`""`: none), so a
    /// hit builds no URL and no key. Valid for the `handles_epoch` they were kept in.
    fast: fast::FastHandles,
    /// Moved whenever resources change: the kept handles (the agent's and the principals')
    /// no longer answer.
    handles_epoch: std::sync::atomic::AtomicU64,
    metadata_policy: MetadataPolicy,
    discover_resources: bool,
    /// Step-ups (403 `insufficient_scope` answered with more scope) allowed per resource in a
    /// row; 0 returns the 403.
    max_step_ups: u32,
    step_ups: std::sync::Mutex<Vec<(Url, u32)>>,
    authorizer: Option<Authorizer>,
    /// The grant used when no user is asked.
    machine: machine::MachineGrant,
    events: Option<EventHook>,
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
    /// Who this handle acts for, when not the agent itself (see [`Agent::for_principal`]).
    acting: Option<Arc<principal::Acting>>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("home", &self.inner.home.as_ref().map(|a| &a.client))
            .field("principal", self.principal())
            .field("scope", &self.inner.scope.as_ref().map(ToString::to_string))
            .finish_non_exhaustive()
    }
}
