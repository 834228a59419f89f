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
use crate::error::Result;
use crate::grant::{OAuthClient, TokenParams};
use crate::session::{method_shortcuts, within_deadline, RequestParts};
#[cfg(feature = "mtls")]
use crate::session::{Grant, GrantKey};
use crate::token::Scope;
use crate::transport::HttpTransport;

use super::builder::parse_resource;
use super::resources::AgentSource;
#[cfg(feature = "mtls")]
use super::AgentInner;
use super::{Agent, AgentBuilder, AgentRequest, ResourceInfo};

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
    pub fn client_identity(&self) -> Option<&crate::transport::tls::ClientIdentity> {
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
    /// [`Error::Config`](crate::Error::Config) when the TLS configuration cannot be built; discovery errors.
    #[cfg(feature = "mtls")]
    pub async fn with_client_identity(
        &self,
        identity: crate::transport::tls::ClientIdentity,
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
        let binding = old.binding.clone().with_mtls(x5t);
        let grant = Grant::open(
            client.clone(),
            old.store.clone(),
            GrantKey::new(self.issuer(), client.client_id(), binding.clone()),
            old.events.clone(),
        )
        .await?;
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
                grant,
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
        crate::sync::read(&self.inner.resources)
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

    pub(super) fn add_resource(&self, info: ResourceInfo) {
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
    /// [`Error::Config`](crate::Error::Config) when `resource` is not an absolute URL.
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
}

method_shortcuts!(Agent, AgentRequest);
