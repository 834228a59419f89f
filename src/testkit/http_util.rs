//! Form parsing, OAuth error responses and response helpers.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// `application/x-www-form-urlencoded` parameters, in order.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(input: &[u8]) -> Params {
        Params(
            url::form_urlencoded::parse(input)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// A single-valued parameter. Empty values count as absent (RFC 6749 §3.1); a repeated
    /// parameter is an `invalid_request`.
    pub(crate) fn one(&self, name: &str) -> Result<Option<&str>, OAuthErr> {
        let mut found = self
            .0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str());
        let first = found.next();
        if found.next().is_some() {
            return Err(OAuthErr::invalid_request(format!(
                "'{name}' parameter must not be provided twice"
            )));
        }
        Ok(first)
    }

    /// A required single-valued parameter.
    pub(crate) fn required(&self, name: &str) -> Result<&str, OAuthErr> {
        self.one(name)?.ok_or_else(|| {
            OAuthErr::invalid_request(format!("missing required parameter '{name}'"))
        })
    }

    /// Every non-empty value of a multi-valued parameter (`resource`, `audience`).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Is the parameter present (even empty)?
    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// An OAuth error response (RFC 6749 §5.2).
#[derive(Debug)]
pub(crate) struct OAuthErr {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
    /// Add `WWW-Authenticate: Basic` (client authentication with the header failed).
    pub(crate) basic_challenge: bool,
}

macro_rules! ctor {
    ($name:ident, $status:expr, $code:literal) => {
        pub(crate) fn $name(d: impl Into<String>) -> OAuthErr {
            OAuthErr::new($status, $code, d)
        }
    };
}

impl OAuthErr {
    pub(crate) fn new(status: StatusCode, error: &'static str, d: impl Into<String>) -> Self {
        OAuthErr {
            status,
            error,
            description: d.into(),
            basic_challenge: false,
        }
    }
    ctor!(invalid_request, StatusCode::BAD_REQUEST, "invalid_request");
    ctor!(invalid_client, StatusCode::UNAUTHORIZED, "invalid_client");
    ctor!(invalid_grant, StatusCode::BAD_REQUEST, "invalid_grant");
    ctor!(invalid_scope, StatusCode::BAD_REQUEST, "invalid_scope");
    ctor!(invalid_target, StatusCode::BAD_REQUEST, "invalid_target");
    ctor!(
        unauthorized_client,
        StatusCode::BAD_REQUEST,
        "unauthorized_client"
    );
    ctor!(
        unsupported_grant_type,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type"
    );
    ctor!(
        invalid_dpop_proof,
        StatusCode::BAD_REQUEST,
        "invalid_dpop_proof"
    );
    ctor!(use_dpop_nonce, StatusCode::BAD_REQUEST, "use_dpop_nonce");

    pub(crate) fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }

    /// The response, with `Cache-Control: no-store` and an optional `DPoP-Nonce`.
    pub(crate) fn response(&self, nonce: Option<&str>) -> Response {
        let mut headers = no_store();
        if self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"testkit\""),
            );
        }
        add_nonce(&mut headers, nonce);
        (self.status, headers, Json(self.body())).into_response()
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
pub(crate) fn no_store() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h
}

pub(crate) fn add_nonce(headers: &mut HeaderMap, nonce: Option<&str>) {
    if let Some(v) = nonce.and_then(|n| HeaderValue::from_str(n).ok()) {
        headers.insert("dpop-nonce", v);
    }
}

/// A JSON response with `no-store` and an optional `DPoP-Nonce`.
pub(crate) fn json_no_store(status: StatusCode, body: Value, nonce: Option<&str>) -> Response {
    let mut headers = no_store();
    add_nonce(&mut headers, nonce);
    (status, headers, Json(body)).into_response()
}

/// Decode one component of `application/x-www-form-urlencoded` (RFC 6749 §2.3.1 client
/// credentials): `+` is a space, `%XX` a byte, the result UTF-8.
pub(crate) fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i)? {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b => {
                out.push(*b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Is the request body declared as a form?
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a%3Ab+c%2B").unwrap(), "a:b c+");
        assert!(form_decode("%4").is_none());
        assert!(form_decode("%zz").is_none());
        assert!(form_decode("%ff").is_none());
    }

    #[test]
    fn params_reject_duplicates_and_ignore_empty() {
        let p = Params::parse(b"a=1&a=2&b=&c=3&r=x&r=y");
        assert!(p.one("a").is_err());
        assert_eq!(p.one("b").unwrap(), None);
        assert_eq!(p.one("c").unwrap(), Some("3"));
        assert_eq!(p.all("r"), vec!["x", "y"]);
    }
}
