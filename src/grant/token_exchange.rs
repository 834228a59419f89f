//! OAuth 2.0 Token Exchange (RFC 8693).

use std::fmt;

use super::client::OAuthClient;
use super::request::TokenParams;
use crate::dpop::DpopKey;
use crate::error::Result;
use crate::secret::SecretString;
use crate::token::TokenSet;
use crate::transport::RetryPolicy;

/// `grant_type` of token exchange (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token type identifier of an access token (RFC 8693 §3).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Token type identifier of a refresh token.
pub const REFRESH_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:refresh_token";
/// Token type identifier of a JWT.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Token type identifier of an ID token.
pub const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";

/// A token exchange request (RFC 8693 §2.1).
#[derive(Clone)]
#[non_exhaustive]
pub struct TokenExchangeRequest {
    /// The token representing the party on whose behalf the request is made.
    pub subject_token: SecretString,
    /// Its type identifier.
    pub subject_token_type: String,
    /// The token representing the acting party, if any.
    pub actor_token: Option<SecretString>,
    /// Its type identifier (required with an actor token).
    pub actor_token_type: Option<String>,
    /// The type of token wanted.
    pub requested_token_type: Option<String>,
    /// `scope`, `resource`, `audience`, extra parameters.
    pub params: TokenParams,
}

impl fmt::Debug for TokenExchangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenExchangeRequest")
            .field("subject_token_type", &self.subject_token_type)
            .field("actor_token_type", &self.actor_token_type)
            .field("requested_token_type", &self.requested_token_type)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl TokenExchangeRequest {
    /// Exchange an access token.
    pub fn new(subject_token: impl Into<SecretString>) -> Self {
        TokenExchangeRequest {
            subject_token: subject_token.into(),
            subject_token_type: ACCESS_TOKEN_TYPE.to_owned(),
            actor_token: None,
            actor_token_type: None,
            requested_token_type: None,
            params: TokenParams::new(),
        }
    }

    /// Set the subject token type.
    pub fn subject_token_type(mut self, t: impl Into<String>) -> Self {
        self.subject_token_type = t.into();
        self
    }

    /// Add an actor token and its type.
    pub fn actor(mut self, token: impl Into<SecretString>, token_type: impl Into<String>) -> Self {
        self.actor_token = Some(token.into());
        self.actor_token_type = Some(token_type.into());
        self
    }

    /// Ask for a token type.
    pub fn requested_token_type(mut self, t: impl Into<String>) -> Self {
        self.requested_token_type = Some(t.into());
        self
    }

    /// Set scope, resources, audiences and extra parameters.
    pub fn params(mut self, params: TokenParams) -> Self {
        self.params = params;
        self
    }

    pub(crate) fn form(&self) -> Vec<(String, String)> {
        let mut f = vec![
            ("grant_type".to_owned(), TOKEN_EXCHANGE.to_owned()),
            (
                "subject_token".to_owned(),
                self.subject_token.expose_secret().to_owned(),
            ),
            (
                "subject_token_type".to_owned(),
                self.subject_token_type.clone(),
            ),
        ];
        if let Some(a) = &self.actor_token {
            f.push(("actor_token".to_owned(), a.expose_secret().to_owned()));
            f.push((
                "actor_token_type".to_owned(),
                self.actor_token_type
                    .clone()
                    .unwrap_or_else(|| ACCESS_TOKEN_TYPE.to_owned()),
            ));
        }
        if let Some(t) = &self.requested_token_type {
            f.push(("requested_token_type".to_owned(), t.clone()));
        }
        f
    }
}

impl OAuthClient {
    /// Exchange a token (RFC 8693 §2). The response must carry `issued_token_type`; `token_type`
    /// may be `N_A`; no refresh token is assumed. With `dpop_key`, the proof is signed with that
    /// key instead of the client's, so the issued token is bound to it (a child agent's key).
    ///
    /// # Errors
    /// [`Error::OAuth`](crate::Error::OAuth) (`invalid_request`, `invalid_target`, ...), parse errors.
    pub async fn token_exchange(
        &self,
        request: &TokenExchangeRequest,
        dpop_key: Option<&DpopKey>,
    ) -> Result<TokenSet> {
        self.send_token_request(
            request.form(),
            &request.params,
            RetryPolicy::Idempotent,
            dpop_key,
            true,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_exchange_form_members() {
        let r = TokenExchangeRequest::new("subj")
            .actor("act", JWT_TOKEN_TYPE)
            .requested_token_type(ACCESS_TOKEN_TYPE)
            .params(TokenParams::new().scope("read").audience("svc"));
        let f = r.form();
        let get = |k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("grant_type"), Some(TOKEN_EXCHANGE));
        assert_eq!(get("subject_token"), Some("subj"));
        assert_eq!(get("subject_token_type"), Some(ACCESS_TOKEN_TYPE));
        assert_eq!(get("actor_token"), Some("act"));
        assert_eq!(get("actor_token_type"), Some(JWT_TOKEN_TYPE));
        assert_eq!(get("requested_token_type"), Some(ACCESS_TOKEN_TYPE));
        assert!(!format!("{r:?}").contains("subj\""));
    }
}
