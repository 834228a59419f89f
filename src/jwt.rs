//! The one place a JWT's payload is read without verification (RFC 7519 §7.2, minus the
//! signature check).
//!
//! Access tokens belong to the resource, which verifies them; the client only reads a few claims
//! for its own bookkeeping (the `cnf` binding, RFC 7800; the `act` chain, RFC 8693 §4.1). Such
//! reads must never decide an authorization. The input is untrusted: it is bounded in size and
//! every malformed token is a typed error, never a panic.

use base64::Engine as _;
use serde_json::{Map, Value};

/// The largest token decoded, in bytes. Real access tokens are a few kilobytes.
pub(crate) const MAX_LEN: usize = 64 * 1024;

/// Why a token's payload could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtError {
    /// Longer than [`MAX_LEN`].
    TooLarge,
    /// Not the JWS compact serialization: three dot-separated parts (a JWE has five; an
    /// opaque token has one).
    NotCompact,
    /// The payload is not base64url.
    Base64,
    /// The payload is not a JSON object (or nests deeper than the JSON parser allows).
    NotJsonObject,
}

/// The `aud` claim's values (RFC 7519 §4.1.3: one string or an array of strings); anything else
/// is no audience.
pub(crate) fn audiences(claims: &Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// The claims of a compact JWT, decoded WITHOUT verifying its signature, issuer, audience or
/// expiry. Trailing `=` padding on the payload is tolerated.
pub(crate) fn unverified_claims(jwt: &str) -> Result<Map<String, Value>, JwtError> {
    if jwt.len() > MAX_LEN {
        return Err(JwtError::TooLarge);
    }
    let mut parts = jwt.split('.');
    let (Some(_), Some(payload), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::NotCompact);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| JwtError::Base64)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(claims)) => Ok(claims),
        _ => Err(JwtError::NotJsonObject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(v: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    fn jwt(payload: &[u8]) -> String {
        format!("{}.{}.sig", b64(br#"{"alg":"ES256"}"#), b64(payload))
    }

    #[test]
    fn jwt_reads_the_payload_object() {
        let claims = unverified_claims(&jwt(br#"{"sub":"u","cnf":{"jkt":"k"}}"#)).expect("claims");
        assert_eq!(claims.get("sub"), Some(&Value::from("u")));
        assert_eq!(claims["cnf"]["jkt"], "k");
        // Padding some encoders add is tolerated; an empty signature part is still three parts.
        let padded = format!("h.{}==.", b64(br#"{"a":1}"#));
        assert_eq!(unverified_claims(&padded).expect("padded")["a"], 1);
    }

    #[test]
    fn jwt_malformed_inputs_are_typed_errors() {
        use JwtError::*;
        let cases: &[(&str, JwtError)] = &[
            ("", NotCompact),
            ("opaque-token", NotCompact),
            ("a.b", NotCompact),
            ("a.b.c.d", NotCompact),
            ("a.b.c.d.e", NotCompact),
            ("...", NotCompact),
            ("..", NotJsonObject),
            ("a..c", NotJsonObject),
            ("a.!!.c", Base64),
            ("a.e30+.c", Base64),
            ("a.ü.c", Base64),
            ("a.Zg.c", NotJsonObject),
        ];
        for (input, want) in cases {
            assert_eq!(unverified_claims(input), Err(*want), "{input:?}");
        }
        for payload in [
            &b"[1]"[..],
            b"\"s\"",
            b"null",
            b"12",
            b"{",
            b"{}x",
            b"\xff\xfe",
        ] {
            assert_eq!(
                unverified_claims(&jwt(payload)),
                Err(NotJsonObject),
                "{payload:?}"
            );
        }
        assert_eq!(unverified_claims(&jwt(b"{}")), Ok(Map::new()));
    }

    #[test]
    fn jwt_hostile_inputs_are_bounded() {
        // Over the cap: refused before any decoding.
        let huge = jwt(&vec![b' '; MAX_LEN]);
        assert_eq!(unverified_claims(&huge), Err(JwtError::TooLarge));
        assert_eq!(
            unverified_claims(&".".repeat(MAX_LEN + 1)),
            Err(JwtError::TooLarge)
        );
        // Just under the cap decodes.
        let filler = "x".repeat(MAX_LEN / 2);
        let big = jwt(format!(r#"{{"f":"{filler}"}}"#).as_bytes());
        assert!(big.len() <= MAX_LEN);
        assert_eq!(unverified_claims(&big).expect("big")["f"], filler.as_str());
        // Deep nesting hits the JSON parser's recursion limit instead of the stack.
        let deep = format!(r#"{{"a":{}1{}}}"#, "[".repeat(20_000), "]".repeat(20_000));
        assert_eq!(
            unverified_claims(&jwt(deep.as_bytes())),
            Err(JwtError::NotJsonObject)
        );
        // Many dots, multi-byte characters at the edges, NULs: errors, no panic.
        for input in ["é.é.é", "\0.\0.\0", "a.\u{feff}.c", &".".repeat(1000)] {
            assert!(unverified_claims(input).is_err(), "{input:?}");
        }
    }
}
