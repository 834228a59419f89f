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
use crate::cache::CachedToken;
use crate::challenge::challenges_from_headers;
use crate::deadline::Within;
use crate::dpop::{Answer, NonceRole, NonceSlot, ProofNonce};
use crate::error::Error;
use crate::session::{protected_call, Outcome, Session};
use crate::token::TokenType;
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

/// The request of a call's next attempt: the request itself until its first attempt sends it,
/// then a copy to replay ([`Replay`]).
enum Spare {
    First(reqwest::Request),
    Copy(Replay),
}

/// A copy of a request to replay. A copy of a request without a body (most calls) is its
/// parts: copying those allocates nothing when it has no headers, where `try_clone` copies
/// the URL and builds an extension map for the timeout every time; a copy with a body is
/// boxed. Either is about half a request's size, for the futures that keep one (the plain
/// call's across its send).
enum Replay {
    Request(Box<reqwest::Request>),
    Bodyless {
        method: http::Method,
        headers: http::HeaderMap,
        version: http::Version,
        timeout: Option<std::time::Duration>,
    },
}

impl Replay {
    /// A copy of `req`, if it can be replayed (a streaming body cannot).
    fn of(req: &reqwest::Request) -> Option<Replay> {
        if req.body().is_some() {
            return req.try_clone().map(|r| Replay::Request(Box::new(r)));
        }
        Some(Replay::Bodyless {
            method: req.method().clone(),
            headers: req.headers().clone(),
            version: req.version(),
            timeout: req.timeout().copied(),
        })
    }
}

impl Spare {
    /// A copy to replay, if the request can be replayed.
    fn copy(&self) -> Option<Spare> {
        let copy = match self {
            Spare::First(r) => Replay::of(r)?,
            Spare::Copy(Replay::Request(r)) => Replay::of(r)?,
            Spare::Copy(Replay::Bodyless {
                method,
                headers,
                version,
                timeout,
            }) => Replay::Bodyless {
                method: method.clone(),
                headers: headers.clone(),
                version: *version,
                timeout: *timeout,
            },
        };
        Some(Spare::Copy(copy))
    }

    /// The request, to `url` (the URL of the request the copy was made of).
    fn into_request(self, url: &url::Url) -> reqwest::Request {
        match self {
            Spare::First(r) => r,
            Spare::Copy(Replay::Request(r)) => *r,
            Spare::Copy(Replay::Bodyless {
                method,
                headers,
                version,
                timeout,
            }) => {
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

/// The future `handle` returns (the trait's, boxed).
type Handled<'a> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = reqwest_middleware::Result<reqwest::Response>> + Send + 'a,
    >,
>;

// Written out rather than with `#[async_trait]`: the request is moved once, into the state
// the call's future owns, and the future boxed is the call's own (no outer block holding a
// second copy of the request), so each request allocates a smaller box.
impl Middleware for AgentMiddleware {
    fn handle<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        req: reqwest::Request,
        extensions: &'life1 mut Extensions,
        next: Next<'life2>,
    ) -> Handled<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        // One deadline for the whole call: discovery, token requests, nonce and token retries.
        let deadline = self.agent.transport().config().deadline;
        let agent = &self.agent;
        let url = req.url().clone();
        if let Err(e) = agent.transport().check(&url) {
            return Box::pin(std::future::ready(Err(mw(e))));
        }
        match agent.resource_for(&url) {
            Some(info) => Box::pin(timed(
                deadline,
                call(agent, info, req, url, extensions, next),
            )),
            None if agent.discovers_resources() => Box::pin(timed(
                deadline,
                discover_then_call(agent, req, url, extensions, next),
            )),
            None => Box::pin(std::future::ready(Err(mw(Error::config(format!(
                "no configured resource covers {}",
                url.origin().ascii_serialization()
            )))))),
        }
    }
}

/// `call` under the agent's deadline.
fn timed<F>(
    deadline: std::time::Duration,
    call: F,
) -> Within<F, impl Fn(std::time::Duration) -> reqwest_middleware::Error>
where
    F: std::future::Future<Output = reqwest_middleware::Result<reqwest::Response>>,
{
    Within::new(deadline, call, |d| mw(Error::Timeout(d)))
}

/// The first call to a URL of no known resource: send it without a token and, if the
/// resource answers 401, learn it from its metadata and make the call.
async fn discover_then_call(
    agent: &Agent,
    req: reqwest::Request,
    url: url::Url,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<reqwest::Response> {
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
    let info = agent
        .discover_resource(&url, &challenges)
        .await
        .map_err(mw)?;
    Box::pin(Call::new(req, extensions).run(agent, info, url, next, None)).await
}

/// Whether `response` ends a call as it is: what the protected-call loop would hand back
/// without a second look (a success; any other status but 401 and 403 without
/// `WWW-Authenticate`, so naming no OAuth error). Anything else goes to the loop (a
/// rejection, a nonce to retry with).
fn ends_call(response: &reqwest::Response) -> bool {
    let status = response.status();
    status.is_success()
        || (status != reqwest::StatusCode::UNAUTHORIZED
            && status != reqwest::StatusCode::FORBIDDEN
            && !response
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE))
}

/// A call to a known resource. The plain case goes out from here: the cache holds a usable
/// token and the origin's nonce state is known (no first DPoP request to it to wait for), and
/// the answer ends the call. The protected-call loop ([`Call::run`]) runs only for the rest
/// (a token to fetch, the origin's first request, a rejection, a nonce to retry with), in a
/// future of its own, boxed: the plain call neither carries it nor runs through its layers.
// A block, not an `async fn`: its arguments are kept once, not copied into locals.
#[allow(clippy::manual_async_fn)]
fn call<'a>(
    agent: &'a Agent,
    info: std::sync::Arc<crate::agent::ResourceInfo>,
    mut req: reqwest::Request,
    url: url::Url,
    extensions: &'a mut Extensions,
    next: Next<'a>,
) -> impl std::future::Future<Output = reqwest_middleware::Result<reqwest::Response>> + 'a {
    async move {
        let plain = agent.cached_token_of(&info).and_then(|token| {
            let nonce = match token.token().token_type {
                TokenType::Dpop => agent.nonces().known_key(&info.nonce_key)?,
                _ => None,
            };
            Some((token, nonce))
        });
        let Some((token, nonce)) = plain else {
            return Box::pin(Call::new(req, extensions).run(agent, info, url, next, None)).await;
        };
        // Copied before it is authorized, as every attempt's request is: a replay signs anew.
        let spare = Replay::of(&req);
        let method = req.method().clone();
        let origin = NonceSlot::origin_of(&info.nonce_key, NonceRole::Resource);
        if let Err(e) = Session::authorize_with(
            agent,
            req.headers_mut(),
            &method,
            &url,
            &token,
            Some(origin),
            nonce.as_deref(),
        ) {
            return Err(mw(e));
        }
        let response = next.clone().run(req, extensions).await?;
        let facts = OriginFacts::parse(response.headers());
        agent.nonces().observe(&url, &facts);
        if ends_call(&response) {
            return Ok(response);
        }
        let answer = ChainAnswer { response, facts };
        Box::pin(
            Call::answered(spare.map(Spare::Copy), extensions, answer).run(
                agent,
                info,
                url,
                next,
                Some((token, nonce)),
            ),
        )
        .await
    }
}

/// What one call through the middleware shares between its attempts, under one lock taken
/// once before an attempt's send and once after it (never across it).
struct Call<'e> {
    state: std::sync::Mutex<CallState<'e>>,
}

struct CallState<'e> {
    /// Replays (a nonce, a renewed token, more scope) need a copy of the request: the request
    /// until the first attempt sends it, then a copy of it (if it can be copied).
    spare: Option<Spare>,
    /// Lent to one attempt at a time (taken out for its send, put back after).
    extensions: &'e mut Extensions,
    /// The chain's own error, handed back as it is once the loop stops.
    chain_error: Option<reqwest_middleware::Error>,
    /// The answer to a first attempt sent before the loop ([`call`]'s), for the loop's first
    /// attempt to take instead of sending.
    answered: Option<ChainAnswer>,
}

impl<'e> Call<'e> {
    fn new(req: reqwest::Request, extensions: &'e mut Extensions) -> Self {
        Call {
            state: std::sync::Mutex::new(CallState {
                spare: Some(Spare::First(req)),
                extensions,
                chain_error: None,
                answered: None,
            }),
        }
    }

    /// A call whose first attempt was sent already and brought `answer`; `spare` is the copy
    /// of its request kept for a replay.
    fn answered(spare: Option<Spare>, extensions: &'e mut Extensions, answer: ChainAnswer) -> Self {
        Call {
            state: std::sync::Mutex::new(CallState {
                spare,
                extensions,
                chain_error: None,
                answered: Some(answer),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, CallState<'e>> {
        crate::sync::lock(&self.state)
    }

    /// The request of the next attempt, `Authorization` and proof set, and the extensions
    /// lent to its send; a copy of the request is kept for a replay. Not `async`: nothing here
    /// is held across the send.
    fn prepare(
        &self,
        agent: &Agent,
        url: &url::Url,
        token: &CachedToken,
        nonce: &ProofNonce<'_>,
    ) -> Result<(reqwest::Request, Extensions), Error> {
        let (spare, lent) = {
            let mut st = self.state();
            let spare = st
                .spare
                .take()
                .ok_or_else(|| Error::config("request consumed"))?;
            st.spare = spare.copy();
            (spare, std::mem::take(&mut *st.extensions))
        };
        let mut attempt = spare.into_request(url);
        let method = attempt.method().clone();
        if let Err(e) = Session::authorize(
            agent,
            attempt.headers_mut(),
            &method,
            url,
            token,
            Some(nonce),
        ) {
            *self.state().extensions = lent;
            return Err(e);
        }
        Ok((attempt, lent))
    }

    /// The protected-call loop for this call. `first` is the token and nonce the call's first
    /// attempt was sent with, when it was sent before the loop ([`Call::answered`]).
    // A block, not an `async fn`: its arguments are kept once, not copied into locals.
    #[allow(clippy::manual_async_fn)]
    fn run<'a>(
        self,
        agent: &'a Agent,
        info: std::sync::Arc<crate::agent::ResourceInfo>,
        url: url::Url,
        next: Next<'a>,
        first: Option<(std::sync::Arc<CachedToken>, Option<std::sync::Arc<str>>)>,
    ) -> impl std::future::Future<Output = reqwest_middleware::Result<reqwest::Response>> + use<'a, 'e>
    where
        'e: 'a,
    {
        async move {
            let (first, used) = match first {
                Some((token, used)) => (Some(token), used),
                None => (None, None),
            };
            let slot = NonceSlot::signed(&info.nonce_key, NonceRole::Resource, used);
            let (this, url, next, slot) = (&self, &url, &next, &slot);
            let outcome = protected_call(
                agent,
                agent.call_for(&info),
                url,
                slot,
                || this.state().spare.is_some(),
                first,
                |token, nonce| async move {
                    let answered = this.state().answered.take();
                    if let Some(answer) = answered {
                        return Ok(answer);
                    }
                    let (attempt, mut lent) = this.prepare(agent, url, &token, &nonce)?;
                    let sent = next.clone().run(attempt, &mut lent).await;
                    let response = {
                        let mut st = this.state();
                        *st.extensions = lent;
                        match sent {
                            Ok(r) => r,
                            Err(e) => {
                                st.chain_error = Some(e);
                                return Err(Error::config("the middleware chain failed"));
                            }
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
                Err(e) => Err(self.state().chain_error.take().unwrap_or_else(|| mw(e))),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
