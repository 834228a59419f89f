//! HTTP transport: the only module that sends.
//!
//! One [`HttpTransport`] per agent wraps a reqwest client (rustls, redirects off) and adds what
//! an OAuth client needs around every exchange:
//!
//! - connect and per-attempt timeouts, and an overall deadline per operation;
//! - retries with exponential backoff and full jitter (backon), only for connect errors, 5xx and
//!   429, and only when the request's [`RetryPolicy`] allows; `Retry-After` (seconds or
//!   HTTP-date) is honoured up to a cap;
//! - response bodies capped while reading (default 1 MiB), or, for a protected request's
//!   successful response, handed over unread ([`HttpTransport::execute_stream`]) as a
//!   [`BodyStream`] with no cap, readable as Server-Sent Events ([`SseStream`], [`SseParser`],
//!   WHATWG HTML §9.2) and ended by an idle timeout;
//! - HTTPS required except for loopback hosts, unless the caller opted out under
//!   [`dangerous`](crate::dangerous);
//! - the server's `Date` header recorded into a per-origin clock offset estimate.
//!
//! Requests are built by sans-IO protocol code as `http::Request<Vec<u8>>` and responses come back
//! as `http::Response<Bytes>`, so protocol steps can be unit-tested without a network.

pub(crate) mod client;
mod config;
mod form;
pub(crate) mod origin;
mod outgoing;
mod response;
mod retry;
mod secure_url;
mod sse;
mod stream;
#[cfg(feature = "mtls")]
pub(crate) mod tls;

pub use crate::clock::ClockOffset;
pub use crate::error::TransportErrorKind;
pub(crate) use client::{into_streaming, BodyMode, HttpTransport, Outgoing, TransportConfig};
pub use form::FormRequest;
pub(crate) use response::{expect_json, json_body, oauth_error};
pub(crate) use retry::parse_retry_after;
pub use retry::RetryPolicy;
pub(crate) use secure_url::is_loopback;
pub(crate) use sse::fuzz as fuzz_sse;
pub use sse::{SseEvent, SseParser};
pub use stream::{BodyStream, SseStream, StreamingResponse};
#[cfg(feature = "mtls")]
pub use tls::{cnf_x5t_s256, KeyFormat};

/// A response as the transport returns it: status, headers and the whole (capped) body.
pub type HttpResponse = http::Response<bytes::Bytes>;
/// A prepared request: method, URL, headers and body.
pub type HttpRequest = http::Request<Vec<u8>>;
