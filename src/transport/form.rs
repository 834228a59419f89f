//! A form-encoded POST (`application/x-www-form-urlencoded`), as token, revocation,
//! introspection and device endpoints take.

use std::fmt;

use http::HeaderMap;
use url::Url;

use super::HttpRequest;
use crate::error::{Error, Result};

/// A POST to an OAuth endpoint, before it is encoded. Its `Debug` shows parameter names only:
/// values include codes, verifiers, refresh tokens and client secrets.
#[derive(Clone)]
pub struct FormRequest {
    /// Target URL.
    pub url: Url,
    /// Form parameters in order.
    pub params: Vec<(String, String)>,
    /// Extra headers (`Authorization`, `DPoP`, ...).
    pub headers: HeaderMap,
}

impl fmt::Debug for FormRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormRequest")
            .field("url", &self.url.as_str())
            .field(
                "params",
                &self
                    .params
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FormRequest {
    /// An empty form POST to `url`.
    pub fn new(url: Url) -> Self {
        FormRequest {
            url,
            params: Vec::new(),
            headers: HeaderMap::new(),
        }
    }

    /// Append a parameter.
    pub fn param(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Encode into an HTTP request.
    ///
    /// # Errors
    /// [`Error::Config`] if a header is invalid.
    pub fn to_http(&self) -> Result<HttpRequest> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.params.iter())
            .finish()
            .into_bytes();
        let mut builder = http::Request::post(self.url.as_str())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json");
        for (k, v) in &self.headers {
            builder = builder.header(k, v);
        }
        builder
            .body(body)
            .map_err(|e| Error::config(format!("cannot build request: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encodes_and_hides_values_in_debug() {
        let mut f = FormRequest::new(Url::parse("https://as.example/token").expect("url"));
        f.param("grant_type", "refresh_token")
            .param("refresh_token", "rt secret&=+");
        let req = f.to_http().expect("req");
        assert_eq!(
            std::str::from_utf8(req.body()).expect("utf8"),
            "grant_type=refresh_token&refresh_token=rt+secret%26%3D%2B"
        );
        assert_eq!(req.method(), http::Method::POST);
        assert!(!format!("{f:?}").contains("rt secret"));
        assert_eq!(f.get("grant_type"), Some("refresh_token"));
    }
}
