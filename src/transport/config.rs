//! [`TransportConfig`]: the limits and timeouts of an [`HttpTransport`](super::HttpTransport).

use std::time::Duration;

/// Limits and timeouts of an [`HttpTransport`](super::HttpTransport).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Time allowed to establish a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Time allowed for one attempt, headers and body (default 30 s). For a streamed
    /// successful response ([`HttpTransport::execute_stream`](super::HttpTransport::execute_stream)) it covers the wait for the
    /// headers only; the body is bounded by [`stream_idle_timeout`](Self::stream_idle_timeout).
    pub request_timeout: Duration,
    /// Time allowed for one operation, all attempts and waits together (default 60 s).
    ///
    /// An [`Agent`](crate::Agent) applies it to each call as a whole, not to each HTTP
    /// exchange: `send` (with discovery, token requests, nonce and token retries),
    /// `access_token`, `authorization_url` and `complete_authorization` each end with
    /// [`Error::Timeout`](crate::Error::Timeout) once it passes. (`login_device` waits for a person and is bounded by
    /// the device code's lifetime instead.)
    ///
    /// For a streamed successful response ([`HttpTransport::execute_stream`](super::HttpTransport::execute_stream)) it ends when the
    /// headers arrive: reading the body is not part of the operation.
    pub deadline: Duration,
    /// Largest response body accepted, enforced while reading (default 1 MiB). Successful
    /// responses read with [`HttpTransport::execute_stream`](super::HttpTransport::execute_stream) have no cap; their error responses
    /// keep this one.
    pub max_body_bytes: usize,
    /// Attempts per operation, the first included (default 3).
    pub max_attempts: usize,
    /// First backoff delay before jitter (default 200 ms).
    pub min_backoff: Duration,
    /// Largest backoff delay before jitter (default 5 s).
    pub max_backoff: Duration,
    /// Largest `Retry-After` honoured; a server asking for longer is not retried (default 30 s).
    pub max_retry_after: Duration,
    /// `User-Agent` sent with every request.
    pub user_agent: String,
    /// A streamed body ([`BodyStream`](super::BodyStream)) that sends nothing for this long ends with
    /// [`Error::Timeout`](crate::Error::Timeout); `None` waits for ever (default 5 minutes).
    pub stream_idle_timeout: Option<Duration>,
    pub(crate) allow_insecure_http: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
            max_body_bytes: 1024 * 1024,
            max_attempts: 3,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(30),
            user_agent: concat!("agent-oauth/", env!("CARGO_PKG_VERSION")).to_owned(),
            stream_idle_timeout: Some(Duration::from_secs(5 * 60)),
            allow_insecure_http: false,
        }
    }
}

impl TransportConfig {
    /// Allow plain `http://` URLs on any host. Loopback hosts never need this.
    ///
    /// # Security
    /// Tokens and client secrets then cross the network in clear text. For tests only; reached
    /// through [`dangerous::allow_insecure_http`](crate::dangerous::allow_insecure_http).
    pub(crate) fn set_allow_insecure_http(&mut self, allow: bool) {
        self.allow_insecure_http = allow;
    }
}
