//! [`Session`]: what a protected call needs from whoever holds the tokens (the agent, a child
//! agent; the middleware goes through the agent's), and [`protected_call`], the one loop every
//! protected request runs: token, authorized attempt with the nonce retry, and the holder's
//! answer to a rejection (renew once, ask for more scope, or stop).

use std::future::Future;
use std::sync::Arc;

use http::{HeaderMap, Method};
use url::Url;

use super::attempt::{attempt, Outcome, Rejection};
use crate::cache::{BoxFuture, CachedToken};
use crate::dpop::{Answer, DpopKey, NonceCache, NonceSlot, ProofNonce};
use crate::error::{Error, Result};
use crate::event::EventHook;
use crate::token::TokenType;
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

    /// The token for the call's next attempt, as the cache holds it (shared, with its request
    /// material built once: see [`CachedToken`]).
    fn token<'a>(&'a self, call: &'a mut Self::Call) -> BoxFuture<'a, Result<Arc<CachedToken>>>;

    /// The call's token when the cache holds a usable one, without waiting (the hit path: no
    /// future to box). `None` sends the call to [`token`](Self::token).
    fn cached_token(&self, _call: &mut Self::Call) -> Option<Arc<CachedToken>> {
        None
    }

    /// The resource refused the token: prepare the call for another attempt (invalidate the
    /// token, widen the scope) and return true, or return false to give the answer back.
    fn retry_after(&self, call: &mut Self::Call, rejection: Rejection, error: &Error) -> bool;

    /// Set `Authorization` and, for a DPoP token, a proof signed with [`dpop_key`](Self::dpop_key)
    /// carrying the attempt's current nonce (read from `nonce` now) on `headers`. A DPoP token
    /// without a key is refused, never sent bare.
    fn authorize(
        &self,
        headers: &mut HeaderMap,
        method: &Method,
        url: &Url,
        token: &CachedToken,
        nonce: Option<&ProofNonce<'_>>,
    ) -> Result<()> {
        // The attempt's nonce store key names the origin already: no key to build again.
        let origin = nonce.map(ProofNonce::origin);
        let dpop = token.token().token_type == TokenType::Dpop;
        let current = if dpop {
            nonce.and_then(ProofNonce::current)
        } else {
            None
        };
        self.authorize_with(headers, method, url, token, origin, current.as_deref())
    }

    /// [`authorize`](Self::authorize) with the nonce read already: `nonce` is what a proof
    /// carries (the origin's current one), `origin` the key of `url`'s origin
    /// (`OriginKey::of`) when the caller has it.
    fn authorize_with(
        &self,
        headers: &mut HeaderMap,
        method: &Method,
        url: &Url,
        token: &CachedToken,
        origin: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<()> {
        let key = self.dpop_key();
        let dpop = token.token().token_type == TokenType::Dpop;
        if dpop && key.is_none() {
            // Without a proof the resource must refuse it (RFC 9449 §7.1); never send it bare.
            return Err(Error::config(
                "a DPoP token cannot be sent without a DPoP key",
            ));
        }
        headers.insert(http::header::AUTHORIZATION, token.authorization()?);
        if let (true, Some(key)) = (dpop, key) {
            let now = match origin {
                Some(o) => self.transport().server_time_at(o),
                None => self.transport().server_time(url),
            };
            let iat = crate::clock::unix_secs(now);
            let v = key.proof_header(method.as_str(), url, iat, nonce, Some(token.ath()))?;
            headers.insert(crate::dpop::DPOP_HEADER, v);
        }
        Ok(())
    }
}

/// Run a protected call: for each token the session gives, one [`attempt`] (the shared nonce
/// retry inside), then the session's answer to a rejection. Retries happen only while
/// `replayable()` (a request whose body cannot be replayed is sent once).
///
/// `send` sends one attempt with the given token; every proof it signs must read the nonce
/// from the [`ProofNonce`] at signing time. `slot` is the call's, owned by the caller (for
/// `url`'s origin and the resource role): the attempts share it. `first` is the token of a
/// first attempt the caller sent already, before the loop (its `send` answers the loop's
/// first attempt with that attempt's response): the loop's first attempt is that token's, not
/// the one the cache holds by then.
///
/// # Errors
/// Token errors and whatever `send` returns; rejections are [`Outcome::Rejected`].
// A block, not an `async fn`: the arguments are kept in the future once, not copied into
// locals as well (the future of every protected call, boxed per request by the middleware).
#[allow(clippy::manual_async_fn)]
pub(crate) fn protected_call<'a, S, R, F, Fut>(
    session: &'a S,
    mut call: S::Call,
    url: &'a Url,
    slot: &'a NonceSlot<'a>,
    replayable: impl Fn() -> bool + 'a,
    mut first: Option<Arc<CachedToken>>,
    mut send: F,
) -> impl Future<Output = Result<Outcome<R>>> + 'a
where
    S: Session,
    R: Answer + 'a,
    F: FnMut(Arc<CachedToken>, ProofNonce<'a>) -> Fut + 'a,
    Fut: Future<Output = Result<R>> + 'a,
{
    async move {
        loop {
            // The cache is asked even for a first token given: that binds the call to its
            // cache entry, which a rejection renews.
            let hit = session.cached_token(&mut call);
            let token = match first.take().or(hit) {
                Some(token) => token,
                None => session.token(&mut call).await?,
            };
            let outcome = attempt(
                session.nonces(),
                slot,
                session.events(),
                url,
                token.token(),
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
}
