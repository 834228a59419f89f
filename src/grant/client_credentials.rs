//! Client credentials grant (RFC 6749 §4.4).

use super::client::OAuthClient;
use super::request::TokenParams;
use crate::error::Result;
use crate::token::TokenSet;
use crate::transport::RetryPolicy;

/// `grant_type` of the client credentials grant.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";

impl OAuthClient {
    /// Obtain a token for the client itself (RFC 6749 §4.4). Idempotent, so transient failures
    /// are retried.
    ///
    /// # Errors
    /// [`Error::OAuth`](crate::Error::OAuth) for an error response; transport and parse errors.
    pub async fn client_credentials(&self, params: &TokenParams) -> Result<TokenSet> {
        let form = vec![("grant_type".to_owned(), CLIENT_CREDENTIALS.to_owned())];
        self.send_token_request(form, params, RetryPolicy::Idempotent, None, false)
            .await
    }
}
