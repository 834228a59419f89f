//! Device authorization grant (RFC 8628), for agents that cannot open a browser themselves.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::client::OAuthClient;
use super::request::TokenParams;
use crate::discovery::Endpoint;
use crate::error::{Error, OAuthErrorCode, Result};
use crate::secret::SecretString;
use crate::token::TokenSet;
use crate::transport::{json_body, RetryPolicy};

/// `grant_type` of the device grant (RFC 8628 §3.4).
pub const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The device authorization response (RFC 8628 §3.2).
#[derive(Clone)]
#[non_exhaustive]
pub struct DeviceAuthorization {
    /// The device verification code (secret).
    pub device_code: SecretString,
    /// The code the user enters.
    pub user_code: String,
    /// Where the user enters it.
    pub verification_uri: String,
    /// A URI that includes the user code, if offered.
    pub verification_uri_complete: Option<String>,
    /// Lifetime of the codes.
    pub expires_in: Duration,
    /// Minimum polling interval (default 5 s).
    pub interval: Duration,
    /// The parameters requested, reused when polling.
    pub params: TokenParams,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Raw {
    device_code: String,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: u64,
    interval: Option<u64>,
}

impl OAuthClient {
    /// Ask for a device code (RFC 8628 §3.1).
    ///
    /// # Errors
    /// [`Error::Discovery`] when the server has no device endpoint; OAuth and parse errors.
    pub async fn device_authorization(&self, params: &TokenParams) -> Result<DeviceAuthorization> {
        let mut form = Vec::new();
        params.apply_to(&mut form);
        let raw: Raw = self
            .call(
                super::client::EndpointCall {
                    endpoint: Endpoint::DeviceAuthorization,
                    operation: "device authorization request".to_owned(),
                    params: form,
                    policy: RetryPolicy::Idempotent,
                    dpop_override: None,
                    authenticate: true,
                },
                |resp| json_body(resp, "device authorization response"),
            )
            .await?;
        Ok(DeviceAuthorization {
            device_code: SecretString::new(raw.device_code),
            user_code: crate::error::sanitize(&raw.user_code, 64),
            verification_uri: raw.verification_uri,
            verification_uri_complete: raw.verification_uri_complete,
            expires_in: Duration::from_secs(raw.expires_in.min(24 * 3600)),
            interval: Duration::from_secs(raw.interval.unwrap_or(5).clamp(1, 300)),
            params: params.clone(),
        })
    }

    /// Poll the token endpoint until the user approves (RFC 8628 §3.4–3.5): waits `interval`
    /// between polls, adds 5 s on `slow_down`, keeps going on `authorization_pending`, and stops
    /// on `access_denied`, `expired_token` or when the codes expire.
    ///
    /// # Errors
    /// [`Error::OAuth`] with `access_denied` or `expired_token`; other errors as they occur.
    pub async fn poll_device_token(&self, auth: &DeviceAuthorization) -> Result<TokenSet> {
        let deadline = tokio::time::Instant::now() + auth.expires_in;
        let mut interval = auth.interval;
        loop {
            tokio::time::sleep(interval).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(
                    crate::error::OAuthError::new(OAuthErrorCode::ExpiredToken, 400).into(),
                );
            }
            let form = vec![
                ("grant_type".to_owned(), DEVICE_CODE.to_owned()),
                (
                    "device_code".to_owned(),
                    auth.device_code.expose_secret().to_owned(),
                ),
            ];
            match self
                .send_token_request(form, &auth.params, RetryPolicy::Idempotent, None, false)
                .await
            {
                Ok(t) => return Ok(t),
                Err(Error::OAuth(e)) => match e.error {
                    OAuthErrorCode::AuthorizationPending => {}
                    OAuthErrorCode::SlowDown => interval += Duration::from_secs(5),
                    _ => return Err(Error::OAuth(e)),
                },
                Err(e) => return Err(e),
            }
        }
    }

    /// The whole device flow: get a code, hand it to `show` (print it, send it to the operator),
    /// then poll until approval.
    ///
    /// # Errors
    /// As [`device_authorization`](Self::device_authorization) and
    /// [`poll_device_token`](Self::poll_device_token).
    pub async fn device_flow(
        &self,
        params: &TokenParams,
        show: impl FnOnce(&DeviceAuthorization),
    ) -> Result<TokenSet> {
        let auth = self.device_authorization(params).await?;
        show(&auth);
        self.poll_device_token(&auth).await
    }
}
