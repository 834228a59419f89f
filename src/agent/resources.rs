//! Authorizing requests and learning resources from a 401 (RFC 9728), and the token source
//! behind every cache entry.

use std::sync::Arc;

use url::Url;

use crate::cache::Principal;
use crate::cache::{BoxFuture, CachedToken, TokenHandle, TokenSource};
use crate::discovery::{discover_resource_metadata, Challenge};
use crate::dpop::{DpopKey, NonceCache, ProofNonce};
use crate::error::{Error, OAuthErrorCode, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::TokenParams;
use crate::registration::RegistrationKind;
use crate::session::{RefreshingSource, Rejection, Session};
use crate::token::{Scope, TokenSet};
use crate::transport::HttpTransport;

use super::{Agent, AgentInner, Authority, AuthorizationReason, ResourceInfo};
use crate::discovery::choose_issuer;

impl Agent {
    pub(crate) fn events(&self) -> Option<&EventHook> {
        self.inner.events.as_ref()
    }

    /// Attach `Authorization` and `DPoP` for `token` to a request.
    pub(super) fn authorize(
        &self,
        headers: &mut http::HeaderMap,
        method: &http::Method,
        url: &Url,
        token: &CachedToken,
        nonce: Option<&ProofNonce<'_>>,
    ) -> Result<()> {
        Session::authorize(self, headers, method, url, token, nonce)
    }

    /// Learn the resource behind a 401 (RFC 9728 §5): metadata from the challenge's
    /// `resource_metadata` (policy-checked), else the well-known URL with the path inserted,
    /// then at the root; its `resource` must cover the URL. The authorization server is the
    /// configured one when the metadata lists it, else the first listed one the trust policy
    /// accepts. A resource with no metadata at all (MCP 2025-03-26) is its own origin's, for
    /// an agent without a configured issuer.
    ///
    /// Scope: the challenge's `scope`, else the agent's scope, else the metadata's
    /// `scopes_supported`, else none.
    ///
    /// Any failure is an [`Error::ResourceDiscovery`] that keeps the resource's challenges.
    pub(crate) async fn discover_resource(
        &self,
        url: &Url,
        challenges: &[Challenge],
    ) -> Result<Arc<ResourceInfo>> {
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
    ) -> Result<Arc<ResourceInfo>> {
        let md_url = match challenges.iter().find_map(Challenge::resource_metadata) {
            Some(u) => Some(self.inner.metadata_policy.check(u, url)?),
            None => None,
        };
        let challenged = challenges
            .iter()
            .find_map(Challenge::scope)
            .map(Scope::parse);
        let found = discover_resource_metadata(&self.inner.transport, url, md_url.as_ref()).await?;
        let (resource, authority, supported) = match found {
            Some(md) => {
                let home = self.inner.home.as_ref().map(|h| h.issuer().to_owned());
                let issuer = choose_issuer(&md, None, &self.inner.registrar.trust).map_err(
                    |e| match &home {
                        Some(h) if !md.authorization_servers().iter().any(|a| a == h) => {
                            Error::Discovery(format!(
                                "resource `{}` does not list the configured issuer `{h}`",
                                crate::error::sanitize(&md.resource, 200)
                            ))
                        }
                        _ => e,
                    },
                )?;
                let issuer = match home {
                    Some(h) if md.authorization_servers().contains(&h) => h,
                    _ => issuer,
                };
                let authority = self.authority_for(&issuer).await?;
                let supported: Option<Scope> =
                    md.scopes_supported.as_ref().map(|s| s.iter().collect());
                (parse_resource(&md.resource)?, authority, supported)
            }
            None if self.inner.home.is_none() => {
                let authority = self.legacy_authority(url).await?;
                let mut resource = url.clone();
                resource.set_query(None);
                resource.set_fragment(None);
                (resource, authority, None)
            }
            None => {
                return Err(Error::Discovery(format!(
                    "no protected resource metadata for {}",
                    url.origin().ascii_serialization()
                )))
            }
        };
        let scope = challenged
            .or_else(|| self.inner.scope.clone())
            .or(supported)
            .filter(|s| !s.is_empty());
        let info = ResourceInfo::new(resource, scope, authority);
        tracing::info!(target: "agent_oauth", resource = %info.resource,
            issuer = %info.authority.issuer(), "discovered protected resource");
        self.add_resource(info.clone());
        Ok(info)
    }

    /// Count a step-up for `resource`; `None` once the agent may make no more in a row.
    fn step_up(&self, resource: &Url) -> Option<u32> {
        let mut counts = crate::sync::lock(&self.inner.step_ups);
        let n = match counts.iter_mut().find(|(r, _)| r == resource) {
            Some((_, n)) => n,
            None => {
                counts.push((resource.clone(), 0));
                &mut counts.last_mut()?.1
            }
        };
        if *n >= self.inner.max_step_ups {
            return None;
        }
        *n += 1;
        Some(*n)
    }

    /// Step-ups made for `resource` in a row.
    pub(super) fn step_ups(&self, resource: &Url) -> u32 {
        crate::sync::lock(&self.inner.step_ups)
            .iter()
            .find(|(r, _)| r == resource)
            .map_or(0, |(_, n)| *n)
    }

    /// A call to `resource` succeeded with `scope`: reset its step-up count, and keep the
    /// scope for later calls when a step-up widened it.
    pub(super) fn call_succeeded(&self, resource: &Url, scope: Option<&Scope>) {
        let stepped = {
            let mut counts = crate::sync::lock(&self.inner.step_ups);
            let before = counts.len();
            counts.retain(|(r, _)| r != resource);
            counts.len() != before
        };
        if let (true, Some(scope)) = (stepped, scope) {
            self.forget_fast_handles();
            let mut w = crate::sync::write(&self.inner.resources);
            for r in w.iter_mut().filter(|r| &r.resource == resource) {
                *r =
                    ResourceInfo::new(r.resource.clone(), Some(scope.clone()), r.authority.clone());
            }
        }
    }
}

/// What one protected call of an agent tracks: its resource and authorization server, the
/// scope asked, the token handle in use, and whether it already renewed the token.
pub(crate) struct AgentCall {
    info: Arc<ResourceInfo>,
    /// The scope asked after a step-up (`None`: the resource's own).
    scope: Option<Scope>,
    /// The cache handle for the scope asked (dropped when the scope changes).
    handle: Option<TokenHandle>,
    refreshed: bool,
}

impl Agent {
    /// The cached token of a call to `info`'s resource asking no more scope, when the cache
    /// holds a usable one: what [`Session::cached_token`] answers for a new call, without
    /// making the call (the middleware's plain path). `None` when the cache has none, and
    /// for a resource none of whose calls has bound its cache handle yet.
    #[cfg(feature = "middleware")]
    pub(crate) fn cached_token_of(&self, info: &Arc<ResourceInfo>) -> Option<Arc<CachedToken>> {
        if self.acting.is_some() {
            return self.cached_token(&mut self.call_for(info));
        }
        info.handle.get()?.peek().map(|t| t.share())
    }

    /// A new call to `info`'s resource.
    pub(crate) fn call_for(&self, info: &Arc<ResourceInfo>) -> AgentCall {
        AgentCall {
            info: info.clone(),
            scope: None,
            handle: None,
            refreshed: false,
        }
    }
}

/// The agent's protected calls (its own requests and the middleware's): one renewal on
/// `invalid_token`, and step-ups on `insufficient_scope` (the union of the scope held and the
/// scope asked) as many times in a row as the agent allows.
impl Session for Agent {
    type Call = AgentCall;

    fn transport(&self) -> &HttpTransport {
        &self.inner.transport
    }

    fn nonces(&self) -> &NonceCache {
        Agent::nonces(self)
    }

    fn events(&self) -> Option<&EventHook> {
        Agent::events(self)
    }

    fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.registrar.dpop_key()
    }

    fn cached_token(&self, call: &mut AgentCall) -> Option<Arc<CachedToken>> {
        let handle = self.call_handle(call);
        let hit = handle.peek().map(|t| t.share());
        call.handle = Some(handle);
        hit
    }

    fn token<'a>(&'a self, call: &'a mut AgentCall) -> BoxFuture<'a, Result<Arc<CachedToken>>> {
        Box::pin(async move {
            let handle = self.call_handle(call);
            let token = handle.get().await?.share();
            call.handle = Some(handle);
            Ok(token)
        })
    }

    fn retry_after(&self, call: &mut AgentCall, rejection: Rejection, error: &Error) -> bool {
        match rejection {
            Rejection::Unauthorized if !call.refreshed => {
                call.refreshed = true;
                if let Some(h) = &call.handle {
                    h.invalidate();
                }
                true
            }
            Rejection::InsufficientScope => {
                let wanted = error
                    .oauth_error()
                    .and_then(|o| o.challenges.iter().find_map(Challenge::scope))
                    .map(Scope::parse);
                let Some(wanted) = wanted.filter(|w| !w.is_empty()) else {
                    return false;
                };
                if self.step_up(&call.info.resource).is_none() {
                    return false;
                }
                let base = call
                    .scope
                    .clone()
                    .or_else(|| call.info.scope.clone())
                    .or_else(|| self.inner.scope.clone())
                    .unwrap_or_default();
                let held = call
                    .handle
                    .take()
                    .and_then(|h| h.peek().map(|t| t.token().scope.clone()))
                    .unwrap_or_default();
                call.scope = Some(base.union(&held).union(&wanted));
                tracing::info!(target: "agent_oauth", resource = %call.info.resource,
                    scope = %call.scope.as_ref().map(ToString::to_string).unwrap_or_default(),
                    "stepping up scope");
                true
            }
            _ => false,
        }
    }
}

impl Agent {
    /// The cache handle for the call's scope (kept in the call once made).
    fn call_handle(&self, call: &mut AgentCall) -> TokenHandle {
        let info = &call.info;
        match (call.handle.take(), &call.scope) {
            (Some(h), _) => h,
            (None, None) if self.acting.is_some() => {
                let params = self.params_for(Some(&info.resource), info.scope.as_ref());
                self.handle(&info.authority, params)
            }
            (None, None) => info
                .handle
                .get_or_init(|| {
                    let params = self.params_for(Some(&info.resource), info.scope.as_ref());
                    self.handle(&info.authority, params)
                })
                .clone(),
            (None, Some(stepped)) => {
                let params = self.params_for(Some(&info.resource), Some(stepped));
                self.handle(&info.authority, params)
            }
        }
    }
}

/// The token source behind every cache entry of an agent: the authority's user grant
/// (refreshed while it covers the scope asked), else a new user authorization through the
/// agent's hook, else client credentials.
pub(super) struct AgentSource {
    pub(super) agent: std::sync::Weak<AgentInner>,
    /// Who the tokens are for.
    pub(super) principal: Principal,
    pub(super) authority: Arc<Authority>,
    pub(super) params: TokenParams,
}

impl TokenSource for AgentSource {
    fn fetch(
        &self,
        current: Option<TokenSet>,
    ) -> crate::cache::BoxFuture<'static, Result<TokenSet>> {
        let agent = self
            .agent
            .upgrade()
            .map(|inner| Agent::from_inner(inner, &self.principal));
        let authority = self.authority.clone();
        let params = self.params.clone();
        Box::pin(async move {
            let agent = agent.ok_or_else(|| Error::config("the agent was dropped"))?;
            agent.fetch_token(&authority, params, current).await
        })
    }
}

impl Agent {
    /// A token from `authority`; a dynamically registered client the server no longer knows
    /// (`invalid_client`) is registered again, once, and the token asked of the new one.
    async fn fetch_token(
        &self,
        authority: &Arc<Authority>,
        params: TokenParams,
        current: Option<TokenSet>,
    ) -> Result<TokenSet> {
        match self.fetch_with(authority, params.clone(), current).await {
            Err(e)
                if authority.kind == RegistrationKind::Dynamic
                    && e.oauth_error()
                        .is_some_and(|o| o.error == OAuthErrorCode::InvalidClient) =>
            {
                tracing::info!(target: "agent_oauth", issuer = %authority.issuer(),
                    "the server no longer knows the registered client; registering again");
                let fresh = self.reregister(authority).await?;
                self.fetch_with(&fresh, params, None).await
            }
            other => other,
        }
    }

    async fn fetch_with(
        &self,
        authority: &Arc<Authority>,
        params: TokenParams,
        current: Option<TokenSet>,
    ) -> Result<TokenSet> {
        let resource = params.resources.first().cloned();
        let client_id = authority.client.client_id().to_owned();
        let authorizer = self.inner.authorizer.as_ref();
        let principal = self.principal();
        // A principal's tokens come from its own grant only: no hook, no client credentials.
        let own = principal.is_agent();
        let user = authority.user_grant(principal).await?;
        let grant = &user.grant;
        let reason = if grant.is_active()
            && ((own && authorizer.is_none()) || user.covers(params.scope.as_ref()))
        {
            match RefreshingSource::of(grant, params.clone())
                .refresh_reporting(current)
                .await
            {
                Ok((t, refreshed)) => {
                    if refreshed {
                        EventHook::emit(
                            self.events(),
                            AgentEvent::TokenRefreshed {
                                client_id,
                                resource,
                                fingerprint: t.access_token.fingerprint(),
                            },
                        );
                    }
                    return Ok(t);
                }
                Err(Error::ReauthorizationRequired(why)) if authorizer.is_some() || !own => {
                    tracing::info!(target: "agent_oauth", %why, "grant ended; authorizing again");
                    AuthorizationReason::Reauthorization
                }
                Err(e) => return Err(e),
            }
        } else if grant.is_active() {
            AuthorizationReason::StepUp
        } else if current.is_some() {
            AuthorizationReason::Expired
        } else {
            AuthorizationReason::FirstUse
        };
        let machine = &self.inner.machine;
        if !own {
            // A principal's own enterprise identity (an ID-JAG of that user), else its consent.
            match machine
                .principal_token(&authority.client, principal, &params)
                .await?
            {
                Some(tokens) => return Ok(self.acquired(tokens, client_id, resource)),
                None => {
                    return Err(self
                        .consent_required(authority, principal, &params, reason)
                        .await)
                }
            }
        }
        let machine_applies = machine.applies(&authority.client).await?;
        let tokens = match authorizer.filter(|_| !machine_applies) {
            Some(authorizer) => {
                let mut asked = params.clone();
                // SEP-2207: ask for a refresh token where the server offers `offline_access`.
                let md = authority.client.server().metadata().await?;
                let offline = md
                    .scopes_supported
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|v| v == "offline_access"));
                if offline {
                    let scope = asked.scope.clone().unwrap_or_default();
                    asked = asked.scope(scope.union(&Scope::parse("offline_access")));
                }
                let t = authorizer
                    .authorize(
                        &authority.client,
                        &asked,
                        reason,
                        self.inner.registrar.require_pkce,
                        self.events(),
                    )
                    .await?;
                user.set_granted(if t.scope.is_empty() {
                    asked.scope.clone().unwrap_or_default()
                } else {
                    t.scope.clone()
                });
                if t.refresh_token.is_some() {
                    // The grant keeps the refresh token; the cache only the access token.
                    user.grant.seed(&t, &params).await?;
                }
                t
            }
            None => machine.fetch(&authority.client, &params).await?,
        };
        Ok(self.acquired(tokens, client_id, resource))
    }

    /// A new token for the cache (its refresh token, if any, is the grant's), announced.
    fn acquired(
        &self,
        mut tokens: TokenSet,
        client_id: String,
        resource: Option<String>,
    ) -> TokenSet {
        tokens.refresh_token = None;
        EventHook::emit(
            self.events(),
            AgentEvent::TokenAcquired {
                client_id,
                resource,
                scope: tokens.scope.to_string(),
                fingerprint: tokens.access_token.fingerprint(),
            },
        );
        tokens
    }
}

/// A resource indicator (RFC 8707 §2): an absolute URL without a fragment.
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
