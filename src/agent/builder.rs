//! [`AgentBuilder`]: configuration, checked and resolved (discovery, DPoP mode, stores) in
//! `build()`.

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use url::Url;

use crate::cache::{CacheConfig, TokenCache};
use crate::client_auth::ClientAuth;
use crate::discovery::{
    choose_issuer, fetch_resource_metadata, MetadataPatch, MetadataPolicy, ServerMetadata,
    TrustPolicy,
};
use crate::dpop::{DpopKey, NonceCache};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::DeviceAuthorization;
use crate::session::{Grant, GrantKey};
use crate::store::{MemoryStore, TokenStore};
use crate::token::Scope;
use crate::transport::{HttpTransport, TransportConfig};

use super::authority::DpopChoice;
use super::authorize::Authorizer;
use super::machine::MachineGrant;
use super::resources::parse_resource;
use super::{Agent, AgentInner, Authority, AuthorizationPrompt, Registrar, ResourceInfo};
use crate::registration::{ClientMetadata, RegistrationKind};

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
enum DpopSetting {
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
    dpop: DpopSetting,
    scope: Option<Scope>,
    resources: Vec<String>,
    store: Option<Arc<dyn TokenStore>>,
    transport: TransportConfig,
    cache: CacheConfig,
    metadata_policy: MetadataPolicy,
    trusted_issuers: Vec<String>,
    trust: Option<TrustPolicy>,
    per_issuer: Vec<(String, String, ClientAuth)>,
    metadata_url: Option<String>,
    client_metadata: Option<ClientMetadata>,
    authorizer: Option<Authorizer>,
    require_pkce: bool,
    max_step_ups: Option<u32>,
    discover_resources: bool,
    allow_scope_upgrade: bool,
    accept_bearer: bool,
    default_expires_in: Option<Duration>,
    events: Option<EventHook>,
    error: Option<Error>,
    nonces: Option<Arc<NonceCache>>,
    metadata_patch: Option<MetadataPatch>,
    pub(super) machine: MachineGrant,
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
            dpop: DpopSetting::Mode(DpopMode::Auto),
            scope: None,
            resources: Vec::new(),
            store: None,
            transport: TransportConfig::default(),
            cache: CacheConfig::default(),
            metadata_policy: MetadataPolicy::SameOrigin,
            trusted_issuers: Vec::new(),
            trust: None,
            per_issuer: Vec::new(),
            metadata_url: None,
            client_metadata: None,
            authorizer: None,
            require_pkce: true,
            max_step_ups: None,
            discover_resources: true,
            allow_scope_upgrade: false,
            accept_bearer: false,
            default_expires_in: Some(Duration::from_secs(300)),
            events: None,
            error: None,
            nonces: None,
            metadata_patch: None,
            machine: MachineGrant::default(),
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

    /// Which authorization servers the agent accepts when a resource names them (default:
    /// the configured [issuer](Self::issuer) and those given to
    /// [`trust_issuer`](Self::trust_issuer)). An agent without an issuer learns its servers
    /// from the resources it calls (RFC 9728, the MCP authorization flow) and needs a policy
    /// that accepts them, such as [`TrustPolicy::any_https`].
    pub fn trust(mut self, policy: TrustPolicy) -> Self {
        self.trust = Some(policy);
        self
    }

    /// A client pre-registered at `issuer`, used there instead of any other registration.
    pub fn client_for_issuer(
        mut self,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        auth: ClientAuth,
    ) -> Self {
        self.per_issuer
            .push((issuer.into(), client_id.into(), auth));
        self
    }

    /// The URL of the agent's Client ID Metadata Document (an HTTPS URL the agent's owner
    /// hosts; draft-ietf-oauth-client-id-metadata-document): the agent's `client_id` at every
    /// authorization server that advertises `client_id_metadata_document_supported` and has no
    /// pre-registered client.
    pub fn client_metadata_url(mut self, url: impl Into<String>) -> Self {
        self.metadata_url = Some(url.into());
        self
    }

    /// What the agent says about itself when it registers dynamically (RFC 7591) at an
    /// authorization server that has a registration endpoint and no pre-registered client or
    /// metadata document for it. Unset members are filled in: the redirect URI of the
    /// [authorization hook](Self::on_authorization), the grant types the agent uses (code and
    /// refresh with a hook, else client credentials), and an authentication method the server
    /// supports ([`choose_auth_method`](crate::registration::choose_auth_method)).
    /// Registrations are kept in the token store per issuer and client name, reused across
    /// restarts, and redone when the server answers `invalid_client`.
    pub fn client_metadata(mut self, metadata: ClientMetadata) -> Self {
        self.client_metadata = Some(metadata);
        self
    }

    /// The `client_name` the agent registers with (see
    /// [`client_metadata`](Self::client_metadata)).
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.client_metadata = Some(match self.client_metadata.take() {
            Some(mut m) => {
                m.client_name = Some(name);
                m
            }
            None => ClientMetadata::new(name),
        });
        self
    }

    /// Obtain user grants with the authorization code flow (PKCE `S256`) whenever the agent
    /// needs one: on first use of an authorization server, when an access token without a
    /// refresh token expires, when the server ends the refresh token, and to step up to more
    /// scope. `hook` gets the [`AuthorizationPrompt`] (open its URL in a browser, or drive a
    /// headless one) and returns the URL the server redirected to, `redirect_uri` with `code`
    /// and `state`; an error from it is returned to the call that needed the token.
    ///
    /// ```no_run
    /// # use agent_oauth::{Agent, discovery::TrustPolicy};
    /// # async fn run() -> agent_oauth::Result<()> {
    /// let agent = Agent::builder()
    ///     .trust(TrustPolicy::any_https())
    ///     .client_metadata_url("https://agent.example.com/oauth-client.json")
    ///     .on_authorization("http://127.0.0.1:8765/callback", |prompt| async move {
    ///         println!("open {}", prompt.url);
    ///         // ... wait for the browser to come back to the redirect URI ...
    ///         # let callback: url::Url = prompt.url.clone();
    ///         Ok(callback)
    ///     })
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn on_authorization<F, Fut>(mut self, redirect_uri: impl Into<String>, hook: F) -> Self
    where
        F: Fn(AuthorizationPrompt) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Url>> + Send + 'static,
    {
        self.authorizer = Some(Authorizer::code(redirect_uri.into(), hook));
        self
    }

    /// Obtain user grants with the device flow (RFC 8628) whenever the agent needs one (see
    /// [`on_authorization`](Self::on_authorization)): `show` displays the user code and
    /// verification URI; the agent polls until the user approves.
    pub fn on_device_authorization(
        mut self,
        show: impl Fn(&DeviceAuthorization) + Send + Sync + 'static,
    ) -> Self {
        self.authorizer = Some(Authorizer::device(show));
        self
    }

    /// Refuse the authorization code flow at servers whose metadata does not list `S256` in
    /// `code_challenge_methods_supported` (default on, as the MCP authorization specification
    /// requires). Turn off only for servers known to support PKCE without saying so.
    pub fn require_pkce_metadata(mut self, on: bool) -> Self {
        self.require_pkce = on;
        self
    }

    /// How many times in a row a resource may answer 403 `insufficient_scope` and get a
    /// token with the union of the scope held and the scope it asks for (a new user
    /// authorization for user grants), before the call ends in
    /// [`Error::StepUpExhausted`](crate::Error::StepUpExhausted). Default 2 for an agent
    /// without an issuer or with an authorization hook, else 1 with
    /// [`allow_scope_upgrade`](Self::allow_scope_upgrade) and 0 without. A success resets
    /// the count.
    pub fn max_step_ups(mut self, n: u32) -> Self {
        self.max_step_ups = Some(n);
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
        self.dpop = DpopSetting::Key(key);
        self
    }

    /// Choose the DPoP mode (default [`DpopMode::Auto`]).
    pub fn dpop_mode(mut self, mode: DpopMode) -> Self {
        self.dpop = DpopSetting::Mode(mode);
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
    /// With an [issuer](Self::issuer) (or a [protected resource](Self::protected_resource)
    /// naming one), that server's metadata is fetched now and a
    /// [client id](Self::client_id) is required. Without one, nothing is fetched: the agent
    /// learns the authorization server of each resource from the resource's first 401, checks
    /// it against the [trust policy](Self::trust) and registers there on first use.
    ///
    /// # Errors
    /// The first configuration error of a setter; [`Error::Config`] when an issuer is known but
    /// no client id, or when resources are configured without an issuer; discovery errors
    /// (issuer mismatch, untrusted issuer, transport).
    pub async fn build(self) -> Result<Agent> {
        if let Some(e) = self.error {
            return Err(e);
        }
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
        #[cfg(feature = "mtls")]
        let mtls_thumbprint = self.identity.as_ref().map(|i| i.thumbprint().to_owned());
        #[cfg(not(feature = "mtls"))]
        let mtls_thumbprint = None;

        let mut trust = self
            .trust
            .clone()
            .unwrap_or_else(|| TrustPolicy::issuers(self.trusted_issuers.clone()));
        if let Some(iss) = &self.issuer {
            trust = trust.with_issuer(iss.clone());
        }
        let configured = self.issuer.is_some() || self.protected_resource.is_some();
        let registrar = Registrar {
            trust,
            client_id: if configured {
                None
            } else {
                self.client_id.clone()
            },
            auth: self.auth.clone(),
            per_issuer: self.per_issuer,
            metadata_url: self.metadata_url,
            dpop: match self.dpop {
                DpopSetting::Key(k) => DpopChoice::Key(k),
                DpopSetting::Mode(DpopMode::Off) => DpopChoice::Off,
                DpopSetting::Mode(DpopMode::Auto) => DpopChoice::Auto(DpopKey::generate()),
            },
            nonces: self.nonces.unwrap_or_default(),
            accept_bearer: self.accept_bearer,
            default_expires_in: self.default_expires_in,
            metadata_patch: self.metadata_patch,
            mtls_thumbprint,
            require_pkce: self.require_pkce,
            client_metadata: self.client_metadata,
            redirect_uri: self
                .authorizer
                .as_ref()
                .and_then(|a| a.redirect_uri().map(str::to_owned)),
            user_grants: self.authorizer.is_some(),
        };
        let store = self
            .store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()) as Arc<dyn TokenStore>);

        let mut home = None;
        let mut resources = Vec::new();
        if configured {
            // A workload that sends no client authentication needs no client id either.
            let client_id = match (&self.client_id, self.auth.is_omitted()) {
                (Some(id), _) => id.clone(),
                (None, true) => String::new(),
                (None, false) => return Err(Error::config("client_id is required")),
            };
            // From a protected resource alone: its metadata names the authorization server.
            let mut issuer = self.issuer.clone();
            let mut learnt_resource = None;
            if let Some(pr) = &self.protected_resource {
                let url = parse_resource(pr)?;
                let md = fetch_resource_metadata(&transport, &url, None).await?;
                issuer = Some(choose_issuer(&md, issuer.as_deref(), &registrar.trust)?);
                learnt_resource = Some(parse_resource(&md.resource)?);
            }
            let issuer = issuer.ok_or_else(|| {
                Error::config("an issuer (or a protected resource naming one) is required")
            })?;
            let server = registrar.server(&issuer, &transport)?;
            let md = server.metadata().await?;
            let (client, binding) = registrar.client(server, &md, &client_id, self.auth);
            // A grant persisted by an earlier run (refresh token) is picked up.
            let grant = Grant::open(
                client.clone(),
                store.clone(),
                GrantKey::new(&issuer, &client_id, binding.clone()),
                self.events.clone(),
            )
            .await?;
            let authority = Arc::new(Authority::new(
                client,
                grant,
                binding,
                RegistrationKind::PreRegistered,
            ));
            for r in self.resources.iter().map(String::as_str) {
                resources.push(ResourceInfo::new(
                    parse_resource(r)?,
                    None,
                    authority.clone(),
                ));
            }
            if let Some(resource) = learnt_resource {
                resources.push(ResourceInfo::new(resource, None, authority.clone()));
            }
            home = Some(authority);
        } else if !self.resources.is_empty() {
            return Err(Error::config(
                "resources need an issuer; an agent without one learns each resource and its \
                 authorization server from the resource's metadata",
            ));
        }
        let max_step_ups =
            self.max_step_ups
                .unwrap_or(if home.is_none() || self.authorizer.is_some() {
                    2
                } else {
                    u32::from(self.allow_scope_upgrade)
                });
        Ok(Agent {
            acting: None,
            inner: Arc::new(AgentInner {
                transport,
                cache: TokenCache::new(self.cache),
                store,
                scope: self.scope,
                home,
                registrar,
                learnt: tokio::sync::Mutex::new(Vec::new()),
                discovery: tokio::sync::Mutex::new(()),
                resources: RwLock::new(resources),
                fast: super::fast::FastHandles::default(),
                handles_epoch: std::sync::atomic::AtomicU64::new(0),
                metadata_policy: self.metadata_policy,
                discover_resources: self.discover_resources,
                max_step_ups,
                step_ups: std::sync::Mutex::new(Vec::new()),
                authorizer: self.authorizer,
                machine: self.machine,
                events: self.events,
                #[cfg(feature = "mtls")]
                identity: self.identity,
                #[cfg(feature = "mtls")]
                roots: self.roots,
            }),
        })
    }
}
