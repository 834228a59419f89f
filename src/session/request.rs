//! What a protected request is made of (method, URL, headers, an in-memory body) and the
//! builder methods shared by agent and child requests.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use url::Url;

use super::attempt::is_idempotent;
use crate::error::{Error, Result};
use crate::transport::{Outgoing, RetryPolicy};

/// The public builder methods of a request type holding `parts: RequestParts`.
macro_rules! request_builder_methods {
    ($ty:ty) => {
        impl $ty {
            /// Add a header. `Authorization` and `DPoP` are set when the request is sent.
            pub fn header(
                mut self,
                name: impl TryInto<http::HeaderName>,
                value: impl TryInto<http::HeaderValue>,
            ) -> Self {
                self.parts.header(name, value);
                self
            }

            /// Set the body (kept in memory, so the request can be replayed for a nonce or
            /// token retry).
            pub fn body(mut self, body: impl Into<bytes::Bytes>) -> Self {
                self.parts.body = body.into();
                self
            }

            /// Set a JSON body and `Content-Type: application/json`.
            pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
                self.parts.json(value);
                self
            }

            /// Make a non-idempotent request retryable by naming it (`Idempotency-Key`).
            pub fn idempotency_key(self, key: impl AsRef<str>) -> Self {
                let v = key.as_ref().to_owned();
                self.header("idempotency-key", v)
            }
        }
    };
}
pub(crate) use request_builder_methods;

/// `get`, `post`, `put`, `patch` and `delete` for a type with a
/// `request(Method, url) -> $req` method.
macro_rules! method_shortcuts {
    ($ty:ty, $req:ty) => {
        impl $ty {
            /// `GET url`.
            pub fn get(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::GET, url)
            }

            /// `POST url`.
            pub fn post(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::POST, url)
            }

            /// `PUT url`.
            pub fn put(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::PUT, url)
            }

            /// `PATCH url`.
            pub fn patch(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::PATCH, url)
            }

            /// `DELETE url`.
            pub fn delete(&self, url: impl AsRef<str>) -> $req {
                self.request(http::Method::DELETE, url)
            }
        }
    };
}
pub(crate) use method_shortcuts;

/// Method, URL, headers and an in-memory body: what a protected request is made of before a
/// token is attached. Shared by [`AgentRequest`] and the child agents' requests.
pub(crate) struct RequestParts {
    pub(crate) method: Method,
    pub(crate) url: Result<Url>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl RequestParts {
    pub(crate) fn new(method: Method, url: &str) -> Self {
        RequestParts {
            method,
            url: Url::parse(url).map_err(|_| Error::config("request URL is not an absolute URL")),
            headers: HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    /// Keep the first error (builders report it at `send`).
    fn fail(&mut self, e: Error) {
        if self.url.is_ok() {
            self.url = Err(e);
        }
    }

    pub(crate) fn header(
        &mut self,
        name: impl TryInto<HeaderName>,
        value: impl TryInto<HeaderValue>,
    ) {
        match (name.try_into(), value.try_into()) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => self.fail(Error::config("invalid header")),
        }
    }

    pub(crate) fn json<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        match serde_json::to_vec(value) {
            Ok(b) => {
                self.body = b.into();
                self.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Err(e) => self.fail(Error::config(format!("cannot serialize JSON body: {e}"))),
        }
    }

    /// The URL, or the first builder error.
    pub(crate) fn url(&self) -> Result<Url> {
        self.url.clone()
    }

    /// The request to send to `url` (the parts' URL, parsed once by the caller): its method,
    /// headers and body (shared, not copied).
    pub(crate) fn build(&self, url: &Url) -> Outgoing {
        let mut out = Outgoing::new(self.method.clone(), url.clone());
        out.headers = self.headers.clone();
        out.body = self.body.clone();
        out
    }

    /// Idempotent methods, and others named by an `Idempotency-Key`, may be retried.
    pub(crate) fn policy(&self) -> RetryPolicy {
        if is_idempotent(&self.method) || self.headers.contains_key("idempotency-key") {
            RetryPolicy::Idempotent
        } else {
            RetryPolicy::ConnectOnly
        }
    }
}
