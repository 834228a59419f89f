//! [`Outgoing`]: a request as the transport sends it, its URL parsed once and its body shared.
//!
//! Protocol code builds [`HttpRequest`]s (sans-IO, testable without a network); the transport
//! turns each into an `Outgoing` before its attempts. Requests built from a [`Url`] in the first
//! place (every protected call) are built as `Outgoing` directly: no URI text to write and parse
//! again.

use bytes::Bytes;
use http::{HeaderMap, Method, Version};
use url::Url;

use super::HttpRequest;
use crate::error::{Error, Result};

/// One attempt's request: method, parsed URL, headers and an in-memory body.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub(crate) method: Method,
    pub(crate) url: Url,
    pub(crate) headers: HeaderMap,
    pub(crate) version: Version,
    pub(crate) body: Bytes,
}

impl Outgoing {
    /// `method url`, no headers, empty body.
    pub(crate) fn new(method: Method, url: Url) -> Self {
        Outgoing {
            method,
            url,
            headers: HeaderMap::new(),
            version: Version::default(),
            body: Bytes::new(),
        }
    }

    /// The request `req` describes, its URI parsed.
    ///
    /// # Errors
    /// [`Error::Config`] when the URI is not an absolute URL.
    pub(crate) fn from_http(req: HttpRequest) -> Result<Self> {
        let (parts, body) = req.into_parts();
        let url = Url::parse(&parts.uri.to_string())
            .map_err(|_| Error::config("request URI is not an absolute URL"))?;
        Ok(Outgoing {
            method: parts.method,
            url,
            headers: parts.headers,
            version: parts.version,
            body: Bytes::from(body),
        })
    }

    /// The reqwest request, to a copy of the URL (the caller keeps the URL for what the
    /// response teaches about its origin).
    pub(crate) fn into_reqwest(self) -> (reqwest::Request, Url) {
        let mut req = reqwest::Request::new(self.method, self.url.clone());
        *req.headers_mut() = self.headers;
        *req.version_mut() = self.version;
        *req.body_mut() = Some(self.body.into());
        (req, self.url)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn transport_outgoing_from_http_parses_the_uri_and_keeps_the_body() {
        let req = http::Request::post("https://a.example/x?q=1")
            .header("x-k", "v")
            .body(b"body".to_vec())
            .unwrap();
        let out = Outgoing::from_http(req).unwrap();
        assert_eq!(out.url.as_str(), "https://a.example/x?q=1");
        assert_eq!(out.method, Method::POST);
        assert_eq!(out.headers["x-k"], "v");
        assert_eq!(&out.body[..], b"body");
        let req = http::Request::get("/relative").body(Vec::new()).unwrap();
        assert!(matches!(Outgoing::from_http(req), Err(Error::Config(_))));
    }

    #[test]
    fn transport_outgoing_into_reqwest_keeps_method_headers_version_and_body() {
        let mut out = Outgoing::new(Method::POST, url("https://a.example/p"));
        out.headers
            .insert("x-k", http::HeaderValue::from_static("v"));
        out.version = Version::HTTP_11;
        out.body = Bytes::from_static(b"{}");
        let (req, kept) = out.into_reqwest();
        assert_eq!(kept.as_str(), "https://a.example/p");
        assert_eq!(req.url(), &kept);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.headers()["x-k"], "v");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.body().and_then(|b| b.as_bytes()), Some(&b"{}"[..]));
    }
}
