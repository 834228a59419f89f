//! One protected-call attempt: authorization headers, the nonce retry, classification of the
//! answer and rejection events; and the deadline that bounds a whole call.

use http::{HeaderMap, HeaderValue, Method};
use url::Url;

use crate::dpop::{ath, DpopKey, NonceCache};
use crate::error::{Error, OAuthError, OAuthErrorCode, Result};
use crate::event::{AgentEvent, EventHook};
use crate::token::{TokenSet, TokenType};
use crate::transport::{oauth_error, HttpResponse, HttpTransport};

pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// How one authorized attempt at a resource ended.
pub(crate) enum Outcome {
    /// A response that is not an OAuth rejection (success or any other status).
    Done(HttpResponse),
    /// 401: the token was rejected (after the nonce retry, if any).
    Unauthorized(Error),
    /// 403 `insufficient_scope`.
    InsufficientScope(Error),
    /// 401 with an error code other than `invalid_token`: a new token would not help.
    Refused(Error),
}

/// Send with `token`, retrying once with the resource's new DPoP nonce (RFC 9449 §9: a 401, or
/// a 400 from some resources, only when the nonce changed), remembering nonces from every
/// response, and classifying the result. Rejections are reported as audit events.
pub(crate) async fn attempt<F, Fut>(
    nonces: &NonceCache,
    events: Option<&EventHook>,
    url: &Url,
    token: &TokenSet,
    send: F,
) -> Result<Outcome>
where
    F: Fn(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<HttpResponse>>,
{
    let dpop = token.token_type == TokenType::Dpop;
    // The first DPoP request to an origin without a nonce goes alone; the others wait for its
    // answer (bounded) and use the nonce it brings.
    let (nonce, first_use) = if dpop {
        nonces.acquire(url).await
    } else {
        (nonces.get(url), None)
    };
    let sent = send(nonce.clone()).await;
    let mut resp = match sent {
        Ok(r) => r,
        Err(e) => {
            drop(first_use);
            return Err(e);
        }
    };
    let fresh = nonces.update_from_headers(url, resp.headers());
    // The resource may echo the token it was sent: never let it into the error.
    let mut sent = crate::secret::SentSecrets::new();
    sent.add(token.access_token.secret());
    let mut err = oauth_error(&resp).redacted(&sent);
    let wants_nonce = !resp.status().is_success()
        && err
            .oauth_error()
            .is_some_and(|o| o.error == OAuthErrorCode::UseDpopNonce);
    if first_use.is_some() && fresh.is_none() && !wants_nonce {
        nonces.settle(url);
    }
    drop(first_use);
    if resp.status().is_success() {
        return Ok(Outcome::Done(resp));
    }
    if wants_nonce && token.token_type == TokenType::Dpop && fresh.is_some() && fresh != nonce {
        resp = send(fresh).await?;
        nonces.update_from_headers(url, resp.headers());
        if resp.status().is_success() {
            return Ok(Outcome::Done(resp));
        }
        err = oauth_error(&resp).redacted(&sent);
    }
    let status = resp.status();
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
        let err = ensure_oauth(err, status.as_u16(), OAuthErrorCode::InvalidToken);
        // Only a rejected token is worth renewing: `invalid_token`, or a 401 that names no
        // error. Anything else (`invalid_request`, a nonce the resource keeps refusing, ...)
        // would fail the same way with a new token.
        return Ok(match code {
            None | Some(OAuthErrorCode::InvalidToken) => Outcome::Unauthorized(err),
            Some(_) => Outcome::Refused(err),
        });
    }
    if status == http::StatusCode::FORBIDDEN && code == Some(OAuthErrorCode::InsufficientScope) {
        rejected("insufficient_scope");
        return Ok(Outcome::InsufficientScope(err));
    }
    Ok(Outcome::Done(resp))
}

/// Set `Authorization` and, for a DPoP token, a `DPoP` proof signed with `key` (the agent's,
/// or a child agent's) on `headers`.
pub(crate) fn authorize_headers_with(
    transport: &HttpTransport,
    key: Option<&DpopKey>,
    headers: &mut HeaderMap,
    method: &Method,
    url: &Url,
    token: &TokenSet,
    nonce: Option<&str>,
) -> Result<()> {
    let scheme = match token.token_type {
        TokenType::Dpop if key.is_none() => {
            // Without a proof the resource must refuse it (RFC 9449 §7.1); never send it bare.
            return Err(Error::config(
                "a DPoP token cannot be sent without a DPoP key",
            ));
        }
        TokenType::Dpop => "DPoP",
        _ => "Bearer",
    };
    let mut auth = HeaderValue::from_str(&format!("{scheme} {}", token.access_token.secret()))
        .map_err(|_| Error::invalid("access token is not a valid header value"))?;
    auth.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, auth);
    if let (TokenType::Dpop, Some(key)) = (&token.token_type, key) {
        let iat = crate::clock::unix_secs(transport.server_time(url));
        let proof = key.proof(
            method.as_str(),
            url,
            iat,
            nonce,
            Some(&ath(token.access_token.secret())),
        )?;
        let v = HeaderValue::from_str(&proof)
            .map_err(|_| Error::Crypto("DPoP proof is not a header value".into()))?;
        headers.insert("dpop", v);
    }
    Ok(())
}

/// Run one user-visible call under the transport's [`deadline`](TransportConfig::deadline):
/// discovery, token requests, nonce and token retries together, not each HTTP exchange alone.
///
/// Token fetches run in the cache's own task, so a call that times out never cancels a refresh
/// midway (a rotated refresh token is still stored).
pub(crate) async fn within_deadline<T>(
    transport: &HttpTransport,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let deadline = transport.config().deadline;
    match tokio::time::timeout(deadline, call).await {
        Ok(r) => r,
        Err(_) => Err(Error::Timeout(deadline)),
    }
}

pub(crate) fn ensure_oauth(err: Error, status: u16, default: OAuthErrorCode) -> Error {
    match err {
        Error::OAuth(_) => err,
        _ => OAuthError::new(default, status).into(),
    }
}
