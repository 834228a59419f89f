//! Authorizing requests and learning resources from a 401 (RFC 9728), and the token source
//! behind every cache entry.

use url::Url;

use crate::cache::{BoxFuture, TokenHandle, TokenSource};
use crate::discovery::{fetch_resource_metadata, Challenge};
use crate::dpop::{DpopKey, NonceCache};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::TokenParams;
use crate::session::{Rejection, Session};
use crate::token::{Scope, TokenSet};
use crate::transport::{HttpRequest, HttpTransport};

use super::builder::{choose_issuer, parse_resource};
use super::{Agent, AgentInner, ResourceInfo};

impl Agent {
    pub(crate) fn events(&self) -> Option<&EventHook> {
        self.inner.events.as_ref()
    }

    /// Attach `Authorization` and `DPoP` for `token` to a request.
    pub(super) fn authorize(
        &self,
        req: &mut HttpRequest,
        url: &Url,
        token: &TokenSet,
        nonce: Option<&str>,
    ) -> Result<()> {
        let method = req.method().clone();
        Session::authorize(self, req.headers_mut(), &method, url, token, nonce)
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

/// What one protected call of an agent tracks: its resource, the scope asked, the token
/// handle in use, and whether it already renewed the token or widened the scope.
pub(crate) struct AgentCall {
    resource: Url,
    scope: Option<Scope>,
    handle: Option<TokenHandle>,
    refreshed: bool,
    upgraded: bool,
}

impl Agent {
    /// A new call to `info`'s resource.
    pub(crate) fn call_for(&self, info: &ResourceInfo) -> AgentCall {
        AgentCall {
            resource: info.resource.clone(),
            scope: info.scope.clone(),
            handle: None,
            refreshed: false,
            upgraded: false,
        }
    }
}

/// The agent's protected calls (its own requests and the middleware's): one renewal on
/// `invalid_token`, one scope upgrade on `insufficient_scope` when allowed.
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
        Agent::dpop_key(self)
    }

    fn token<'a>(&'a self, call: &'a mut AgentCall) -> BoxFuture<'a, Result<TokenSet>> {
        Box::pin(async move {
            let handle = self.handle(self.params_for(Some(&call.resource), call.scope.as_ref()));
            let token = handle.get().await?.token().clone();
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
            Rejection::InsufficientScope if self.inner.allow_scope_upgrade && !call.upgraded => {
                let wanted = error
                    .oauth_error()
                    .and_then(|o| o.challenges.iter().find_map(Challenge::scope))
                    .map(Scope::parse);
                let Some(wanted) = wanted else {
                    return false;
                };
                call.upgraded = true;
                let base = call
                    .scope
                    .clone()
                    .or_else(|| self.inner.scope.clone())
                    .unwrap_or_default();
                call.scope = Some(base.union(&wanted));
                true
            }
            _ => false,
        }
    }
}

/// The token source behind every cache entry of an agent.
pub(super) struct AgentSource {
    pub(super) agent: std::sync::Weak<AgentInner>,
    pub(super) params: TokenParams,
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
