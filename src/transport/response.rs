//! Status, content-type and body checks shared by every protocol step.

use serde::de::DeserializeOwned;

use super::HttpResponse;
use crate::challenge::challenges_from_headers;
use crate::error::{sanitize, Error, OAuthError, OAuthErrorCode, Result, MAX_ERROR_BODY};

/// Is this a JSON media type (`application/json`, `application/*+json`, any parameters)?
fn is_json(resp: &HttpResponse) -> bool {
    let Some(ct) = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Parse a successful JSON response into `T`. A non-2xx status becomes the matching error
/// ([`oauth_error`]); a non-JSON content type or malformed JSON becomes
/// [`Error::InvalidResponse`] naming `what`.
pub(crate) fn json_body<T: DeserializeOwned>(resp: &HttpResponse, what: &str) -> Result<T> {
    let body = expect_json(resp, what)?;
    serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("{what}: {}", sanitize(&e.to_string(), 200))))
}

/// The body of a successful JSON response. A non-2xx status becomes the matching error
/// ([`oauth_error`]); a non-JSON content type becomes [`Error::InvalidResponse`].
pub(crate) fn expect_json<'a>(resp: &'a HttpResponse, what: &str) -> Result<&'a [u8]> {
    if !resp.status().is_success() {
        return Err(oauth_error(resp));
    }
    if !is_json(resp) {
        return Err(Error::invalid(format!(
            "{what}: expected a JSON content type, got {}",
            resp.headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|v| sanitize(v, 64))
                .unwrap_or_else(|| "none".into())
        )));
    }
    Ok(resp.body())
}

#[derive(serde::Deserialize)]
struct ErrorBody {
    error: Option<serde_json::Value>,
    error_description: Option<serde_json::Value>,
    error_uri: Option<serde_json::Value>,
}

/// Turn an unsuccessful response into an error: an RFC 6749 §5.2 JSON body, else an RFC 6750 §3
/// `WWW-Authenticate` error, else [`Error::Http`] with the start of the body.
pub(crate) fn oauth_error(resp: &HttpResponse) -> Error {
    let status = resp.status().as_u16();
    let challenges = challenges_from_headers(resp.headers()).unwrap_or_default();
    // Only a valid nonce (1 to 512 NQCHAR, RFC 9449 §8.1) is kept: anything else would be
    // refused by the nonce cache anyway, and must not bloat or garble the error. The transport
    // read it once when the response arrived.
    let dpop_nonce = super::origin::OriginFacts::of(resp).dpop_nonce.clone();
    let text = |v: &Option<serde_json::Value>, max| match v {
        Some(serde_json::Value::String(s)) => Some(sanitize(s, max)),
        _ => None,
    };
    if let Ok(body) = serde_json::from_slice::<ErrorBody>(resp.body()) {
        if let Some(serde_json::Value::String(code)) = &body.error {
            return Error::from(OAuthError {
                error: OAuthErrorCode::parse(code),
                error_description: text(&body.error_description, 512),
                error_uri: text(&body.error_uri, 512),
                status,
                challenges,
                dpop_nonce,
                context: None,
            });
        }
    }
    if let Some(code) = challenges.iter().find_map(|c| c.error().map(str::to_owned)) {
        let description = challenges
            .iter()
            .find_map(|c| c.error_description().map(|d| sanitize(d, 512)));
        return Error::from(OAuthError {
            error: OAuthErrorCode::parse(&code),
            error_description: description,
            error_uri: None,
            status,
            challenges,
            dpop_nonce,
            context: None,
        });
    }
    let retry_after = resp
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| super::parse_retry_after(v, std::time::SystemTime::now()));
    let raw = &resp.body()[..resp.body().len().min(MAX_ERROR_BODY)];
    let mut body = sanitize(&String::from_utf8_lossy(raw), MAX_ERROR_BODY);
    if raw.len() < resp.body().len() && !body.ends_with('…') {
        // Mark the cut, so that redaction knows the text may end inside a secret.
        body.push('…');
    }
    Error::Http {
        status,
        body,
        retry_after,
        context: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn resp(status: u16, ct: Option<&str>, body: &str) -> HttpResponse {
        let mut b = http::Response::builder().status(status);
        if let Some(ct) = ct {
            b = b.header("content-type", ct);
        }
        b.body(Bytes::from(body.to_owned())).expect("response")
    }

    #[derive(serde::Deserialize, Debug)]
    struct Doc {
        a: u32,
    }

    #[test]
    fn response_json_content_types() {
        let ok = resp(200, Some("application/json; charset=utf-8"), r#"{"a":1}"#);
        assert_eq!(json_body::<Doc>(&ok, "doc").expect("json").a, 1);
        let ok = resp(200, Some("application/jwk-set+json"), r#"{"a":2}"#);
        assert_eq!(json_body::<Doc>(&ok, "doc").expect("json").a, 2);
        let html = resp(200, Some("text/html"), r#"{"a":1}"#);
        assert!(matches!(
            json_body::<Doc>(&html, "doc"),
            Err(Error::InvalidResponse(_))
        ));
        let none = resp(200, None, r#"{"a":1}"#);
        assert!(matches!(
            json_body::<Doc>(&none, "doc"),
            Err(Error::InvalidResponse(_))
        ));
    }

    #[test]
    fn response_malformed_or_wrong_type_json_is_typed_error() {
        for body in ["{", "[]", r#"{"a":"1"}"#, r#"{"b":1}"#, "\u{0}", ""] {
            let r = resp(200, Some("application/json"), body);
            assert!(
                matches!(json_body::<Doc>(&r, "doc"), Err(Error::InvalidResponse(_))),
                "{body:?}"
            );
        }
    }

    #[test]
    fn response_oauth_error_body_parsed() {
        let r = resp(
            400,
            Some("application/json"),
            r#"{"error":"invalid_grant","error_description":"bad\r\ncode","error_uri":5}"#,
        );
        let e = oauth_error(&r);
        let o = e.oauth_error().expect("oauth");
        assert_eq!(o.error, OAuthErrorCode::InvalidGrant);
        assert_eq!(o.error_description.as_deref(), Some("badcode"));
        assert_eq!(o.error_uri, None);
        assert_eq!(o.status, 400);
    }

    #[test]
    fn response_error_from_www_authenticate() {
        let r = http::Response::builder()
            .status(401)
            .header(
                "www-authenticate",
                r#"DPoP error="use_dpop_nonce", error_description="need nonce""#,
            )
            .header("dpop-nonce", "n-1")
            .body(Bytes::new())
            .expect("response");
        let e = oauth_error(&r);
        let o = e.oauth_error().expect("oauth");
        assert_eq!(o.error, OAuthErrorCode::UseDpopNonce);
        assert_eq!(o.dpop_nonce.as_deref(), Some("n-1"));
        assert_eq!(o.challenges.len(), 1);
    }

    #[test]
    fn hardening_08_invalid_or_oversized_nonce_not_kept() {
        let with_nonce = |nonce: &str| {
            http::Response::builder()
                .status(400)
                .header("content-type", "application/json")
                .header("dpop-nonce", nonce)
                .body(Bytes::from_static(br#"{"error":"use_dpop_nonce"}"#))
                .expect("response")
        };
        let huge = "n".repeat(10 * 1024);
        for bad in [huge.as_str(), "has space", "quo\"te", "back\\slash"] {
            let e = oauth_error(&with_nonce(bad));
            assert_eq!(
                e.oauth_error().expect("oauth").dpop_nonce,
                None,
                "{bad:.20}"
            );
            assert!(format!("{e:?}").len() < 1024);
        }
        let e = oauth_error(&with_nonce("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert_eq!(
            e.oauth_error().expect("oauth").dpop_nonce.as_deref(),
            Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
        );
    }

    #[test]
    fn response_plain_status_keeps_capped_body() {
        let long = "x".repeat(5000);
        let e = oauth_error(&resp(502, Some("text/plain"), &long));
        match e {
            Error::Http { status, body, .. } => {
                assert_eq!(status, 502);
                assert!(body.len() <= MAX_ERROR_BODY + 3);
            }
            other => panic!("{other:?}"),
        }
        let empty = oauth_error(&resp(403, None, ""));
        assert_eq!(empty.status(), Some(403));
        assert_eq!(empty.to_string(), "unexpected HTTP status 403");
    }
}
