//! [`AgentBuilder`]: configuration, checked and resolved (discovery, DPoP mode, stores) in
//! `build()`.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use url::Url;

use crate::cache::{CacheConfig, TokenCache};
use crate::client_auth::ClientAuth;
use crate::discovery::{
    fetch_resource_metadata, AuthorizationServer, MetadataPatch, MetadataPolicy, ResourceMetadata,
    ServerMetadata,
};
use crate::dpop::{DpopKey, NonceCache};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::OAuthClient;
use crate::session::{Grant, GrantKey};
use crate::store::{MemoryStore, TokenStore};
use crate::token::Binding;
use crate::token::Scope;
use crate::transport::{HttpTransport, TransportConfig};

use super::{Agent, AgentInner, ResourceInfo};

/// Whether tokens are DPoP-bound, when no key is given with [`AgentBuilder::dpop`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopMode {
    /// Bind with a generated key when the server lists ES256 in
    /// `dpop_signing_alg_values_supported` (default). With a
    /// [client certificate](AgentBuilder::client_identity), tokens are bound to the certificate
    /// alone: servers refuse a request carrying two proof-of-possession mechanisms (oidc-provider:
    /// "multiple proof-of-possession mechanisms are not allowed"). Give a key with
    /// [`AgentBuilder::dpop`] to ask for both.
    #[default]
    Auto,
    /// Never use DPoP.
    Off,
}

/// What the builder was told about DPoP: a mode, or a key (the last setter called wins).
#[derive(Debug, Clone)]
enum DpopChoice {
    Mode(DpopMode),
    Key(DpopKey),
}

/// Builds an [`Agent`]. Setters never fail; [`build`](Self::build) reports the first problem.
#[must_use]
pub struct AgentBuilder {
    issuer: Option<String>,
    protected_resource: Option<String>,
    client_id: Option<String>,
    auth: ClientAuth,
    dpop: DpopChoice,
    scope: Option<Scope>,
    resources: Vec<String>,
    store: Option<Arc<dyn TokenStore>>,
    transport: TransportConfig,
    cache: CacheConfig,
    metadata_policy: MetadataPolicy,
    trusted_issuers: Vec<String>,
    discover_resources: bool,
    allow_scope_upgrade: bool,
    accept_bearer: bool,
    default_expires_in: Option<Duration>,
    events: Option<EventHook>,
    error: Option<Error>,
    nonces: Option<Arc<NonceCache>>,
    metadata_patch: Option<MetadataPatch>,
    #[cfg(feature = "mtls")]
    identity: Option<crate::transport::tls::ClientIdentity>,
    #[cfg(feature = "mtls")]
    roots: Option<crate::transport::tls::TrustRoots>,
}

impl fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl Default for AgentBuilder {
    fn default() -> Self {
        AgentBuilder {
            issuer: None,
            protected_resource: None,
            client_id: None,
            auth: ClientAuth::none(),
            dpop: DpopChoice::Mode(DpopMode::Auto),
            scope: None,
            resources: Vec::new(),
            store: None,
            transport: TransportConfig::default(),
            cache: CacheConfig::default(),
            metadata_policy: MetadataPolicy::SameOrigin,
            trusted_issuers: Vec::new(),
            discover_resources: true,
            allow_scope_upgrade: false,
            accept_bearer: false,
            default_expires_in: Some(Duration::from_secs(300)),
            events: None,
            error: None,
            nonces: None,
            metadata_patch: None,
            #[cfg(feature = "mtls")]
            identity: None,
            #[cfg(feature = "mtls")]
            roots: None,
        }
    }
}

impl AgentBuilder {
    /// The authorization server's issuer identifier (RFC 8414 / OpenID discovery, checked).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Configure from a protected resource alone: its RFC 9728 metadata names the
    /// authorization server (which must also be [trusted](Self::trust_issuer) when an issuer is
    /// not set explicitly). The resource is added to the agent's resources.
    pub fn protected_resource(mut self, resource: impl Into<String>) -> Self {
        self.protected_resource = Some(resource.into());
        self
    }

    /// Allow this issuer when it is learnt from resource metadata.
    pub fn trust_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.trusted_issuers.push(issuer.into());
        self
    }

    /// The registered client identifier.
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// How the client authenticates (default: public client).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Bind every token to this DPoP key.
    pub fn dpop(mut self, key: DpopKey) -> Self {
        self.dpop = DpopChoice::Key(key);
        self
    }

    /// Choose the DPoP mode (default [`DpopMode::Auto`]).
    pub fn dpop_mode(mut self, mode: DpopMode) -> Self {
        self.dpop = DpopChoice::Mode(mode);
        self
    }

    /// Scope requested for every token (space-separated).
    pub fn scope(mut self, scope: impl Into<Scope>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// A resource (RFC 8707) the agent calls. Tokens are requested for it and only ever sent to
    /// URLs it covers (same origin, path under it).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Durable token store (default: in memory).
    pub fn token_store(mut self, store: Arc<dyn TokenStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Transport limits and timeouts.
    pub fn transport_config(mut self, config: TransportConfig) -> Self {
        self.transport = config;
        self
    }

    /// Cache refresh timing and size.
    pub fn cache_config(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// Which `resource_metadata` URLs from 401 challenges may be fetched (default same origin).
    pub fn metadata_policy(mut self, policy: MetadataPolicy) -> Self {
        self.metadata_policy = policy;
        self
    }

    /// Follow 401 challenges on unknown URLs to RFC 9728 metadata (default on).
    pub fn discover_resources(mut self, on: bool) -> Self {
        self.discover_resources = on;
        self
    }

    /// On 403 `insufficient_scope` with a `scope`, ask for that scope and retry once (default
    /// off: the error is returned).
    pub fn allow_scope_upgrade(mut self, on: bool) -> Self {
        self.allow_scope_upgrade = on;
        self
    }

    /// Accept `Bearer` tokens when DPoP was requested.
    ///
    /// # Security
    /// Such tokens are not sender-constrained.
    pub fn accept_bearer_with_dpop(mut self, on: bool) -> Self {
        self.accept_bearer = on;
        self
    }

    /// Lifetime assumed when the server omits `expires_in` (default 300 s).
    pub fn default_expires_in(mut self, lifetime: Duration) -> Self {
        self.default_expires_in = Some(lifetime);
        self
    }

    /// Receive audit events.
    pub fn on_event(mut self, hook: impl Fn(&AgentEvent) + Send + Sync + 'static) -> Self {
        self.events = Some(EventHook::new(hook));
        self
    }

    /// Share this DPoP nonce cache (default: one of the agent's own). Agents calling the same
    /// servers then reuse each other's nonces instead of each being rejected once per origin.
    pub fn nonce_cache(mut self, nonces: Arc<NonceCache>) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// Adjust the authorization server's metadata after each discovery, before it is used:
    /// endpoint overrides for servers whose metadata is incomplete, such as an
    /// `mtls_endpoint_aliases` entry the server does not advertise.
    ///
    /// ```
    /// # use agent_oauth::Agent;
    /// let builder = Agent::builder().patch_metadata(|md| {
    ///     md.mtls_endpoint_aliases
    ///         .get_or_insert_with(Default::default)
    ///         .token_endpoint = Some("https://mtls.as.example.com/token".into());
    /// });
    /// ```
    pub fn patch_metadata(
        mut self,
        patch: impl Fn(&mut ServerMetadata) + Send + Sync + 'static,
    ) -> Self {
        self.metadata_patch = Some(Arc::new(patch));
        self
    }

    #[cfg(feature = "mtls")]
    fn has_identity(&self) -> bool {
        self.identity.is_some()
    }

    #[cfg(not(feature = "mtls"))]
    fn has_identity(&self) -> bool {
        false
    }

    /// Present this client certificate on every connection (RFC 8705); token requests use the
    /// server's `mtls_endpoint_aliases`, or the advertised endpoint when it is `https` (see
    /// [`patch_metadata`](Self::patch_metadata) to name the alias yourself). With
    /// [`DpopMode::Auto`], tokens are bound to the certificate only.
    #[cfg(feature = "mtls")]
    pub fn client_identity(mut self, identity: crate::transport::tls::ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Extra trusted roots for private PKI.
    #[cfg(feature = "mtls")]
    pub fn trust_roots(mut self, roots: crate::transport::tls::TrustRoots) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Allow plain-http URLs off loopback. Reached through
    /// [`dangerous::agent_allow_insecure_http`](crate::dangerous::agent_allow_insecure_http).
    pub(crate) fn allow_insecure_http(mut self) -> Self {
        self.transport.set_allow_insecure_http(true);
        self
    }

    /// Discover the server and build the agent.
    ///
    /// # Errors
    /// The first configuration error of a setter; [`Error::Config`] when no issuer or client
    /// id is known; discovery errors (issuer mismatch, untrusted issuer, transport).
    pub async fn build(self) -> Result<Agent> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let client_id = self
            .client_id
            .clone()
            .ok_or_else(|| Error::config("client_id is required"))?;
        #[cfg(feature = "mtls")]
        let transport = match (&self.identity, &self.roots) {
            (None, None) => HttpTransport::with_config(self.transport.clone())?,
            (id, roots) => HttpTransport::with_tls(
                self.transport.clone(),
                id.as_ref(),
                &roots.clone().unwrap_or_default(),
            )?,
        };
        #[cfg(not(feature = "mtls"))]
        let transport = HttpTransport::with_config(self.transport.clone())?;
        if let Some(hook) = &self.events {
            transport.set_event_hook(hook.clone());
        }

        let mut resources = Vec::new();
        for r in &self.resources {
            resources.push(ResourceInfo {
                resource: parse_resource(r)?,
                scope: None,
            });
        }

        // From a protected resource alone: its metadata names the authorization server.
        let mut issuer = self.issuer.clone();
        if let Some(pr) = &self.protected_resource {
            let url = parse_resource(pr)?;
            let md = fetch_resource_metadata(&transport, &url, None).await?;
            let chosen = choose_issuer(&md, issuer.as_deref(), &self.trusted_issuers)?;
            issuer = Some(chosen);
            resources.push(ResourceInfo {
                resource: parse_resource(&md.resource)?,
                scope: None,
            });
        }
        let issuer = issuer.ok_or_else(|| {
            Error::config("an issuer (or a protected resource naming one) is required")
        })?;
        let mut server = AuthorizationServer::new(&issuer, transport.clone())?;
        if let Some(patch) = self.metadata_patch.clone() {
            server = server.with_metadata_patch(patch);
        }
        let md = server.metadata().await?;

        let dpop = match self.dpop {
            DpopChoice::Key(k) => Some(k),
            DpopChoice::Mode(DpopMode::Off) => None,
            DpopChoice::Mode(DpopMode::Auto) if self.has_identity() => None,
            DpopChoice::Mode(DpopMode::Auto) => {
                md.supports_dpop_alg("ES256").then(DpopKey::generate)
            }
        };
        let mut binding = match &dpop {
            Some(k) => Binding::dpop(k.thumbprint()),
            None => Binding::bearer(),
        };
        #[cfg(feature = "mtls")]
        if let Some(id) = &self.identity {
            binding = binding.with_mtls(id.thumbprint());
        }
        #[cfg(not(feature = "mtls"))]
        let _ = &mut binding;

        let mut cb = OAuthClient::builder(server, &client_id)
            .auth(self.auth)
            .accept_bearer_with_dpop(self.accept_bearer);
        if let Some(d) = self.default_expires_in {
            cb = cb.default_expires_in(d);
        }
        if let Some(k) = dpop {
            cb = cb.dpop(k);
        }
        if let Some(n) = self.nonces {
            cb = cb.nonce_cache(n);
        }
        #[cfg(feature = "mtls")]
        if self.identity.is_some() {
            cb = cb.mtls_endpoints(true);
        }
        let client = cb.build();
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn TokenStore>);
        // A grant persisted by an earlier run (refresh token) is picked up.
        let grant = Grant::open(
            client.clone(),
            store.clone(),
            GrantKey::new(&issuer, &client_id, binding.clone()),
            self.events.clone(),
        )
        .await?;
        Ok(Agent {
            inner: Arc::new(AgentInner {
                transport,
                client,
                cache: TokenCache::new(self.cache),
                store,
                scope: self.scope,
                resources: RwLock::new(resources),
                metadata_policy: self.metadata_policy,
                discover_resources: self.discover_resources,
                allow_scope_upgrade: self.allow_scope_upgrade,
                events: self.events,
                grant,
                binding,
                #[cfg(feature = "mtls")]
                identity: self.identity,
                #[cfg(feature = "mtls")]
                roots: self.roots,
            }),
        })
    }
}

pub(crate) fn parse_resource(r: &str) -> Result<Url> {
    let url = Url::parse(r)
        .map_err(|_| Error::config(format!("resource `{r}` is not an absolute URL")))?;
    if url.fragment().is_some() {
        return Err(Error::config(
            "a resource must not have a fragment (RFC 8707 §2)",
        ));
    }
    Ok(url)
}

/// Pick the authorization server for a resource: the configured issuer if the metadata lists
/// it, else the first listed one that is trusted.
pub(super) fn choose_issuer(
    md: &ResourceMetadata,
    configured: Option<&str>,
    trusted: &[String],
) -> Result<String> {
    let listed = md.authorization_servers();
    if let Some(iss) = configured {
        return if listed.iter().any(|a| a == iss) {
            Ok(iss.to_owned())
        } else {
            Err(Error::Discovery(format!(
                "resource `{}` does not list the configured issuer `{iss}`",
                crate::error::sanitize(&md.resource, 200)
            )))
        };
    }
    listed
        .iter()
        .find(|a| trusted.iter().any(|t| t == *a))
        .cloned()
        .ok_or_else(|| {
            Error::Discovery(format!(
                "none of the authorization servers of `{}` is trusted",
                crate::error::sanitize(&md.resource, 200)
            ))
        })
}
