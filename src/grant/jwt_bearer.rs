//! The JWT bearer authorization grant (RFC 7523 §2.1): a signed JWT, issued by someone the
//! authorization server trusts, is the grant.
//!
//! Workload identity uses it with a platform-issued token (a Kubernetes service-account token, a
//! SPIFFE JWT-SVID) and often no client authentication at all ([`ClientAuth::omitted`]);
//! enterprise-managed authorization uses it with an ID-JAG from the enterprise identity provider
//! ([`IdJagIssuer`](super::IdJagIssuer)), with the client's usual authentication.
//!
//! [`ClientAuth::omitted`]: crate::ClientAuth::omitted

use super::client::OAuthClient;
use super::request::TokenParams;
use crate::assertion::AssertionSource;
use crate::error::Result;
use crate::secret::SecretString;
use crate::token::TokenSet;
use crate::transport::RetryPolicy;

/// `grant_type` of the JWT bearer grant (RFC 7523 §2.1).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

impl OAuthClient {
    /// Obtain a token with `assertion` as the grant (RFC 7523 §2.1), with `scope`, `resource`
    /// and `audience` from `params`, bound to the client's DPoP key when it has one.
    ///
    /// Only connection failures are retried: an assertion may be single-use (its `jti`), and a
    /// request the server may have processed is not sent again with it.
    ///
    /// # Errors
    /// [`Error::OAuth`](crate::Error::OAuth) (`invalid_grant` for an assertion the server
    /// refuses), transport and parse errors.
    pub async fn jwt_bearer(
        &self,
        assertion: &SecretString,
        params: &TokenParams,
    ) -> Result<TokenSet> {
        let form = vec![
            ("grant_type".to_owned(), JWT_BEARER.to_owned()),
            ("assertion".to_owned(), assertion.expose_secret().to_owned()),
        ];
        self.send_token_request(form, params, RetryPolicy::ConnectOnly, None, false)
            .await
    }

    /// [`jwt_bearer`](Self::jwt_bearer) with the current assertion of `source` (read again, or
    /// renewed, as the source decides).
    ///
    /// # Errors
    /// [`Error::Assertion`](crate::Error::Assertion) when the source has no valid assertion;
    /// as [`jwt_bearer`](Self::jwt_bearer).
    pub async fn jwt_bearer_from(
        &self,
        source: &AssertionSource,
        params: &TokenParams,
    ) -> Result<TokenSet> {
        let assertion = source.assertion().await?;
        self.jwt_bearer(&assertion, params).await
    }
}
