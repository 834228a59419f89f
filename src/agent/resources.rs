//! Authorizing requests and learning resources from a 401 (RFC 9728), and the token source
//! behind every cache entry.

use http::{HeaderMap, Method};
use url::Url;

use crate::cache::TokenSource;
use crate::discovery::{fetch_resource_metadata, Challenge};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::TokenParams;
use crate::session::authorize_headers_with;
use crate::token::{Scope, TokenSet};
use crate::transport::HttpRequest;

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
            if agent.inner.grant.is_active() {
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
