//! A `reqwest_middleware::Middleware` over [`Agent`], so an existing
//! `reqwest_middleware::ClientWithMiddleware` gains the agent's tokens, DPoP proofs, nonce
//! retries, refresh on `invalid_token`, scope upgrade on `insufficient_scope` (when the agent
//! allows it), rejection events and 401 discovery (feature `middleware`). It is an adapter:
//! each call runs the agent's protected-call loop, the same as [`Agent::request`]; only the
//! sending goes through the rest of the middleware chain.
//!
//! Retries (a nonce, a refreshed token) need to replay the request, so they happen only when
//! the request can be cloned (`try_clone`); a streaming body is sent once, as is.

use http::Extensions;
use reqwest_middleware::{Middleware, Next};

use std::borrow::Cow;

use crate::agent::Agent;
use crate::challenge::challenges_from_headers;
use crate::dpop::Answer;
use crate::error::Error;
use crate::session::{protected_call, Outcome, Session};
use crate::transport::oauth_error;
use crate::transport::origin::{OriginFacts, OriginObserver as _};

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

/// A response of the middleware chain as the shared nonce retry sees it: the response and what
/// it says about its origin (read once; the body stays unread and streams to the caller).
struct ChainAnswer {
    response: reqwest::Response,
    facts: OriginFacts,
}

impl Answer for ChainAnswer {
    fn status(&self) -> http::StatusCode {
        self.response.status()
    }

    fn facts(&self) -> Cow<'_, OriginFacts> {
        Cow::Borrowed(&self.facts)
    }

    /// The error from `WWW-Authenticate` (the body is left to the caller).
    fn error(&self) -> Error {
        let mut head = http::Response::new(bytes::Bytes::new());
        *head.status_mut() = self.response.status();
        *head.headers_mut() = self.response.headers().clone();
        head.extensions_mut().insert(self.facts.clone());
        oauth_error(&head)
    }
}

/// What a replay is rebuilt from: the request itself, or, for a request without a body (most
/// calls), its parts: copying those allocates nothing when it has no headers, where
/// `try_clone` copies the URL and builds an extension map for the timeout every time.
enum Spare {
    Request(reqwest::Request),
    Bodyless {
        method: http::Method,
        headers: http::HeaderMap,
        version: http::Version,
        timeout: Option<std::time::Duration>,
    },
}

impl Spare {
    /// A copy of `req` to replay, if it can be replayed (a streaming body cannot).
    fn of(req: &reqwest::Request) -> Option<Spare> {
        if req.body().is_some() {
            return req.try_clone().map(Spare::Request);
        }
        Some(Spare::Bodyless {
            method: req.method().clone(),
            headers: req.headers().clone(),
            version: req.version(),
            timeout: req.timeout().copied(),
        })
    }

    /// The request, to `url` (the URL of the request the copy was made of).
    fn into_request(self, url: &url::Url) -> reqwest::Request {
        match self {
            Spare::Request(r) => r,
            Spare::Bodyless {
                method,
                headers,
                version,
                timeout,
            } => {
                let mut r = reqwest::Request::new(method, url.clone());
                *r.headers_mut() = headers;
                *r.version_mut() = version;
                if timeout.is_some() {
                    *r.timeout_mut() = timeout;
                }
                r
            }
        }
    }
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
                // Boxed: the first call's path only, kept out of every call's future.
                Box::pin(agent.discover_resource(&url, &challenges))
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
        // Replays (a nonce, a renewed token, more scope) need a copy of the request.
        let spare = std::sync::Mutex::new(Some(Spare::Request(req)));
        let take = || crate::sync::lock(&spare).take();
        let replayable = || crate::sync::lock(&spare).is_some();
        // Lent to one attempt at a time (taken out for its send, put back after), so that no
        // lock is held across the send.
        let extensions = std::sync::Mutex::new(extensions);
        let chain_error = std::sync::Mutex::new(None);
        let (url, take, next, extensions) = (&url, &take, &next, &extensions);
        let (spare, chain_error) = (&spare, &chain_error);
        let outcome = protected_call(
            agent,
            agent.call_for(&info),
            url,
            replayable,
            |token, nonce| async move {
                let original = take()
                    .ok_or_else(|| Error::config("request consumed"))?
                    .into_request(url);
                if let Some(copy) = Spare::of(&original) {
                    *crate::sync::lock(spare) = Some(copy);
                }
                let mut attempt = original;
                let method = attempt.method().clone();
                Session::authorize(
                    agent,
                    attempt.headers_mut(),
                    &method,
                    url,
                    &token,
                    Some(&nonce),
                )?;
                let mut lent = std::mem::take(&mut **crate::sync::lock(extensions));
                let sent = next.clone().run(attempt, &mut lent).await;
                **crate::sync::lock(extensions) = lent;
                let response = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        // Handed back as it is, once the loop stops.
                        *crate::sync::lock(chain_error) = Some(e);
                        return Err(Error::config("the middleware chain failed"));
                    }
                };
                // Not sent by the transport: record what the response says about its origin.
                let facts = OriginFacts::parse(response.headers());
                agent.nonces().observe(url, &facts);
                Ok(ChainAnswer { response, facts })
            },
        )
        .await;
        match outcome {
            Ok(Outcome::Done(a)) | Ok(Outcome::Rejected { response: a, .. }) => Ok(a.response),
            Err(e) => Err(crate::sync::lock(chain_error)
                .take()
                .unwrap_or_else(|| mw(e))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
