//! Refresh token grant (RFC 6749 §6).
//!
//! This is the raw grant: one request with one refresh token. Rotation safety (one refresh per
//! grant at a time, persist before use, re-read on `invalid_grant`) lives with the grant, in
//! the session layer ([`RefreshingSource`](crate::RefreshingSource)).

use super::client::OAuthClient;
use super::request::TokenParams;
use crate::error::{Error, OAuthErrorCode, Result};
use crate::token::{RefreshToken, TokenSet};
use crate::transport::RetryPolicy;

/// `grant_type` of the refresh grant.
pub const REFRESH_TOKEN: &str = "refresh_token";

impl OAuthClient {
    /// Exchange `refresh_token` for new tokens. When the server does not return a refresh
    /// token, the old one is kept in the result (RFC 6749 §6: the client keeps using it).
    ///
    /// Retried only on connect errors: a refresh that reached the server may have rotated the
    /// token, and sending the old one again would look like reuse.
    ///
    /// # Errors
    /// [`Error::ReauthorizationRequired`] (its text names the HTTP status) when the server
    /// answers `invalid_grant` (expired, revoked or already-rotated refresh token), or any other
    /// 4xx that is not about something else (rate limits, DPoP nonces and proofs, scope,
    /// resource, client authentication): a bodyless or
    /// non-JSON 400/401 ends the refresh token too, so that it is never presented again. Other
    /// errors as they occur.
    pub async fn refresh(
        &self,
        refresh_token: &RefreshToken,
        params: &TokenParams,
    ) -> Result<TokenSet> {
        let form = vec![
            ("grant_type".to_owned(), REFRESH_TOKEN.to_owned()),
            (
                "refresh_token".to_owned(),
                refresh_token.secret().to_owned(),
            ),
        ];
        match self
            .send_token_request(form, params, RetryPolicy::ConnectOnly, None, false)
            .await
        {
            Ok(mut t) => {
                if t.refresh_token.is_none() {
                    t.refresh_token = Some(refresh_token.clone());
                }
                Ok(t)
            }
            Err(e) if ends_refresh_token(&e) => Err(Error::ReauthorizationRequired(rejection(&e))),
            Err(e) => Err(e),
        }
    }
}

/// What a rejected refresh says: the status, the OAuth error (or that there was none), the
/// request (operation and endpoint) and the server's description, already redacted of the
/// secrets the request sent and sanitized.
fn rejection(e: &Error) -> String {
    let status = e.status().unwrap_or_default();
    let what = match e {
        Error::OAuth(o) => format!("`{}`", o.error),
        _ => "no OAuth error body".to_owned(),
    };
    let by = e.context().map(|c| format!(" by {c}")).unwrap_or_default();
    let description = e
        .oauth_error()
        .and_then(|o| o.error_description.as_deref())
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    format!("refresh token rejected (HTTP {status}, {what}){by}{description}")
}

/// Whether an error answering a refresh request means the refresh token is dead.
///
/// Servers do not always answer a dead refresh token with a JSON `invalid_grant`: some send a
/// 400 or 401 with an empty or HTML body. Any 4xx ends the token, except the answers that are
/// about something else and leave the token usable: rate limiting and request timeouts (429,
/// 408), DPoP nonces and proofs, the requested scope or resource, client authentication (the
/// fix is the client's configuration, and the server did not look at the token), and codes that
/// say "later".
pub(crate) fn ends_refresh_token(e: &Error) -> bool {
    let status = match e {
        Error::OAuth(o) => {
            let about_something_else = matches!(
                o.error,
                OAuthErrorCode::UseDpopNonce
                    | OAuthErrorCode::InvalidDpopProof
                    | OAuthErrorCode::InvalidScope
                    | OAuthErrorCode::InvalidTarget
                    | OAuthErrorCode::InvalidClient
                    | OAuthErrorCode::SlowDown
                    | OAuthErrorCode::TemporarilyUnavailable
                    | OAuthErrorCode::ServerError
                    | OAuthErrorCode::AuthorizationPending
            );
            if about_something_else {
                return false;
            }
            o.status
        }
        Error::Http { status, .. } => *status,
        _ => return false,
    };
    (400..500).contains(&status) && status != 408 && status != 429
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16) -> Error {
        Error::Http {
            status,
            body: String::new(),
            retry_after: None,
            context: None,
        }
    }

    #[test]
    fn refresh_dead_token_statuses() {
        for s in [400, 401, 403, 404, 410] {
            assert!(ends_refresh_token(&http(s)), "{s}");
        }
        for s in [408, 429, 500, 503, 302] {
            assert!(!ends_refresh_token(&http(s)), "{s}");
        }
        assert!(!ends_refresh_token(&Error::config("x")));
    }
}
