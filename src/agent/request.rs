//! [`AgentRequest`]: a protected request through the agent.

use std::fmt;

use url::Url;

use crate::cache::CachedToken;
use crate::discovery::challenges_from_headers;
use crate::dpop::ProofNonce;
use crate::error::{Error, Result};
use crate::session::{
    protected_call, request_builder_methods, within_deadline, Outcome, Rejection, RequestParts,
};
use crate::transport::{into_streaming, BodyMode, HttpResponse, StreamingResponse};

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
    /// Send one attempt; with a token, every transport attempt signs its proof with the nonce
    /// current at that moment (a nonce from a retried 503 included).
    async fn send_with(
        &self,
        url: &Url,
        token: Option<&CachedToken>,
        nonce: Option<&ProofNonce<'_>>,
        mode: BodyMode,
    ) -> Result<HttpResponse> {
        let agent = &self.agent;
        let make = || {
            let mut req = self.parts.build(url);
            if let Some(t) = token {
                agent.authorize(&mut req.headers, &req.method, url, t, nonce)?;
            }
            Ok(req)
        };
        // Nonces on every response, retried ones (a 503) included, are remembered. The call is
        // under the agent's deadline (`send_mode`): the transport sets no second one.
        agent
            .inner
            .transport
            .execute_outgoing(self.parts.policy(), make, agent.nonces().as_ref(), mode)
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
        self.send_mode(BodyMode::Read).await
    }

    /// As [`send`](Self::send), but a successful (2xx) response's body is not read: it comes
    /// back as a [`BodyStream`](crate::transport::BodyStream), uncapped (an MCP Streamable
    /// HTTP `text/event-stream` answer, a download), readable chunk by chunk or as
    /// Server-Sent Events. The deadline covers everything up to the response headers; reading
    /// the body is bounded by [`TransportConfig::stream_idle_timeout`](crate::TransportConfig)
    /// only. Other responses (401, 403, errors) are read under the usual cap, as with `send`.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub async fn send_stream(self) -> Result<StreamingResponse> {
        self.send_mode(BodyMode::Stream).await.map(into_streaming)
    }

    async fn send_mode(self, mode: BodyMode) -> Result<HttpResponse> {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            target: "agent_oauth",
            "agent.send",
            method = %self.parts.method,
            origin = %self.parts.url.as_ref().map(|u| u.origin().ascii_serialization()).unwrap_or_default(),
        );
        let transport = self.agent.inner.transport.clone();
        within_deadline(&transport, self.send_inner(mode))
            .instrument(span)
            .await
    }

    async fn send_inner(self, mode: BodyMode) -> Result<HttpResponse> {
        let url = self.parts.url()?;
        self.agent.inner.transport.check(&url)?;
        let agent = self.agent.clone();
        let info = match agent.resource_for(&url) {
            Some(info) => info,
            None if agent.inner.discover_resources => {
                // First calls to unknown URLs share one discovery: the others wait here and
                // then find the resource learnt.
                let _one = agent.inner.discovery.lock().await;
                match agent.resource_for(&url) {
                    Some(info) => info,
                    None => {
                        // Ask without a token; a protected resource answers 401 with its
                        // metadata.
                        // Boxed, as the discovery below: the first call's path only, kept
                        // out of every call's future.
                        let resp = Box::pin(self.send_with(&url, None, None, mode)).await?;
                        if resp.status() != http::StatusCode::UNAUTHORIZED {
                            return Ok(resp);
                        }
                        let challenges =
                            challenges_from_headers(resp.headers()).unwrap_or_default();
                        Box::pin(agent.discover_resource(&url, &challenges)).await?
                    }
                }
            }
            None => {
                return Err(Error::config(format!(
                    "no configured resource covers {}; tokens are only sent to their resource",
                    url.origin().ascii_serialization()
                )))
            }
        };
        let this = &self;
        let mut scope = None;
        let slot =
            crate::dpop::NonceSlot::with_key(&info.nonce_key, crate::dpop::NonceRole::Resource);
        let outcome = protected_call(
            &agent,
            agent.call_for(&info),
            &url,
            &slot,
            || true,
            None,
            |token, nonce| {
                let url = &url;
                scope = Some(token.token().scope.clone());
                async move { this.send_with(url, Some(&token), Some(&nonce), mode).await }
            },
        )
        .await?;
        match outcome {
            Outcome::Done(resp) => {
                agent.call_succeeded(&info.resource, scope.as_ref());
                Ok(resp)
            }
            Outcome::Rejected {
                error,
                rejection: Rejection::InsufficientScope,
                ..
            } if agent.step_ups(&info.resource) > 0 => {
                let attempts = agent.step_ups(&info.resource);
                agent.call_succeeded(&info.resource, None);
                Err(Error::StepUpExhausted {
                    resource: info.resource.to_string(),
                    scope: scope.map(|s| s.to_string()).unwrap_or_default(),
                    attempts,
                    last: Box::new(error),
                })
            }
            Outcome::Rejected { error, .. } => Err(error),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
