//! The agent's own state: accessors, resources it may send tokens to, and tokens per resource.

use std::sync::Arc;
#[cfg(feature = "mtls")]
use std::sync::RwLock;

use http::Method;
use url::Url;

use crate::cache::{TokenCache, TokenHandle, TokenKey, TokenRef, TokenSource};
use crate::discovery::resource_matches;
#[cfg(feature = "mtls")]
use crate::discovery::AuthorizationServer;

use crate::dpop::{DpopKey, NonceCache};
use crate::error::{Error, Result};
use crate::grant::{OAuthClient, TokenParams};
use crate::session::{method_shortcuts, RequestParts};
#[cfg(feature = "mtls")]
use crate::session::{Grant, GrantKey};
use crate::token::Scope;
use crate::transport::HttpTransport;

use super::resources::parse_resource;
use super::resources::AgentSource;
#[cfg(feature = "mtls")]
use super::AgentInner;
use super::{Agent, AgentBuilder, AgentRequest, Authority, ResourceInfo};

impl Agent {
    /// Start configuring an agent.
    pub fn builder() -> AgentBuilder {
        AgentBuilder::default()
    }

    /// The OAuth client at the configured authorization server (grants, revocation,
    /// introspection); `None` for an agent built without an issuer, whose clients are created
    /// per authorization server as resources name them (see [`client_for`](Self::client_for)).
    pub fn client(&self) -> Option<&OAuthClient> {
        self.inner.home.as_ref().map(|a| &a.client)
    }

    /// The OAuth client whose tokens go to `resource`: the one at the authorization server the
    /// resource's metadata names (once the agent has called it) or the configured one.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when `resource` is not an absolute URL, or the
    /// agent knows no authorization server for it.
    pub fn client_for(&self, resource: &str) -> Result<OAuthClient> {
        let url = parse_resource(resource)?;
        Ok(self.authority_of(Some(&url))?.client.clone())
    }

    /// The configured issuer; `None` for an agent that learns its authorization servers from
    /// resources (see [`issuers`](Self::issuers)).
    pub fn issuer(&self) -> Option<&str> {
        self.inner.home.as_ref().map(|a| a.issuer())
    }

    /// Every authorization server the agent has a client at: the configured one, then those
    /// learnt from resources, in the order they were first used.
    pub fn issuers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .inner
            .home
            .iter()
            .map(|a| a.issuer().to_owned())
            .collect();
        if let Ok(learnt) = self.inner.learnt.try_lock() {
            out.extend(learnt.iter().map(|a| a.issuer().to_owned()));
        } else {
            // An authority is being created right now: report those already known.
            out.extend(
                self.read_resources()
                    .iter()
                    .map(|r| r.authority.issuer().to_owned())
                    .filter(|i| self.inner.home.as_ref().is_none_or(|h| h.issuer() != i)),
            );
            out.dedup();
        }
        out
    }

    /// The transport.
    pub fn transport(&self) -> &HttpTransport {
        &self.inner.transport
    }

    /// The DPoP key tokens are bound to: the configured server's client's key when there is a
    /// configured server, else the agent's key (used at each server that supports DPoP).
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        match &self.inner.home {
            Some(home) => home.client.dpop_key(),
            None => self.inner.registrar.dpop_key(),
        }
    }

    /// The client certificate presented on every connection, if any.
    #[cfg(feature = "mtls")]
    pub fn client_identity(&self) -> Option<&crate::transport::tls::ClientIdentity> {
        self.inner.identity.as_ref()
    }

    /// The same agent presenting a new client certificate (rotation, RFC 8705).
    ///
    /// A new connection pool is built for the new identity, and the new agent starts with an
    /// empty token cache: tokens bound to the old certificate (`cnf.x5t#S256`) are never sent
    /// over the new one. Its cache and grant are keyed by the new thumbprint, so a user grant
    /// bound to the old certificate is not carried over. Drop the old agent to drop its tokens.
    /// Authorization servers learnt from resources are learnt again.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when the TLS configuration cannot be built or the
    /// agent has no configured issuer; discovery errors.
    #[cfg(feature = "mtls")]
    pub async fn with_client_identity(
        &self,
        identity: crate::transport::tls::ClientIdentity,
    ) -> Result<Agent> {
        let old = &self.inner;
        let home = old.home.as_ref().ok_or_else(|| {
            Error::config("a certificate rotation needs an agent with a configured issuer")
        })?;
        let transport = HttpTransport::with_tls(
            old.transport.config().clone(),
            Some(&identity),
            &old.roots.clone().unwrap_or_default(),
        )?;
        if let Some(hook) = &old.events {
            transport.set_event_hook(hook.clone());
        }
        let md = home.client.server().metadata().await?;
        let mut server = AuthorizationServer::from_metadata((*md).clone(), transport.clone())?;
        if let Some(patch) = home.client.server().metadata_patch() {
            server = server.with_metadata_patch(patch);
        }
        let client = home.client.with_server(server);
        let x5t = identity.thumbprint().to_owned();
        let binding = home.binding.clone().with_mtls(x5t.clone());
        let issuer = home.issuer().to_owned();
        let grant = Grant::open(
            client.clone(),
            old.store.clone(),
            GrantKey::new(&issuer, client.client_id(), binding.clone()),
            old.events.clone(),
        )
        .await?;
        let authority = Arc::new(Authority::new(client, grant, binding, home.kind));
        let resources = self
            .read_resources()
            .iter()
            .filter(|r| r.authority.issuer() == issuer)
            .map(|r| ResourceInfo::new(r.resource.clone(), r.scope.clone(), authority.clone()))
            .collect();
        let mut registrar = old.registrar.clone();
        registrar.mtls_thumbprint = Some(x5t);
        let principal = self.principal().clone();
        Ok(Agent::from_inner(
            Arc::new(AgentInner {
                transport,
                cache: TokenCache::new(old.cache.config().clone()),
                store: old.store.clone(),
                scope: old.scope.clone(),
                home: Some(authority),
                registrar,
                learnt: tokio::sync::Mutex::new(Vec::new()),
                discovery: tokio::sync::Mutex::new(()),
                resources: RwLock::new(resources),
                fast: super::fast::FastHandles::default(),
                handles_epoch: std::sync::atomic::AtomicU64::new(0),
                metadata_policy: old.metadata_policy.clone(),
                discover_resources: old.discover_resources,
                max_step_ups: old.max_step_ups,
                step_ups: std::sync::Mutex::new(Vec::new()),
                authorizer: old.authorizer.clone(),
                machine: old.machine.clone(),
                events: old.events.clone(),
                identity: Some(identity),
                roots: old.roots.clone(),
            }),
            &principal,
        ))
    }

    /// The token cache.
    pub fn cache(&self) -> &TokenCache {
        &self.inner.cache
    }

    /// The nonce cache shared by token and resource requests.
    pub fn nonces(&self) -> &Arc<NonceCache> {
        &self.inner.registrar.nonces
    }

    /// The resources the agent may send tokens to (configured and discovered).
    pub fn resources(&self) -> Vec<String> {
        self.read_resources()
            .iter()
            .map(|r| r.resource.to_string())
            .collect()
    }

    fn read_resources(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ResourceInfo>>> {
        crate::sync::read(&self.inner.resources)
    }

    #[cfg(feature = "middleware")]
    pub(crate) fn discovers_resources(&self) -> bool {
        self.inner.discover_resources
    }

    /// The resource (and scope) a URL belongs to, if known.
    pub(crate) fn resource_for(&self, url: &Url) -> Option<Arc<ResourceInfo>> {
        self.read_resources()
            .iter()
            .filter(|r| resource_matches(&r.resource, url))
            // the most specific resource wins
            .max_by_key(|r| r.resource.path().len())
            .cloned()
    }

    /// Forget `access_token`'s handles (after a resource, its scope or its authority changed).
    pub(super) fn forget_fast_handles(&self) {
        self.inner
            .handles_epoch
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Forget every kept cache handle (the resources' and `access_token`'s), after the cache
    /// was emptied: the next call makes new ones.
    pub(super) fn forget_handles(&self) {
        self.forget_fast_handles();
        let mut w = crate::sync::write(&self.inner.resources);
        for r in w.iter_mut() {
            *r = ResourceInfo::new(r.resource.clone(), r.scope.clone(), r.authority.clone());
        }
    }

    pub(super) fn add_resource(&self, info: Arc<ResourceInfo>) {
        self.forget_fast_handles();
        let mut w = crate::sync::write(&self.inner.resources);
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

    /// The authority whose tokens go to `resource` (`None`: the agent's tokens without a
    /// resource): the one the resource's metadata named, else the configured one.
    pub(crate) fn authority_of(&self, resource: Option<&Url>) -> Result<Arc<Authority>> {
        if let Some(info) = resource.and_then(|r| self.resource_for(r)) {
            return Ok(info.authority.clone());
        }
        self.inner.home.clone().ok_or_else(|| {
            Error::config(
                "the agent has no configured issuer and knows no authorization server for this \
                 resource yet: call it first, its 401 names one",
            )
        })
    }

    fn key_for(&self, authority: &Authority, params: &TokenParams) -> TokenKey {
        let mut k = TokenKey::new(authority.issuer(), authority.client.client_id())
            .with_scope(params.scope.clone().unwrap_or_default())
            .with_binding(authority.binding.clone())
            .with_principal(self.principal().clone());
        for r in &params.resources {
            k = k.with_resource(r.clone());
        }
        k
    }

    /// The cache handle for tokens with `params`: refreshed from the agent's grant when it has
    /// one (after a login), else obtained with client credentials.
    pub(crate) fn handle(&self, authority: &Arc<Authority>, params: TokenParams) -> TokenHandle {
        let key = self.key_for(authority, &params);
        let this = self.clone();
        self.inner.cache.handle(&key, move || {
            Arc::new(AgentSource {
                agent: Arc::downgrade(&this.inner),
                principal: this.principal().clone(),
                authority: authority.clone(),
                params,
            }) as Arc<dyn TokenSource>
        })
    }

    /// A token for `resource` (or for the agent's default scope without a resource).
    ///
    /// # Errors
    /// Token endpoint and discovery errors.
    ///
    /// For a resource the agent knows (configured or discovered), this is the token its calls
    /// use: the resource's scope (from its challenge or metadata) and its authorization server.
    /// A hit takes no lock and allocates nothing.
    pub async fn access_token(&self, resource: Option<&str>) -> Result<TokenRef> {
        if let Some(acting) = &self.acting {
            return self.principal_access_token(acting, resource).await;
        }
        let name = resource.unwrap_or("");
        let epoch = self.handles_epoch();
        // The shared flight clock bounds a wait: no timer per caller (a stampede of first
        // calls would arm and cancel thousands).
        let deadline = self.inner.transport.config().deadline;
        let spilled = match self.inner.fast.slot(epoch, name) {
            Ok(h) => {
                if let Some(hit) = h.peek() {
                    return Ok(hit);
                }
                // Waited on borrowed from its slot: a stampede's waiters write no shared
                // count to hold the handle.
                return h.get_within(deadline).await;
            }
            Err(spilled) => spilled,
        };
        let handle = match spilled
            .then(|| {
                self.inner
                    .fast
                    .spilled(epoch, name, |h| h.peek().ok_or_else(|| h.clone()))
            })
            .flatten()
        {
            Some(Ok(hit)) => return Ok(hit),
            Some(Err(h)) => h,
            None => self.resolve_handle(resource)?,
        };
        handle.get_within(deadline).await
    }

    /// The handle `access_token(resource)` uses, kept for the next call (up to 16 resources;
    /// a principal's handle keeps its own, see `principal_access_token`).
    pub(super) fn resolve_handle(&self, resource: Option<&str>) -> Result<TokenHandle> {
        // Read first: a handle resolved across a change is kept for the epoch before it.
        let epoch = self.handles_epoch();
        let r = resource.map(parse_resource).transpose()?;
        let known = r
            .as_ref()
            .and_then(|u| self.resource_for(u).filter(|i| i.resource == *u));
        let handle = match known {
            Some(info) if self.acting.is_some() => {
                let params = self.params_for(Some(&info.resource), info.scope.as_ref());
                return Ok(self.handle(&info.authority, params));
            }
            Some(info) => info
                .handle
                .get_or_init(|| {
                    let params = self.params_for(Some(&info.resource), info.scope.as_ref());
                    self.handle(&info.authority, params)
                })
                .clone(),
            None => {
                let authority = self.authority_of(r.as_ref())?;
                let handle = self.handle(&authority, self.params_for(r.as_ref(), None));
                if self.acting.is_some() {
                    return Ok(handle);
                }
                handle
            }
        };
        self.inner.fast.keep(epoch, resource.unwrap_or(""), &handle);
        Ok(handle)
    }

    /// Drop the cached tokens for `resource` (`None`: the agent's tokens without a resource),
    /// of every scope, after the API rejected one: the next call obtains a new token, refreshing
    /// the grant when there is one. Returns whether a cached token was dropped. An unknown
    /// resource changes nothing (no cache entry is created).
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) when `resource` is not an absolute URL.
    pub fn invalidate_token(&self, resource: Option<&str>) -> Result<bool> {
        let r = resource.map(parse_resource).transpose()?;
        let Ok(authority) = self.authority_of(r.as_ref()) else {
            return Ok(false);
        };
        let base = self
            .key_for(&authority, &self.params_for(r.as_ref(), None))
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
        let authority = self.authority_of(r.as_ref())?;
        self.handle(&authority, self.params_for(r.as_ref(), None))
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
}

method_shortcuts!(Agent, AgentRequest);
