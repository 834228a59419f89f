//! [`Session`]: what a protected call needs from whoever holds the tokens (the agent, a child
//! agent; the middleware goes through the agent's), and [`protected_call`], the one loop every
//! protected request runs: token, authorized attempt with the nonce retry, and the holder's
//! answer to a rejection (renew once, ask for more scope, or stop).

use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, Method};
use url::Url;

use super::attempt::{attempt, authorize_headers_with, Outcome, Rejection};
use crate::cache::BoxFuture;
use crate::dpop::{Answer, DpopKey, NonceCache, ProofNonce};
use crate::error::{Error, Result};
use crate::event::EventHook;
use crate::token::TokenSet;
use crate::transport::HttpTransport;

/// A holder of tokens that can make protected calls.
///
/// Per-call state lives in [`Call`](Self::Call), not in the holder: which resource the call is
/// for, the scope asked, what was already retried, and (for a holder registered at several
/// authorization servers) which issuer's registration serves it. The holder itself only
/// answers the questions below, so a holder with per-issuer state needs no other loop.
pub(crate) trait Session: Send + Sync {
    /// What one call tracks between its attempts.
    type Call: Send;

    /// The transport requests go through (its clock offsets time the proofs).
    fn transport(&self) -> &HttpTransport;

    /// The DPoP nonce store.
    fn nonces(&self) -> &NonceCache;

    /// Where rejection events go.
    fn events(&self) -> Option<&EventHook>;

    /// The key that signs this holder's proofs.
    fn dpop_key(&self) -> Option<&DpopKey>;

    /// The token for the call's next attempt.
    fn token<'a>(&'a self, call: &'a mut Self::Call) -> BoxFuture<'a, Result<TokenSet>>;

    /// The resource refused the token: prepare the call for another attempt (invalidate the
    /// token, widen the scope) and return true, or return false to give the answer back.
    fn retry_after(&self, call: &mut Self::Call, rejection: Rejection, error: &Error) -> bool;

    /// Set `Authorization` and, for a DPoP token, a proof with `nonce` on `headers`.
    fn authorize(
        &self,
        headers: &mut HeaderMap,
        method: &Method,
        url: &Url,
        token: &TokenSet,
        nonce: Option<&str>,
    ) -> Result<()> {
        authorize_headers_with(
            self.transport(),
            self.dpop_key(),
            headers,
            method,
            url,
            token,
            nonce,
        )
    }
}

/// Run a protected call: for each token the session gives, one [`attempt`] (the shared nonce
/// retry inside), then the session's answer to a rejection. Retries happen only while
/// `replayable()` (a request whose body cannot be replayed is sent once).
///
/// `send` sends one attempt with the given token; every proof it signs must read the nonce
/// from the [`ProofNonce`] at signing time.
///
/// # Errors
/// Token errors and whatever `send` returns; rejections are [`Outcome::Rejected`].
pub(crate) async fn protected_call<'a, S, R, F, Fut>(
    session: &'a S,
    mut call: S::Call,
    url: &'a Url,
    replayable: impl Fn() -> bool,
    mut send: F,
) -> Result<Outcome<R>>
where
    S: Session,
    R: Answer,
    F: FnMut(Arc<TokenSet>, ProofNonce<'a>) -> Fut,
    Fut: Future<Output = Result<R>>,
{
    loop {
        let token = Arc::new(session.token(&mut call).await?);
        let outcome = attempt(
            session.nonces(),
            session.events(),
            url,
            &token,
            &replayable,
            |nonce| send(token.clone(), nonce),
        )
        .await?;
        match outcome {
            Outcome::Rejected {
                rejection,
                ref error,
                ..
            } if replayable() && session.retry_after(&mut call, rejection, error) => {}
            other => return Ok(other),
        }
    }
}
