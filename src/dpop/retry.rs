//! The DPoP nonce retry (RFC 9449 §8, §9), written once for every DPoP request: token
//! endpoint, protected resources, child agents and the middleware.
//!
//! - Every proof carries the nonce current **when it is signed**: the sender asks
//!   [`ProofNonce::current`] once per attempt, transport-level retries (a 503, a connect error)
//!   included, so a nonce that arrived on a retried answer is used by the next attempt.
//! - Nonces are remembered from every response, successful ones and the failed retry's too.
//!   The transport does it for the requests it sends ([`OriginObserver`](crate::transport::origin::OriginObserver));
//!   senders of other responses (the middleware's) record them before answering.
//! - A `use_dpop_nonce` answer (AS: 400 JSON body; resource: 401 `WWW-Authenticate`, or a 400
//!   from some resources) is retried **once**, and only when the server sent a nonce other than
//!   the one the failed proof carried. A server that keeps asking gets its answer back.
//! - The first DPoP request to an origin without a nonce goes alone ([`NonceCache`]'s
//!   first-use single flight); the others wait, bounded, for the nonce its answer brings.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex};

use http::StatusCode;
use url::Url;

use super::nonce::NonceRole;
use super::NonceCache;
use crate::error::{Error, OAuthErrorCode, Result};
use crate::transport::origin::{OriginFacts, OriginKey};
use crate::transport::{oauth_error, HttpResponse};

/// A response as the nonce retry sees it: the transport's [`HttpResponse`], or another
/// client's (the middleware's `reqwest::Response`).
pub(crate) trait Answer {
    /// The status.
    fn status(&self) -> StatusCode;
    /// What it says about its origin (read once when it arrived).
    fn facts(&self) -> Cow<'_, OriginFacts>;
    /// The error an unsuccessful answer carries (OAuth body, `WWW-Authenticate`, or status).
    fn error(&self) -> Error;
}

impl Answer for HttpResponse {
    fn status(&self) -> StatusCode {
        http::Response::status(self)
    }

    fn facts(&self) -> Cow<'_, OriginFacts> {
        OriginFacts::of(self)
    }

    fn error(&self) -> Error {
        oauth_error(self)
    }
}

/// What the proofs of one DPoP request share, owned by whoever makes the request (so that
/// reading it costs no allocation): the store key of the origin and role, built once a
/// request rather than once a proof, and the nonce last signed with, so the retry decision
/// compares the nonce the server refused with the one it sent.
pub(crate) struct NonceSlot<'k> {
    key: Cow<'k, str>,
    role: NonceRole,
    used: Mutex<Option<Arc<str>>>,
}

impl std::fmt::Debug for NonceSlot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceSlot")
            .field("key", &&*self.key)
            .finish_non_exhaustive()
    }
}

impl<'k> NonceSlot<'k> {
    /// The slot of a request of `role` to `url`'s origin.
    pub(crate) fn new(url: &Url, role: NonceRole) -> Self {
        NonceSlot {
            key: Cow::Owned(Self::store_key(url, role)),
            role,
            used: Mutex::new(None),
        }
    }

    /// The store key of `url`'s origin and `role`, for a caller that keeps it (a resource's,
    /// built once) and makes its slots [`with_key`](Self::with_key).
    pub(crate) fn store_key(url: &Url, role: NonceRole) -> String {
        OriginKey::of_with(url, role.suffix()).to_owned()
    }

    /// The slot of a request of `role` whose store key ([`store_key`](Self::store_key)) the
    /// caller keeps.
    pub(crate) fn with_key(key: &'k str, role: NonceRole) -> Self {
        Self::signed(key, role, None)
    }

    /// [`with_key`](Self::with_key) for a request whose first proof its caller signed
    /// already, with `used` (read from the store when it signed).
    pub(crate) fn signed(key: &'k str, role: NonceRole, used: Option<Arc<str>>) -> Self {
        NonceSlot {
            key: Cow::Borrowed(key),
            role,
            used: Mutex::new(used),
        }
    }

    /// The store key of the origin and role.
    fn key(&self) -> &str {
        &self.key
    }

    /// The origin's key (`scheme://host:port`, as `OriginKey::of` builds it): the store key
    /// without its role.
    pub(crate) fn origin(&self) -> &str {
        Self::origin_of(&self.key, self.role)
    }

    /// The origin's key in a store key ([`store_key`](Self::store_key)) of `role`.
    pub(crate) fn origin_of(key: &str, role: NonceRole) -> &str {
        key.strip_suffix(role.suffix()).unwrap_or(key)
    }
}

/// The nonce for the proofs of one attempt: read from the store each time a proof is signed
/// and remembered in the request's [`NonceSlot`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProofNonce<'a> {
    nonces: &'a NonceCache,
    slot: &'a NonceSlot<'a>,
}

impl<'a> ProofNonce<'a> {
    fn new(nonces: &'a NonceCache, slot: &'a NonceSlot<'a>) -> Self {
        ProofNonce { nonces, slot }
    }

    /// The store key of the origin and role.
    fn key(&self) -> &str {
        self.slot.key()
    }

    /// The origin's key (`scheme://host:port`, as `OriginKey::of` builds it): the store key
    /// without its role.
    pub(crate) fn origin(&self) -> &str {
        self.slot.origin()
    }

    /// The nonce to sign the next proof with: the newest the origin sent. Call it once per
    /// proof (per transport attempt).
    pub(crate) fn current(&self) -> Option<Arc<str>> {
        let nonce = self.nonces.get_key(self.key());
        nonce.clone_into(&mut *crate::sync::lock(&self.slot.used));
        nonce
    }

    /// The nonce the last proof was signed with.
    #[cfg(test)]
    fn used(&self) -> Option<String> {
        crate::sync::lock(&self.slot.used)
            .as_deref()
            .map(str::to_owned)
    }

    /// Whether the last proof was signed with `nonce`.
    fn signed_with(&self, nonce: &str) -> bool {
        crate::sync::lock(&self.slot.used).as_deref() == Some(nonce)
    }
}

/// What a DPoP request (with its nonce retry, if any) ended with.
#[derive(Debug)]
pub(crate) struct Answered<R> {
    /// The last response.
    pub(crate) response: R,
    /// The error it carries, for an unsuccessful status.
    pub(crate) error: Option<Error>,
}

/// Is `err` the server asking for a (new) DPoP nonce?
pub(crate) fn is_use_dpop_nonce(err: &Error) -> bool {
    err.oauth_error()
        .is_some_and(|o| o.error == OAuthErrorCode::UseDpopNonce)
}

/// Send with the nonce retry: `send` is called for each attempt with the [`ProofNonce`] (of
/// `slot`, the request's origin and role) its proofs must read; a second attempt is made only
/// for a `use_dpop_nonce` answer bringing a nonce other than the one sent, and only when
/// `replayable()` (the request can be sent again).
///
/// With `dpop` false (a Bearer request) there is no proof: the request is sent once.
///
/// # Errors
/// Whatever `send` returns.
// A block, not an `async fn`: the arguments are kept in the future once, not copied into
// locals as well.
#[allow(clippy::manual_async_fn)]
pub(crate) fn send_with_nonce_retry<'a, R, F, Fut, P>(
    nonces: &'a NonceCache,
    slot: &'a NonceSlot<'a>,
    dpop: bool,
    replayable: P,
    mut send: F,
) -> impl Future<Output = Result<Answered<R>>> + use<'a, R, F, Fut, P>
where
    R: Answer,
    P: Fn() -> bool,
    F: FnMut(ProofNonce<'a>) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    async move {
        // The first DPoP request to an origin without a nonce goes alone; the others wait for its
        // answer (bounded) and then read the nonce it brought.
        let nonce = ProofNonce::new(nonces, slot);
        let first_use = if dpop {
            nonces.acquire_key(nonce.key()).await
        } else {
            None
        };
        // The first answer lives in this statement only: a retry does not keep it in the future.
        if let Some(answered) = {
            let response = match send(nonce).await {
                Ok(r) => r,
                Err(e) => {
                    drop(first_use);
                    return Err(e);
                }
            };
            let error = (!response.status().is_success()).then(|| response.error());
            let wants_nonce = error.as_ref().is_some_and(is_use_dpop_nonce);
            let retry = {
                let facts = response.facts();
                let fresh = facts.dpop_nonce.as_deref();
                if first_use.is_some() && fresh.is_none() && !wants_nonce {
                    nonces.settle_key(slot.key());
                }
                wants_nonce && dpop && fresh.is_some_and(|f| !nonce.signed_with(f)) && replayable()
            };
            drop(first_use);
            (!retry).then_some(Answered { response, error })
        } {
            return Ok(answered);
        }
        tracing::debug!(target: "agent_oauth", "retrying with the server's DPoP nonce");
        // Boxed: a retry is rare, and its future would otherwise double every request's.
        let response = Box::pin(send(nonce)).await?;
        let error = (!response.status().is_success()).then(|| response.error());
        Ok(Answered { response, error })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
