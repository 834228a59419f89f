//! Token responses (RFC 6749 §5.1) and their validation.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::error::{sanitize, Error, Result};
use crate::secret::SecretString;
use crate::token::{AccessToken, RefreshToken, Scope, TokenSet, TokenType};
use crate::transport::{expect_json, HttpResponse};

/// Longest lifetime believed from `expires_in` (ten years); larger values are capped.
const MAX_EXPIRES_IN: u64 = 10 * 365 * 24 * 3600;

/// How to read a token response.
#[derive(Debug, Clone)]
pub(crate) struct ParseOptions<'a> {
    /// The scope that was requested: used when the response omits `scope` (RFC 6749 §5.1).
    pub requested_scope: Option<&'a Scope>,
    /// Lifetime assumed when `expires_in` is missing.
    pub default_expires_in: Option<Duration>,
    /// When the response was received.
    pub now: SystemTime,
    /// A DPoP proof was sent: the token must come back as `DPoP` (RFC 9449 §5). Without a
    /// proof, a `DPoP` token is refused: it could not be used.
    pub dpop_sent: bool,
    /// Accept a `Bearer` token although a proof was sent.
    pub accept_bearer: bool,
    /// Token exchange: `issued_token_type` is required, `N_A` is a valid `token_type`.
    pub exchange: bool,
}

/// Parse a successful token response, or turn an error response into [`Error::OAuth`].
pub(crate) fn parse_token_response(
    resp: &HttpResponse,
    opts: &ParseOptions<'_>,
) -> Result<TokenSet> {
    let body = expect_json(resp, "token response")?;
    let Value::Object(mut map) = serde_json::from_slice::<Value>(body).map_err(|e| {
        Error::invalid(format!("token response: {}", sanitize(&e.to_string(), 120)))
    })?
    else {
        return Err(Error::invalid("token response is not a JSON object"));
    };
    let mut take_str = |name: &str, required: bool| -> Result<Option<String>> {
        match map.remove(name) {
            Some(Value::String(s)) => Ok(Some(s)),
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => {
                Err(Error::invalid(format!("token response lacks `{name}`")))
            }
            Some(_) => Err(Error::invalid(format!(
                "token response member `{name}` is not a string"
            ))),
        }
    };
    let access_token = take_str("access_token", true)?.unwrap_or_default();
    if access_token.is_empty() {
        return Err(Error::invalid("token response has an empty `access_token`"));
    }
    let token_type = TokenType::parse(&take_str("token_type", true)?.unwrap_or_default());
    let refresh_token = take_str("refresh_token", false)?.filter(|s| !s.is_empty());
    let scope = take_str("scope", false)?;
    let id_token = take_str("id_token", false)?;
    let issued_token_type = take_str("issued_token_type", false)?;
    let expires_in =
        match map.remove("expires_in") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(
                n.as_u64()
                    .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .or_else(|| n.as_i64().map(|_| 0))
                    .unwrap_or(0),
            ),
            // Some servers send a numeric string; harmless to accept.
            Some(Value::String(s)) => Some(s.trim().parse::<u64>().map_err(|_| {
                Error::invalid("token response member `expires_in` is not a number")
            })?),
            Some(_) => {
                return Err(Error::invalid(
                    "token response member `expires_in` is not a number",
                ))
            }
        };

    match (&token_type, opts.dpop_sent) {
        (TokenType::Dpop, true) => {}
        (TokenType::Dpop, false) => {
            return Err(Error::invalid(
                "the server issued a DPoP token but no DPoP proof was sent (RFC 9449 §5)",
            ))
        }
        (TokenType::Bearer, true) if !opts.accept_bearer => {
            return Err(Error::invalid(
                "a DPoP proof was sent but the server issued a Bearer token (RFC 9449 §5)",
            ))
        }
        (TokenType::Bearer, _) => {}
        (TokenType::NotApplicable, _) if opts.exchange => {}
        (other, _) => {
            return Err(Error::invalid(format!("unsupported token_type `{other}`")));
        }
    }
    if opts.exchange && issued_token_type.is_none() {
        return Err(Error::invalid(
            "token exchange response lacks `issued_token_type` (RFC 8693 §2.2.1)",
        ));
    }

    // The configured default is capped like the server's value: a lifetime of centuries (or
    // `Duration::MAX`) would overflow the clock arithmetic downstream.
    let lifetime = expires_in
        .map(Duration::from_secs)
        .or(opts.default_expires_in)
        .map(|l| l.min(Duration::from_secs(MAX_EXPIRES_IN)));
    let scope = match scope {
        Some(s) => Scope::parse(&s),
        None => opts.requested_scope.cloned().unwrap_or_default(),
    };
    Ok(TokenSet {
        access_token: AccessToken::new(access_token),
        token_type,
        issued_at: opts.now,
        // `now` comes from a clock that may be injected: saturate rather than panic.
        expires_at: lifetime.and_then(|l| opts.now.checked_add(l)),
        refresh_token: refresh_token.map(RefreshToken::new),
        scope,
        issued_token_type,
        id_token: id_token.map(SecretString::new),
        extra: map,
        cnf: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn resp(status: u16, body: &str) -> HttpResponse {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json;charset=UTF-8")
            .body(Bytes::from(body.to_owned()))
            .expect("resp")
    }

    fn opts(now: SystemTime) -> ParseOptions<'static> {
        ParseOptions {
            requested_scope: None,
            default_expires_in: Some(Duration::from_secs(300)),
            now,
            dpop_sent: false,
            accept_bearer: false,
            exchange: false,
        }
    }

    #[test]
    fn grant_response_rfc6749_example() {
        // RFC 6749 §5.1 example
        let now = SystemTime::now();
        let t = parse_token_response(
            &resp(
                200,
                r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"example","expires_in":3600,
                    "refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA","example_parameter":"example_value"}"#,
            ),
            &opts(now),
        );
        assert!(t.is_err(), "unknown token type `example` is refused");
        let t = parse_token_response(
            &resp(
                200,
                r#"{"access_token":"2YotnFZFEjr1zCsicMWpAA","token_type":"bearer","expires_in":3600,
                    "refresh_token":"tGzv3JOkF0XG5Qx2TlKWIA","example_parameter":"example_value"}"#,
            ),
            &opts(now),
        )
        .expect("token");
        assert_eq!(t.access_token.secret(), "2YotnFZFEjr1zCsicMWpAA");
        assert_eq!(t.token_type, TokenType::Bearer);
        assert_eq!(t.expires_at, Some(now + Duration::from_secs(3600)));
        assert_eq!(
            t.refresh_token.as_ref().map(|r| r.secret()),
            Some("tGzv3JOkF0XG5Qx2TlKWIA")
        );
        assert_eq!(t.extra["example_parameter"], "example_value");
    }

    #[test]
    fn grant_response_scope_defaults_and_expiry_default() {
        let now = SystemTime::now();
        let requested = Scope::parse("read write");
        let mut o = opts(now);
        o.requested_scope = Some(&requested);
        let t = parse_token_response(
            &resp(200, r#"{"access_token":"a","token_type":"Bearer"}"#),
            &o,
        )
        .expect("t");
        assert_eq!(t.scope, requested);
        assert_eq!(t.expires_at, Some(now + Duration::from_secs(300)));
        let t = parse_token_response(
            &resp(
                200,
                r#"{"access_token":"a","token_type":"Bearer","scope":"read","expires_in":"60"}"#,
            ),
            &o,
        )
        .expect("t");
        assert_eq!(t.scope, Scope::parse("read"));
        assert_eq!(t.lifetime(), Some(Duration::from_secs(60)));
    }

    #[test]
    fn grant_response_bad_input_is_typed() {
        let now = SystemTime::now();
        for body in [
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":"","token_type":"Bearer"}"#,
            r#"{"access_token":5,"token_type":"Bearer"}"#,
            r#"{"access_token":"a"}"#,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":"soon"}"#,
            r#"{"access_token":"a","token_type":"Bearer","expires_in":[1]}"#,
            r#"{"access_token":"a","token_type":"Bearer","refresh_token":7}"#,
            r#"["access_token"]"#,
            "{",
        ] {
            let e = parse_token_response(&resp(200, body), &opts(now)).expect_err(body);
            assert!(matches!(e, Error::InvalidResponse(_)), "{body}: {e:?}");
            assert!(!e.to_string().contains("\"a\""));
        }
        let e = parse_token_response(
            &resp(
                400,
                r#"{"error":"invalid_grant","error_description":"expired"}"#,
            ),
            &opts(now),
        )
        .expect_err("error");
        assert_eq!(
            e.oauth_error().map(|o| o.error.as_str()),
            Some("invalid_grant")
        );
    }

    #[test]
    fn grant_response_dpop_requires_dpop_token_type() {
        let now = SystemTime::now();
        let mut o = opts(now);
        o.dpop_sent = true;
        let bearer = resp(200, r#"{"access_token":"a","token_type":"Bearer"}"#);
        assert!(parse_token_response(&bearer, &o).is_err());
        let dpop = resp(200, r#"{"access_token":"a","token_type":"dpop"}"#);
        assert_eq!(
            parse_token_response(&dpop, &o).expect("dpop").token_type,
            TokenType::Dpop
        );
        o.accept_bearer = true;
        assert!(parse_token_response(&bearer, &o).is_ok());
    }

    #[test]
    fn hardening_09_dpop_token_without_proof_refused() {
        let now = SystemTime::now();
        let o = opts(now);
        for t in ["DPoP", "dpop"] {
            let body = format!(r#"{{"access_token":"a","token_type":"{t}"}}"#);
            let e = parse_token_response(&resp(200, &body), &o).expect_err(t);
            assert!(matches!(e, Error::InvalidResponse(_)), "{e:?}");
        }
        // Token exchange: the same rule.
        let mut x = opts(now);
        x.exchange = true;
        let body = r#"{"access_token":"a","token_type":"DPoP","issued_token_type":"urn:ietf:params:oauth:token-type:access_token"}"#;
        assert!(parse_token_response(&resp(200, body), &x).is_err());
    }

    #[test]
    fn grant_response_huge_or_negative_expiry_clamped() {
        let now = SystemTime::now();
        let t = parse_token_response(
            &resp(
                200,
                r#"{"access_token":"a","token_type":"Bearer","expires_in":1e300}"#,
            ),
            &opts(now),
        )
        .expect("t");
        assert_eq!(t.lifetime(), Some(Duration::from_secs(MAX_EXPIRES_IN)));
        let t = parse_token_response(
            &resp(
                200,
                r#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#,
            ),
            &opts(now),
        )
        .expect("t");
        assert!(t.is_expired(now));
    }
}
