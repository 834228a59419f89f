//! [`AgentRequest`]: a protected request through the agent.

use std::fmt;

use url::Url;

use crate::discovery::{challenges_from_headers, Challenge};
use crate::error::{Error, Result};
use crate::session::{attempt, request_builder_methods, within_deadline, Outcome, RequestParts};
use crate::token::{Scope, TokenSet};
use crate::transport::HttpResponse;

use super::Agent;

/// A protected request being built. Finish with [`send`](Self::send).
#[must_use]
pub struct AgentRequest {
    pub(super) agent: Agent,
    pub(super) parts: RequestParts,
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
