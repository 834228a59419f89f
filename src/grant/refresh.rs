//! Refresh token grant (RFC 6749 §6).
//!
//! This is the raw grant: one request with one refresh token. Rotation safety (one refresh per
//! grant at a time, persist before use, re-read on `invalid_grant`) lives in the token cache.

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
    /// [`Error::ReauthorizationRequired`] when the server answers `invalid_grant` (expired,
    /// revoked or already-rotated refresh token); other errors as they occur.
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
            Err(Error::OAuth(e)) if e.error == OAuthErrorCode::InvalidGrant => {
                Err(Error::ReauthorizationRequired(format!(
                    "refresh token rejected{}: {}",
                    e.context
                        .as_ref()
                        .map(|c| format!(" by {c}"))
                        .unwrap_or_default(),
                    e.error_description.as_deref().unwrap_or("invalid_grant")
                )))
            }
            Err(e) => Err(e),
        }
    }
}
