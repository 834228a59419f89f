//! A `reqwest_middleware::Middleware` over [`Agent`], so an existing
//! `reqwest_middleware::ClientWithMiddleware` gains the agent's tokens, DPoP proofs, nonce
//! retries, refresh on `invalid_token` and 401 discovery (feature `middleware`).
//!
//! Retries (a nonce, a refreshed token) need to replay the request, so they happen only when
//! the request can be cloned (`try_clone`); a streaming body is sent once, as is.

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use crate::agent::Agent;
use crate::challenge::challenges_from_headers;
use crate::error::{Error, OAuthErrorCode};
use crate::token::TokenType;

/// The middleware. Build it from an [`Agent`]:
///
/// ```no_run
/// # async fn run(agent: agent_oauth::Agent) -> Result<(), Box<dyn std::error::Error>> {
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(agent_oauth::AgentMiddleware::new(agent))
///     .build();
/// let resp = client.get("https://api.example.com/invoices").send().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AgentMiddleware {
    agent: Agent,
}

impl AgentMiddleware {
    /// Wrap an agent.
    pub fn new(agent: Agent) -> Self {
        AgentMiddleware { agent }
    }
}

fn mw(e: Error) -> reqwest_middleware::Error {
    reqwest_middleware::Error::middleware(e)
}

fn wants_nonce(resp: &reqwest::Response) -> bool {
    challenges_from_headers(resp.headers())
        .unwrap_or_default()
        .iter()
        .any(|c| c.error() == Some(OAuthErrorCode::UseDpopNonce.as_str()))
}

/// A 401 a new token may cure: `invalid_token`, or no error code at all.
fn renews_token(resp: &reqwest::Response) -> bool {
    challenges_from_headers(resp.headers())
        .unwrap_or_default()
        .iter()
        .find_map(|c| c.error().map(str::to_owned))
        .is_none_or(|code| code == OAuthErrorCode::InvalidToken.as_str())
}

#[async_trait::async_trait]
impl Middleware for AgentMiddleware {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        // One deadline for the whole call: discovery, token requests, nonce and token retries.
        let deadline = self.agent.transport().config().deadline;
        match tokio::time::timeout(deadline, self.handle_inner(req, extensions, next)).await {
            Ok(r) => r,
            Err(_) => Err(mw(Error::Timeout(deadline))),
        }
    }
}

impl AgentMiddleware {
    async fn handle_inner(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let agent = &self.agent;
        let url = req.url().clone();
        agent.transport().check(&url).map_err(mw)?;
        let info = match agent.resource_for(&url) {
            Some(i) => i,
            None if agent.discovers_resources() => {
                let Some(probe) = req.try_clone() else {
                    return Err(mw(Error::config(
                        "cannot discover the resource of a request whose body cannot be cloned",
                    )));
                };
                let resp = next.clone().run(probe, extensions).await?;
                if resp.status() != reqwest::StatusCode::UNAUTHORIZED {
                    return Ok(resp);
                }
                let challenges = challenges_from_headers(resp.headers()).unwrap_or_default();
                agent
                    .discover_resource(&url, &challenges)
                    .await
                    .map_err(mw)?
            }
            None => {
                return Err(mw(Error::config(format!(
                    "no configured resource covers {}",
                    url.origin().ascii_serialization()
                ))))
            }
        };
        let handle = agent.handle(agent.params_for(Some(&info.resource), info.scope.as_ref()));
        let mut spare = Some(req);
        let mut refreshed = false;
        let mut nonce_retried = false;
        loop {
            let token = handle.get().await.map_err(mw)?.token().clone();
            // The first DPoP request to an origin without a nonce goes alone (see `attempt`).
            let (nonce, first_use) = if token.token_type == TokenType::Dpop {
                agent.nonces().acquire(&url).await
            } else {
                (agent.nonces().get(&url), None)
            };
            let original = spare
                .take()
                .ok_or_else(|| mw(Error::config("request consumed")))?;
            spare = original.try_clone();
            let mut attempt = original;
            let method = attempt.method().clone();
            agent
                .authorize_headers(
                    attempt.headers_mut(),
                    &method,
                    &url,
                    &token,
                    nonce.as_deref(),
                )
                .map_err(mw)?;
            let resp = next.clone().run(attempt, extensions).await?;
            let fresh = agent.nonces().update_from_headers(&url, resp.headers());
            if first_use.is_some() && fresh.is_none() && !wants_nonce(&resp) {
                agent.nonces().settle(&url);
            }
            drop(first_use);
            if resp.status().is_success() || spare.is_none() {
                return Ok(resp);
            }
            let status = resp.status().as_u16();
            if (status == 401 || status == 400)
                && token.token_type == TokenType::Dpop
                && !nonce_retried
                && fresh.is_some()
                && fresh != nonce
                && wants_nonce(&resp)
            {
                nonce_retried = true;
                continue;
            }
            if status == 401 && !refreshed && renews_token(&resp) {
                refreshed = true;
                handle.invalidate();
                continue;
            }
            return Ok(resp);
        }
    }
}
