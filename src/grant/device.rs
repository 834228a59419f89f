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
    /// Where the user enters it: an absolute `https` URL (`http` only on loopback) without
    /// control characters, checked before it is handed out.
    pub verification_uri: String,
    /// A URI that includes the user code, if offered; checked like
    /// [`verification_uri`](Self::verification_uri).
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

/// Check a URL from the device authorization response before it reaches a person: absolute,
/// `https` (or `http` on a loopback host), no user information (`https://trusted@evil/`), and no
/// control or bidirectional-formatting characters anywhere in the raw text (the URL parser would
/// silently drop tabs and line breaks, so the raw string is checked first).
fn check_display_uri(field: &str, value: &str) -> Result<()> {
    let refuse = |reason: &str| {
        let shown: String = crate::error::sanitize(value, 200)
            .chars()
            .filter(|c| !is_bidi_control(*c))
            .collect();
        Err(Error::invalid(format!(
            "device authorization response `{field}` {reason}: `{shown}`"
        )))
    };
    if value.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return refuse("contains control or bidirectional-formatting characters");
    }
    let Ok(url) = url::Url::parse(value) else {
        return refuse("is not an absolute URL");
    };
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "http" if crate::transport::is_loopback(&url) => {}
        "http" => return refuse("uses plain http off loopback"),
        _ => return refuse("is not an https URL"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("has user information");
    }
    Ok(())
}

/// Unicode bidirectional formatting characters (which can make a URL display as another).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

impl OAuthClient {
    /// Ask for a device code (RFC 8628 §3.1).
    ///
    /// # Errors
    /// [`Error::Discovery`] when the server has no device endpoint; OAuth and parse errors;
    /// [`Error::InvalidResponse`] when `verification_uri` or `verification_uri_complete` is not
    /// an absolute `https` URL (`http` only on loopback), has user information, or contains
    /// control or bidirectional-formatting characters.
    ///
    /// # Security
    /// The URLs are meant to be shown to a person or opened in a browser: a hostile server could
    /// otherwise send terminal escape sequences, line breaks that forge log lines, or a
    /// `javascript:` URL.
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
        check_display_uri("verification_uri", &raw.verification_uri)?;
        if let Some(complete) = &raw.verification_uri_complete {
            check_display_uri("verification_uri_complete", complete)?;
        }
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
        // `expires_in` is a public field: a caller's `Duration::MAX` must not overflow.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(auth.expires_in)
            .unwrap_or_else(|| now + Duration::from_secs(24 * 3600));
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
                    OAuthErrorCode::SlowDown => {
                        interval = interval.saturating_add(Duration::from_secs(5));
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardening_07_display_uri_checks() {
        let ok = [
            "https://as.example/device",
            "https://as.example/device?user_code=AB-CD",
            "https://xn--bcher-kva.example/d",
            "http://127.0.0.1:9/device",
            "http://[::1]/device",
            "http://localhost/device",
        ];
        for u in ok {
            assert!(check_display_uri("verification_uri", u).is_ok(), "{u}");
        }
        let bad = [
            "https://as.example/\u{1b}[2J",
            "https://as.example/\u{7}",
            "https://as.example/\r\nx",
            "https://as.example/\u{85}",
            "https://as.example/\u{2067}x",
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "file:///etc/passwd",
            "http://as.example/",
            "//as.example/device",
            "",
            "https://user:pw@as.example/",
        ];
        for u in bad {
            let err = check_display_uri("verification_uri", u).expect_err(u);
            assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
            assert!(!err.to_string().chars().any(char::is_control), "{err}");
        }
    }
}
