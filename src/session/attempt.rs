//! One protected-call attempt: the shared nonce retry, classification of the
//! answer and rejection events; and the deadline that bounds a whole call.

use std::future::Future;
use std::time::Duration;

use http::Method;
use url::Url;

use crate::deadline::Within;
use crate::dpop::{send_with_nonce_retry, Answer, Answered, NonceCache, NonceSlot, ProofNonce};
use crate::error::{Error, OAuthError, OAuthErrorCode, Result};
use crate::event::{AgentEvent, EventHook};
use crate::token::{TokenSet, TokenType};
use crate::transport::HttpTransport;

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Why a resource refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// 401 `invalid_token` or a 401 naming no error: a new token may cure it.
    Unauthorized,
    /// 403 `insufficient_scope`: a token with more scope may cure it.
    InsufficientScope,
    /// 401 with another error code (`invalid_request`, a nonce refused again, ...): a new
    /// token would fail the same way.
    Refused,
}

/// How one authorized attempt at a resource ended.
#[derive(Debug)]
pub(crate) enum Outcome<R> {
    /// A response that is not an OAuth rejection (success or any other status).
    Done(R),
    /// The token was rejected (after the nonce retry, if any).
    Rejected {
        /// Why.
        rejection: Rejection,
        /// The error, the sent token redacted from it.
        error: Error,
        /// The response (handed back as it is by the middleware).
        #[cfg_attr(not(feature = "middleware"), allow(dead_code))]
        response: R,
    },
}

/// Send with `token`, with the shared DPoP nonce retry ([`send_with_nonce_retry`]), and
/// classify the answer. Rejections are reported as audit events.
///
/// `send` builds and sends the request for one attempt, signing every proof with the nonce
/// [`ProofNonce::current`] gives at that moment (transport retries included); `slot` is the
/// request's (for its origin and the resource role).
// A block, not an `async fn`: the arguments are kept in the future once, not copied into
// locals as well.
#[allow(clippy::manual_async_fn)]
pub(crate) fn attempt<'a, 't, R, F, Fut, P>(
    nonces: &'a NonceCache,
    slot: &'a NonceSlot<'a>,
    events: Option<&'t EventHook>,
    url: &'a Url,
    token: &'t TokenSet,
    replayable: P,
    send: F,
) -> impl Future<Output = Result<Outcome<R>>> + use<'a, 't, R, F, Fut, P>
where
    'a: 't,
    R: Answer,
    P: Fn() -> bool + 't,
    F: FnMut(ProofNonce<'a>) -> Fut + 't,
    Fut: Future<Output = Result<R>>,
{
    async move {
        let dpop = token.token_type == TokenType::Dpop;
        let Answered { response, error } =
            send_with_nonce_retry(nonces, slot, dpop, replayable, send).await?;
        let Some(err) = error else {
            return Ok(Outcome::Done(response));
        };
        // The resource may echo the token it was sent: never let it into the error.
        let mut sent = crate::secret::SentSecrets::new();
        sent.add(token.access_token.secret());
        let err = err.redacted(&sent);
        let status = response.status();
        let code = err.oauth_error().map(|o| o.error.clone());
        let rejected = |code: &str| {
            EventHook::emit(
                events,
                AgentEvent::TokenRejected {
                    origin: url.origin().ascii_serialization(),
                    error: code.to_owned(),
                    fingerprint: token.access_token.fingerprint(),
                },
            );
        };
        if status == http::StatusCode::UNAUTHORIZED {
            rejected(code.as_ref().map_or("unauthorized", |c| c.as_str()));
            let error = ensure_oauth(err, status.as_u16(), OAuthErrorCode::InvalidToken);
            // Only a rejected token is worth renewing: `invalid_token`, or a 401 that names no
            // error. Anything else (`invalid_request`, a nonce the resource keeps refusing, ...)
            // would fail the same way with a new token.
            let rejection = match code {
                None | Some(OAuthErrorCode::InvalidToken) => Rejection::Unauthorized,
                Some(_) => Rejection::Refused,
            };
            return Ok(Outcome::Rejected {
                rejection,
                error,
                response,
            });
        }
        if status == http::StatusCode::FORBIDDEN && code == Some(OAuthErrorCode::InsufficientScope)
        {
            rejected("insufficient_scope");
            return Ok(Outcome::Rejected {
                rejection: Rejection::InsufficientScope,
                error: err,
                response,
            });
        }
        Ok(Outcome::Done(response))
    }
}

/// Run one user-visible call under the transport's [`deadline`](TransportConfig::deadline):
/// discovery, token requests, nonce and token retries together, not each HTTP exchange alone.
///
/// Token fetches run in the cache's own task, so a call that times out never cancels a refresh
/// midway (a rotated refresh token is still stored).
pub(crate) fn within_deadline<T, F>(
    transport: &HttpTransport,
    call: F,
) -> Within<F, fn(Duration) -> Error>
where
    F: Future<Output = Result<T>>,
{
    Within::new(
        transport.config().deadline,
        call,
        Error::Timeout as fn(_) -> _,
    )
}

pub(crate) fn ensure_oauth(err: Error, status: u16, default: OAuthErrorCode) -> Error {
    match err {
        Error::OAuth(_) => err,
        _ => OAuthError::new(default, status).into(),
    }
}
