//! [`Agent`]: protected API calls end to end.
//!
//! An agent owns a transport, one authorization server and client registration, a token cache,
//! an optional DPoP key and token store. [`Agent::get`] (and friends) picks or obtains the token
//! for the URL's resource, attaches `Authorization` and `DPoP`, handles the resource's nonce
//! challenge, refreshes once on `invalid_token`, and — for a URL with no known resource —
//! follows the 401's RFC 9728 `resource_metadata` to learn which resource and authorization
//! server it belongs to (the MCP authorization flow).

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use url::Url;

use crate::cache::{
    Binding, CacheConfig, MemoryStore, RefreshingSource, TokenCache, TokenHandle, TokenKey,
    TokenRef, TokenSource, TokenStore,
};
use crate::client_auth::ClientAuth;
use crate::discovery::{
    challenges_from_headers, fetch_resource_metadata, resource_matches, AuthorizationServer,
    Challenge, MetadataPatch, MetadataPolicy, ResourceMetadata, ServerMetadata,
};
use crate::dpop::{ath, DpopKey, NonceCache};
use crate::error::{Error, OAuthError, OAuthErrorCode, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::{DeviceAuthorization, OAuthClient, PendingAuthorization, TokenParams};
use crate::token::{Scope, TokenSet, TokenType};
use crate::transport::{
    oauth_error, HttpRequest, HttpResponse, HttpTransport, RetryPolicy, TransportConfig,
};

/// Whether tokens are DPoP-bound.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum DpopMode {
    /// Bind with a generated key when the server lists ES256 in
    /// `dpop_signing_alg_values_supported` (default). With a
    /// [client certificate](AgentBuilder::client_identity), tokens are bound to the certificate
    /// alone: servers refuse a request carrying two proof-of-possession mechanisms (oidc-provider:
    /// "multiple proof-of-possession mechanisms are not allowed"). Use [`DpopMode::Key`] to ask
    /// for both.
    #[default]
    Auto,
    /// Always bind to this key.
    Key(DpopKey),
    /// Never use DPoP.
    Off,
}

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
    store: Arc<dyn TokenStore>,
    scope: Option<Scope>,
    resources: RwLock<Vec<ResourceInfo>>,
    metadata_policy: MetadataPolicy,
    discover_resources: bool,
    allow_scope_upgrade: bool,
    events: Option<EventHook>,
    grant_key: String,
    /// Tokens of the grant the store has not taken yet, and its dead refresh tokens.
    grant_memory: Arc<crate::cache::GrantMemory>,
    has_grant: std::sync::atomic::AtomicBool,
    binding: Binding,
    #[cfg(feature = "mtls")]
    identity: Option<crate::mtls::ClientIdentity>,
    #[cfg(feature = "mtls")]
    roots: Option<crate::mtls::TrustRoots>,
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

/// Builds an [`Agent`]. Setters never fail; [`build`](Self::build) reports the first problem.
#[must_use]
pub struct AgentBuilder {
    issuer: Option<String>,
    protected_resource: Option<String>,
    client_id: Option<String>,
    auth: ClientAuth,
    dpop: DpopMode,
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
    identity: Option<crate::mtls::ClientIdentity>,
    #[cfg(feature = "mtls")]
    roots: Option<crate::mtls::TrustRoots>,
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
            auth: ClientAuth::None,
            dpop: DpopMode::Auto,
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
        self.dpop = DpopMode::Key(key);
        self
    }

    /// Choose the DPoP mode (default [`DpopMode::Auto`]).
    pub fn dpop_mode(mut self, mode: DpopMode) -> Self {
        self.dpop = mode;
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
    pub fn client_identity(mut self, identity: crate::mtls::ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Extra trusted roots for private PKI.
    #[cfg(feature = "mtls")]
    pub fn trust_roots(mut self, roots: crate::mtls::TrustRoots) -> Self {
        self.roots = Some(roots);
        self
    }

    /// Allow plain-http URLs off loopback. Reached through
    /// [`dangerous::agent_allow_insecure_http`](crate::dangerous::agent_allow_insecure_http).
    pub(crate) fn allow_insecure_http(mut self) -> Self {
        crate::dangerous::allow_insecure_http(&mut self.transport);
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
            DpopMode::Key(k) => Some(k),
            DpopMode::Off => None,
            DpopMode::Auto if self.has_identity() => None,
            DpopMode::Auto => md.supports_dpop_alg("ES256").then(DpopKey::generate),
        };
        let mut binding = match &dpop {
            Some(k) => Binding::Dpop(k.thumbprint().to_owned()),
            None => Binding::Bearer,
        };
        #[cfg(feature = "mtls")]
        if let Some(id) = &self.identity {
            binding = match binding {
                Binding::Dpop(jkt) => Binding::DpopMtls {
                    jkt,
                    x5t: id.thumbprint().to_owned(),
                },
                _ => Binding::Mtls(id.thumbprint().to_owned()),
            };
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
        let grant_key = TokenKey::new(&issuer, &client_id)
            .with_binding(binding.clone())
            .with_subject("grant")
            .store_key();
        // A grant persisted by an earlier run (refresh token) is picked up.
        let has_grant = {
            let (s, k) = (store.clone(), grant_key.clone());
            tokio::task::spawn_blocking(move || s.load(&k))
                .await
                .map_err(|e| Error::Store(e.to_string()))??
                .is_some_and(|v| v.value.refresh_token.is_some())
        };
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
                grant_key,
                grant_memory: Arc::default(),
                has_grant: std::sync::atomic::AtomicBool::new(has_grant),
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
fn choose_issuer(
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

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

impl Agent {
    /// Start configuring an agent.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// The OAuth client (grants, revocation, introspection).
    pub fn client(&self) -> &OAuthClient {
        &self.inner.client
    }

    /// The transport.
    pub fn transport(&self) -> &HttpTransport {
        &self.inner.transport
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        self.inner.client.server().issuer()
    }

    /// The DPoP key, if tokens are DPoP-bound.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.client.dpop_key()
    }

    /// The client certificate presented on every connection, if any.
    #[cfg(feature = "mtls")]
    pub fn client_identity(&self) -> Option<&crate::mtls::ClientIdentity> {
        self.inner.identity.as_ref()
    }

    /// The same agent presenting a new client certificate (rotation, RFC 8705).
    ///
    /// A new connection pool is built for the new identity, and the new agent starts with an
    /// empty token cache: tokens bound to the old certificate (`cnf.x5t#S256`) are never sent
    /// over the new one. Its cache and grant are keyed by the new thumbprint, so a user grant
    /// bound to the old certificate is not carried over. Drop the old agent to drop its tokens.
    ///
    /// # Errors
    /// [`Error::Config`] when the TLS configuration cannot be built; discovery errors.
    #[cfg(feature = "mtls")]
    pub async fn with_client_identity(
        &self,
        identity: crate::mtls::ClientIdentity,
    ) -> Result<Agent> {
        let old = &self.inner;
        let transport = HttpTransport::with_tls(
            old.transport.config().clone(),
            Some(&identity),
            &old.roots.clone().unwrap_or_default(),
        )?;
        if let Some(hook) = &old.events {
            transport.set_event_hook(hook.clone());
        }
        let md = old.client.server().metadata().await?;
        let mut server = AuthorizationServer::from_metadata((*md).clone(), transport.clone())?;
        if let Some(patch) = old.client.server().metadata_patch() {
            server = server.with_metadata_patch(patch);
        }
        let client = old.client.with_server(server);
        let x5t = identity.thumbprint().to_owned();
        let binding = match &old.binding {
            Binding::Dpop(jkt) | Binding::DpopMtls { jkt, .. } => Binding::DpopMtls {
                jkt: jkt.clone(),
                x5t,
            },
            _ => Binding::Mtls(x5t),
        };
        let grant_key = TokenKey::new(self.issuer(), client.client_id())
            .with_binding(binding.clone())
            .with_subject("grant")
            .store_key();
        let has_grant = {
            let (s, k) = (old.store.clone(), grant_key.clone());
            tokio::task::spawn_blocking(move || s.load(&k))
                .await
                .map_err(|e| Error::Store(e.to_string()))??
                .is_some_and(|v| v.value.refresh_token.is_some())
        };
        let resources = self.read_resources().clone();
        Ok(Agent {
            inner: Arc::new(AgentInner {
                transport,
                client,
                cache: TokenCache::new(old.cache.config().clone()),
                store: old.store.clone(),
                scope: old.scope.clone(),
                resources: RwLock::new(resources),
                metadata_policy: old.metadata_policy.clone(),
                discover_resources: old.discover_resources,
                allow_scope_upgrade: old.allow_scope_upgrade,
                events: old.events.clone(),
                grant_key,
                grant_memory: Arc::default(),
                has_grant: std::sync::atomic::AtomicBool::new(has_grant),
                binding,
                identity: Some(identity),
                roots: old.roots.clone(),
            }),
        })
    }

    /// The token cache.
    pub fn cache(&self) -> &TokenCache {
        &self.inner.cache
    }

    /// The nonce cache shared by token and resource requests.
    pub fn nonces(&self) -> &Arc<NonceCache> {
        self.inner.client.nonces()
    }

    /// The resources the agent may send tokens to (configured and discovered).
    pub fn resources(&self) -> Vec<String> {
        self.read_resources()
            .iter()
            .map(|r| r.resource.to_string())
            .collect()
    }

    fn read_resources(&self) -> std::sync::RwLockReadGuard<'_, Vec<ResourceInfo>> {
        match self.inner.resources.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    #[cfg(feature = "middleware")]
    pub(crate) fn discovers_resources(&self) -> bool {
        self.inner.discover_resources
    }

    /// The resource (and scope) a URL belongs to, if known.
    pub(crate) fn resource_for(&self, url: &Url) -> Option<ResourceInfo> {
        self.read_resources()
            .iter()
            .filter(|r| resource_matches(&r.resource, url))
            // the most specific resource wins
            .max_by_key(|r| r.resource.path().len())
            .cloned()
    }

    fn add_resource(&self, info: ResourceInfo) {
        let mut w = match self.inner.resources.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !w.iter().any(|r| r.resource == info.resource) {
            w.push(info);
        }
    }

    pub(crate) fn params_for(&self, resource: Option<&Url>, scope: Option<&Scope>) -> TokenParams {
        let mut p = TokenParams::new();
        if let Some(s) = scope.or(self.inner.scope.as_ref()) {
            p = p.scope(s.clone());
        }
        if let Some(r) = resource {
            p = p.resource(r.as_str());
        }
        p
    }

    fn key_for(&self, params: &TokenParams) -> TokenKey {
        let mut k = TokenKey::new(self.issuer(), self.inner.client.client_id())
            .with_scope(params.scope.clone().unwrap_or_default())
            .with_binding(self.inner.binding.clone());
        for r in &params.resources {
            k = k.with_resource(r.clone());
        }
        k
    }

    /// The cache handle for tokens with `params`: refreshed from the agent's grant when it has
    /// one (after a login), else obtained with client credentials.
    pub(crate) fn handle(&self, params: TokenParams) -> TokenHandle {
        let key = self.key_for(&params);
        let this = self.clone();
        self.inner.cache.handle(&key, move || {
            Arc::new(AgentSource {
                agent: Arc::downgrade(&this.inner),
                params,
            }) as Arc<dyn TokenSource>
        })
    }

    /// A token for `resource` (or for the agent's default scope without a resource).
    ///
    /// # Errors
    /// Token endpoint and discovery errors.
    pub async fn access_token(&self, resource: Option<&str>) -> Result<TokenRef> {
        let r = resource.map(parse_resource).transpose()?;
        let handle = self.handle(self.params_for(r.as_ref(), None));
        within_deadline(&self.inner.transport, handle.get()).await
    }

    /// Drop the cached tokens for `resource` (`None`: the agent's tokens without a resource),
    /// of every scope, after the API rejected one: the next call obtains a new token, refreshing
    /// the grant when there is one. Returns whether a cached token was dropped. An unknown
    /// resource changes nothing (no cache entry is created).
    ///
    /// # Errors
    /// [`Error::Config`] when `resource` is not an absolute URL.
    pub fn invalidate_token(&self, resource: Option<&str>) -> Result<bool> {
        let r = resource.map(parse_resource).transpose()?;
        let base = self
            .key_for(&self.params_for(r.as_ref(), None))
            .with_scope(Scope::empty());
        let handles = self
            .inner
            .cache
            .handles_matching(|k| k.clone().with_scope(Scope::empty()) == base);
        let mut dropped = false;
        for h in &handles {
            dropped |= h.holds_usable_token();
            h.invalidate();
        }
        Ok(dropped)
    }

    /// Obtain a new token for `resource` now (refreshing the grant when there is one), replace
    /// the cached one with it and return it.
    ///
    /// # Errors
    /// Token endpoint and store errors.
    pub async fn force_refresh(&self, resource: Option<&str>) -> Result<TokenRef> {
        let r = resource.map(parse_resource).transpose()?;
        self.handle(self.params_for(r.as_ref(), None))
            .refresh()
            .await
    }

    /// Start a protected request.
    pub fn request(&self, method: Method, url: impl AsRef<str>) -> AgentRequest {
        AgentRequest {
            agent: self.clone(),
            parts: RequestParts::new(method, url.as_ref()),
        }
    }

    /// Log in with the device flow (RFC 8628): `show` receives the code to display; the grant's
    /// refresh token is stored and later tokens are refreshed from it.
    ///
    /// # Errors
    /// Device flow errors; [`Error::Store`].
    pub async fn login_device(&self, show: impl FnOnce(&DeviceAuthorization)) -> Result<TokenSet> {
        let params = self.login_params();
        let tokens = self.inner.client.device_flow(&params, show).await?;
        self.adopt_grant(tokens).await
    }

    /// Start an authorization code flow (PKCE, `state`, `dpop_jkt`); open the returned URL, then
    /// pass the callback to [`complete_authorization`](Self::complete_authorization).
    ///
    /// # Errors
    /// Discovery errors.
    pub async fn authorization_url(&self, redirect_uri: &str) -> Result<PendingAuthorization> {
        let params = self.login_params();
        within_deadline(
            &self.inner.transport,
            self.inner.client.authorization_url(redirect_uri, &params),
        )
        .await
    }

    /// Parameters of a user login: the agent's scope and every known resource, so that tokens
    /// for each resource can later be refreshed from the one grant (RFC 8707 §2.2).
    fn login_params(&self) -> TokenParams {
        let mut params = self.params_for(None, None);
        for r in self.resources() {
            params = params.resource(r);
        }
        params
    }

    /// Finish an authorization code flow and keep its grant.
    ///
    /// # Errors
    /// Callback checks, token endpoint and store errors.
    pub async fn complete_authorization(
        &self,
        pending: &PendingAuthorization,
        callback: &Url,
    ) -> Result<TokenSet> {
        let tokens = within_deadline(
            &self.inner.transport,
            self.inner.client.exchange_code(pending, callback),
        )
        .await?;
        // Not under the deadline: the grant is kept whatever time it takes to store it.
        self.adopt_grant(tokens).await
    }

    /// Keep a grant obtained elsewhere (its refresh token is stored; tokens for resources are
    /// refreshed from it from now on).
    ///
    /// # Errors
    /// [`Error::Config`] without a refresh token; [`Error::Store`].
    pub async fn adopt_grant(&self, tokens: TokenSet) -> Result<TokenSet> {
        if tokens.refresh_token.is_none() {
            return Err(Error::config("the grant has no refresh token to keep"));
        }
        self.grant_source(self.login_params()).seed(&tokens).await?;
        self.inner
            .has_grant
            .store(true, std::sync::atomic::Ordering::SeqCst);
        EventHook::emit(
            self.inner.events.as_ref(),
            AgentEvent::TokenAcquired {
                client_id: self.inner.client.client_id().to_owned(),
                resource: self.resources().first().cloned(),
                scope: tokens.scope.to_string(),
                fingerprint: tokens.access_token.fingerprint(),
            },
        );
        Ok(tokens)
    }

    /// End the user grant: revoke its refresh token (RFC 7009), remove it from the store, and
    /// drop every cached token. Later calls fall back to client credentials (or fail for a
    /// public client) until the next login.
    ///
    /// # Errors
    /// Revocation and store errors. The local state is cleared even when revocation fails.
    pub async fn logout(&self) -> Result<()> {
        // A refresh token the store never took is the newest: that is the one to revoke. Forget
        // it first, so that no background write puts the grant back after the removal.
        let unstored = self.inner.grant_memory.pending_refresh_token();
        self.inner.grant_memory.clear();
        let (store, key) = (self.inner.store.clone(), self.inner.grant_key.clone());
        let stored = tokio::task::spawn_blocking(move || -> Result<_> {
            let _lock = store.lock(&key)?;
            let current = store.load(&key)?;
            let _ = store.remove(&key, None)?;
            Ok(current)
        })
        .await
        .map_err(|e| Error::Store(e.to_string()))??;
        self.inner
            .has_grant
            .store(false, std::sync::atomic::Ordering::SeqCst);
        self.inner.cache.retain(|_| false);
        match unstored.or_else(|| stored.and_then(|v| v.value.refresh_token)) {
            Some(rt) => {
                let result = self
                    .inner
                    .client
                    .revoke(rt.secret(), Some("refresh_token"))
                    .await;
                if result.is_ok() {
                    EventHook::emit(
                        self.inner.events.as_ref(),
                        AgentEvent::TokenRevoked {
                            fingerprint: rt.fingerprint(),
                        },
                    );
                }
                result
            }
            None => Ok(()),
        }
    }

    fn grant_source(&self, params: TokenParams) -> RefreshingSource {
        RefreshingSource::new(
            self.inner.client.clone(),
            self.inner.store.clone(),
            self.inner.grant_key.clone(),
            params,
        )
        .with_memory(self.inner.grant_memory.clone(), self.inner.events.clone())
    }

    pub(crate) fn events(&self) -> Option<&EventHook> {
        self.inner.events.as_ref()
    }

    /// Attach `Authorization` and `DPoP` for `token` to a request.
    fn authorize(
        &self,
        req: &mut HttpRequest,
        url: &Url,
        token: &TokenSet,
        nonce: Option<&str>,
    ) -> Result<()> {
        let method = req.method().clone();
        self.authorize_headers(req.headers_mut(), &method, url, token, nonce)
    }

    /// Set `Authorization` and `DPoP` headers for `token` on `headers`.
    pub(crate) fn authorize_headers(
        &self,
        headers: &mut HeaderMap,
        method: &Method,
        url: &Url,
        token: &TokenSet,
        nonce: Option<&str>,
    ) -> Result<()> {
        authorize_headers_with(
            &self.inner.transport,
            self.dpop_key(),
            headers,
            method,
            url,
            token,
            nonce,
        )
    }

    /// Learn the resource behind a 401 (RFC 9728 §5): metadata from the challenge's
    /// `resource_metadata` (policy-checked) or the well-known URL, checked against the URL and
    /// the agent's issuer.
    ///
    /// Any failure is an [`Error::ResourceDiscovery`] that keeps the resource's challenges.
    pub(crate) async fn discover_resource(
        &self,
        url: &Url,
        challenges: &[Challenge],
    ) -> Result<ResourceInfo> {
        self.discover_resource_inner(url, challenges)
            .await
            .map_err(|e| Error::ResourceDiscovery {
                reason: Box::new(e),
                challenges: challenges.to_vec(),
            })
    }

    async fn discover_resource_inner(
        &self,
        url: &Url,
        challenges: &[Challenge],
    ) -> Result<ResourceInfo> {
        let md_url = match challenges.iter().find_map(Challenge::resource_metadata) {
            Some(u) => Some(self.inner.metadata_policy.check(u, url)?),
            None => None,
        };
        let md = fetch_resource_metadata(&self.inner.transport, url, md_url.as_ref()).await?;
        choose_issuer(&md, Some(self.issuer()), &[])?;
        let scope = challenges
            .iter()
            .find_map(Challenge::scope)
            .map(Scope::parse)
            .or_else(|| {
                self.inner
                    .scope
                    .is_none()
                    .then(|| md.scopes_supported.as_ref().map(|s| s.iter().collect()))
                    .flatten()
            });
        let info = ResourceInfo {
            resource: parse_resource(&md.resource)?,
            scope,
        };
        tracing::info!(target: "agent_oauth", resource = %info.resource, "discovered protected resource");
        self.add_resource(info.clone());
        Ok(info)
    }
}

/// The token source behind every cache entry of an agent.
struct AgentSource {
    agent: std::sync::Weak<AgentInner>,
    params: TokenParams,
}

impl TokenSource for AgentSource {
    fn fetch(
        &self,
        current: Option<TokenSet>,
    ) -> crate::cache::BoxFuture<'static, Result<TokenSet>> {
        let agent = self.agent.upgrade().map(|inner| Agent { inner });
        let params = self.params.clone();
        Box::pin(async move {
            let agent = agent.ok_or_else(|| Error::config("the agent was dropped"))?;
            let resource = params.resources.first().cloned();
            let client_id = agent.inner.client.client_id().to_owned();
            if agent
                .inner
                .has_grant
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                let (t, refreshed) = agent
                    .grant_source(params)
                    .refresh_reporting(current)
                    .await?;
                if refreshed {
                    EventHook::emit(
                        agent.events(),
                        AgentEvent::TokenRefreshed {
                            client_id,
                            resource,
                            fingerprint: t.access_token.fingerprint(),
                        },
                    );
                }
                Ok(t)
            } else {
                let t = agent.inner.client.client_credentials(&params).await?;
                EventHook::emit(
                    agent.events(),
                    AgentEvent::TokenAcquired {
                        client_id,
                        resource,
                        scope: t.scope.to_string(),
                        fingerprint: t.access_token.fingerprint(),
                    },
                );
                Ok(t)
            }
        })
    }
}

/// The public builder methods of a request type holding `parts: RequestParts`.
macro_rules! request_builder_methods {
    ($ty:ty) => {
        impl $ty {
            /// Add a header. `Authorization` and `DPoP` are set when the request is sent.
            pub fn header(
                mut self,
                name: impl TryInto<http::HeaderName>,
                value: impl TryInto<http::HeaderValue>,
            ) -> Self {
                self.parts.header(name, value);
                self
            }

            /// Set the body (kept in memory, so the request can be replayed for a nonce or
            /// token retry).
            pub fn body(mut self, body: impl Into<bytes::Bytes>) -> Self {
                self.parts.body = body.into();
                self
            }

            /// Set a JSON body and `Content-Type: application/json`.
            pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
                self.parts.json(value);
                self
            }

            /// Make a non-idempotent request retryable by naming it (`Idempotency-Key`).
            pub fn idempotency_key(self, key: impl AsRef<str>) -> Self {
                let v = key.as_ref().to_owned();
                self.header("idempotency-key", v)
            }
        }
    };
}
pub(crate) use request_builder_methods;

/// `get`, `post`, `put`, `patch` and `delete` for a type with a
/// `request(Method, url) -> $req` method.
macro_rules! method_shortcuts {
    ($ty:ty, $req:ty) => {
        impl $ty {
            /// `GET url`.
            pub fn get(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::GET, url)
            }

            /// `POST url`.
            pub fn post(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::POST, url)
            }

            /// `PUT url`.
            pub fn put(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::PUT, url)
            }

            /// `PATCH url`.
            pub fn patch(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::PATCH, url)
            }

            /// `DELETE url`.
            pub fn delete(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::DELETE, url)
            }
        }
    };
}
pub(crate) use method_shortcuts;

method_shortcuts!(Agent, AgentRequest);

/// Method, URL, headers and an in-memory body: what a protected request is made of before a
/// token is attached. Shared by [`AgentRequest`] and the child agents' requests.
pub(crate) struct RequestParts {
    pub(crate) method: Method,
    pub(crate) url: Result<Url>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl RequestParts {
    pub(crate) fn new(method: Method, url: &str) -> Self {
        RequestParts {
            method,
            url: Url::parse(url).map_err(|_| Error::config("request URL is not an absolute URL")),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Keep the first error (builders report it at `send`).
    fn fail(&mut self, e: Error) {
        if self.url.is_ok() {
            self.url = Err(e);
        }
    }

    pub(crate) fn header(
        &mut self,
        name: impl TryInto<HeaderName>,
        value: impl TryInto<HeaderValue>,
    ) {
        match (name.try_into(), value.try_into()) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => self.fail(Error::config("invalid header")),
        }
    }

    pub(crate) fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        match serde_json::to_vec(value) {
            Ok(b) => {
                self.body = b.into();
                self.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Err(e) => self.fail(Error::config(format!("cannot serialize JSON body: {e}"))),
        }
    }

    /// The URL, or the first builder error.
    pub(crate) fn url(&self) -> Result<Url> {
        self.url.clone()
    }

    pub(crate) fn build(&self, url: &Url) -> Result<HttpRequest> {
        let mut b = http::Request::builder()
            .method(self.method.clone())
            .uri(url.as_str());
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(self.body.to_vec())
            .map_err(|e| Error::config(format!("cannot build request: {e}")))
    }

    /// Idempotent methods, and others named by an `Idempotency-Key`, may be retried.
    pub(crate) fn policy(&self) -> RetryPolicy {
        if is_idempotent(&self.method) || self.headers.contains_key("idempotency-key") {
            RetryPolicy::Idempotent
        } else {
            RetryPolicy::ConnectOnly
        }
    }
}

/// A protected request being built. Finish with [`send`](Self::send).
#[must_use]
pub struct AgentRequest {
    agent: Agent,
    parts: RequestParts,
}

impl fmt::Debug for AgentRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentRequest")
            .field("method", &self.parts.method)
            .field("url", &self.parts.url.as_ref().map(Url::as_str).ok())
            .finish_non_exhaustive()
    }
}

request_builder_methods!(AgentRequest);

impl AgentRequest {
    async fn send_with(
        &self,
        url: &Url,
        token: Option<&TokenSet>,
        nonce: Option<&str>,
    ) -> Result<HttpResponse> {
        let agent = &self.agent;
        agent
            .inner
            .transport
            .execute_observed(
                self.parts.policy(),
                || {
                    let mut req = self.parts.build(url)?;
                    if let Some(t) = token {
                        agent.authorize(&mut req, url, t, nonce)?;
                    }
                    Ok(req)
                },
                // Nonces on responses the transport retries (a 503) are remembered too.
                |u, h| {
                    agent.nonces().update_from_headers(u, h);
                },
            )
            .await
    }

    /// Send: token for the URL's resource, `Authorization` + `DPoP`, nonce retry, one refresh on
    /// `invalid_token`, 401 discovery for unknown URLs.
    ///
    /// Non-OAuth statuses (404, 500, ...) come back as responses. A final 401, or a 403
    /// `insufficient_scope` the agent may not upgrade, is returned as [`Error::OAuth`].
    ///
    /// # Errors
    /// [`Error::Config`] when the URL belongs to no known resource and none can be discovered,
    /// token errors, transport errors, [`Error::OAuth`] as above.
    pub async fn send(self) -> Result<HttpResponse> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            target: "agent_oauth",
            "agent.send",
            method = %self.parts.method,
            origin = %self.parts.url.as_ref().map(|u| u.origin().ascii_serialization()).unwrap_or_default(),
        );
        let transport = self.agent.inner.transport.clone();
        within_deadline(&transport, self.send_inner())
            .instrument(span)
            .await
    }

    async fn send_inner(self) -> Result<HttpResponse> {
        let url = self.parts.url()?;
        self.agent.inner.transport.check(&url)?;
        let agent = self.agent.clone();
        let info = match agent.resource_for(&url) {
            Some(info) => info,
            None if agent.inner.discover_resources => {
                // Ask without a token; a protected resource answers 401 with its metadata.
                let resp = self.send_with(&url, None, None).await?;
                if resp.status() != http::StatusCode::UNAUTHORIZED {
                    return Ok(resp);
                }
                let challenges = challenges_from_headers(resp.headers()).unwrap_or_default();
                agent.discover_resource(&url, &challenges).await?
            }
            None => {
                return Err(Error::config(format!(
                    "no configured resource covers {}; tokens are only sent to their resource",
                    url.origin().ascii_serialization()
                )))
            }
        };
        let mut scope = info.scope.clone();
        let mut refreshed = false;
        let mut upgraded = false;
        loop {
            let handle = agent.handle(agent.params_for(Some(&info.resource), scope.as_ref()));
            let token = handle.get().await?;
            let token = token.token().clone();
            let (this, url, token) = (&self, &url, &token);
            let outcome = attempt(
                agent.nonces(),
                agent.events(),
                url,
                token,
                |nonce| async move { this.send_with(url, Some(token), nonce.as_deref()).await },
            )
            .await?;
            match outcome {
                Outcome::Done(resp) => return Ok(resp),
                Outcome::Unauthorized(_) if !refreshed => {
                    refreshed = true;
                    handle.invalidate();
                }
                Outcome::Unauthorized(err) | Outcome::Refused(err) => return Err(err),
                Outcome::InsufficientScope(err) => {
                    let wanted = err
                        .oauth_error()
                        .and_then(|o| o.challenges.iter().find_map(Challenge::scope))
                        .map(Scope::parse);
                    match wanted {
                        Some(w) if agent.inner.allow_scope_upgrade && !upgraded => {
                            upgraded = true;
                            let base = scope
                                .clone()
                                .or_else(|| agent.inner.scope.clone())
                                .unwrap_or_default();
                            scope = Some(base.union(&w));
                        }
                        _ => return Err(err),
                    }
                }
            }
        }
    }
}

/// How one authorized attempt at a resource ended.
pub(crate) enum Outcome {
    /// A response that is not an OAuth rejection (success or any other status).
    Done(HttpResponse),
    /// 401: the token was rejected (after the nonce retry, if any).
    Unauthorized(Error),
    /// 403 `insufficient_scope`.
    InsufficientScope(Error),
    /// 401 with an error code other than `invalid_token`: a new token would not help.
    Refused(Error),
}

/// Send with `token`, retrying once with the resource's new DPoP nonce (RFC 9449 §9: a 401, or
/// a 400 from some resources, only when the nonce changed), remembering nonces from every
/// response, and classifying the result. Rejections are reported as audit events.
pub(crate) async fn attempt<F, Fut>(
    nonces: &NonceCache,
    events: Option<&EventHook>,
    url: &Url,
    token: &TokenSet,
    send: F,
) -> Result<Outcome>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse>>,
{
    let dpop = token.token_type == TokenType::Dpop;
    // The first DPoP request to an origin without a nonce goes alone; the others wait for its
    // answer (bounded) and use the nonce it brings.
    let (nonce, first_use) = if dpop {
        nonces.acquire(url).await
    } else {
        (nonces.get(url), None)
    };
    let sent = send(nonce.clone()).await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            drop(first_use);
            return Err(e);
        }
    };
    let fresh = nonces.update_from_headers(url, resp.headers());
    // The resource may echo the token it was sent: never let it into the error.
    let mut sent = crate::secret::SentSecrets::new();
    sent.add(token.access_token.secret());
    let mut err = oauth_error(&resp).redacted(&sent);
    let wants_nonce = !resp.status().is_success()
        && err
            .oauth_error()
            .is_some_and(|o| o.error == OAuthErrorCode::UseDpopNonce);
    if first_use.is_some() && fresh.is_none() && !wants_nonce {
        nonces.settle(url);
    }
    drop(first_use);
    if resp.status().is_success() {
        return Ok(Outcome::Done(resp));
    }
    if wants_nonce && token.token_type == TokenType::Dpop && fresh.is_some() && fresh != nonce {
        resp = send(fresh).await?;
        nonces.update_from_headers(url, resp.headers());
        if resp.status().is_success() {
            return Ok(Outcome::Done(resp));
        }
        err = oauth_error(&resp).redacted(&sent);
    }
    let status = resp.status();
    let code = err.oauth_error().map(|o| o.error.clone());
    let rejected = |code: &str| {
        EventHook::emit(
            events,
            AgentEvent::TokenRejected {
                origin: url.origin().ascii_serialization(),
                error: code.to_owned(),
                fingerprint: token.access_token.fingerprint(),
            },
        );
    };
    if status == http::StatusCode::UNAUTHORIZED {
        rejected(code.as_ref().map_or("unauthorized", |c| c.as_str()));
        let err = ensure_oauth(err, status.as_u16(), OAuthErrorCode::InvalidToken);
        // Only a rejected token is worth renewing: `invalid_token`, or a 401 that names no
        // error. Anything else (`invalid_request`, a nonce the resource keeps refusing, ...)
        // would fail the same way with a new token.
        return Ok(match code {
            None | Some(OAuthErrorCode::InvalidToken) => Outcome::Unauthorized(err),
            Some(_) => Outcome::Refused(err),
        });
    }
    if status == http::StatusCode::FORBIDDEN && code == Some(OAuthErrorCode::InsufficientScope) {
        rejected("insufficient_scope");
        return Ok(Outcome::InsufficientScope(err));
    }
    Ok(Outcome::Done(resp))
}

/// Set `Authorization` and, for a DPoP token, a `DPoP` proof signed with `key` (the agent's,
/// or a child agent's) on `headers`.
pub(crate) fn authorize_headers_with(
    transport: &HttpTransport,
    key: Option<&DpopKey>,
    headers: &mut HeaderMap,
    method: &Method,
    url: &Url,
    token: &TokenSet,
    nonce: Option<&str>,
) -> Result<()> {
    let scheme = match token.token_type {
        TokenType::Dpop if key.is_none() => {
            // Without a proof the resource must refuse it (RFC 9449 §7.1); never send it bare.
            return Err(Error::config(
                "a DPoP token cannot be sent without a DPoP key",
            ));
        }
        TokenType::Dpop => "DPoP",
        _ => "Bearer",
    };
    let mut auth = HeaderValue::from_str(&format!("{scheme} {}", token.access_token.secret()))
        .map_err(|_| Error::invalid("access token is not a valid header value"))?;
    auth.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, auth);
    if let (TokenType::Dpop, Some(key)) = (&token.token_type, key) {
        let iat = crate::clock::unix_secs(transport.server_time(url));
        let proof = key.proof(
            method.as_str(),
            url,
            iat,
            nonce,
            Some(&ath(token.access_token.secret())),
        )?;
        let v = HeaderValue::from_str(&proof)
            .map_err(|_| Error::Crypto("DPoP proof is not a header value".into()))?;
        headers.insert("dpop", v);
    }
    Ok(())
}

/// Run one user-visible call under the transport's [`deadline`](TransportConfig::deadline):
/// discovery, token requests, nonce and token retries together, not each HTTP exchange alone.
///
/// Token fetches run in the cache's own task, so a call that times out never cancels a refresh
/// midway (a rotated refresh token is still stored).
pub(crate) async fn within_deadline<T>(
    transport: &HttpTransport,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let deadline = transport.config().deadline;
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(deadline)),
    }
}

pub(crate) fn ensure_oauth(err: Error, status: u16, default: OAuthErrorCode) -> Error {
    match err {
        Error::OAuth(_) => err,
        _ => OAuthError::new(default, status).into(),
    }
}
