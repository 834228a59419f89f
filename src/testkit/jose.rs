//! Minimal ES256 JOSE for the test server: base64url, JWS compact signing and verification,
//! EC P-256 JWK parsing and RFC 7638 thumbprints.
//!
//! Deliberately independent of the client-side JOSE code of the crate, so that tests that run
//! the client against this server cross-check two implementations.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::ecdsa::signature::{Signer as _, Verifier as _};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::EncodedPoint;
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

/// base64url without padding.
pub(crate) fn b64(data: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// Decode base64url without padding; `None` on any malformation.
pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// base64url(SHA-256(data)).
pub(crate) fn sha256_b64(data: impl AsRef<[u8]>) -> String {
    b64(Sha256::digest(data.as_ref()))
}

/// A fresh random value of 32 bytes, base64url encoded.
pub(crate) fn random_token() -> String {
    b64(rand::random::<[u8; 32]>())
}

/// The public JWK of a P-256 verifying key (kty, crv, x, y only).
pub(crate) fn public_jwk(key: &VerifyingKey) -> Value {
    let point = key.to_encoded_point(false);
    let x = point.x().map(|x| b64(&x[..])).unwrap_or_default();
    let y = point.y().map(|y| b64(&y[..])).unwrap_or_default();
    json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
}

/// A parsed EC P-256 public JWK.
#[derive(Debug, Clone)]
pub(crate) struct EcJwk {
    pub(crate) key: VerifyingKey,
    /// RFC 7638 thumbprint, base64url of SHA-256.
    pub(crate) thumbprint: String,
}

/// Parse a public EC P-256 JWK. Refuses private keys (`d`), other curves and key types.
pub(crate) fn parse_public_jwk(jwk: &Value) -> Result<EcJwk, &'static str> {
    let obj = jwk.as_object().ok_or("jwk is not an object")?;
    if obj.contains_key("d") {
        return Err("jwk must not contain private key material");
    }
    if obj.get("kty").and_then(Value::as_str) != Some("EC") {
        return Err("jwk kty must be EC");
    }
    if obj.get("crv").and_then(Value::as_str) != Some("P-256") {
        return Err("jwk crv must be P-256");
    }
    let x_s = obj
        .get("x")
        .and_then(Value::as_str)
        .ok_or("jwk x missing")?;
    let y_s = obj
        .get("y")
        .and_then(Value::as_str)
        .ok_or("jwk y missing")?;
    let x = b64_decode(x_s).ok_or("jwk x is not base64url")?;
    let y = b64_decode(y_s).ok_or("jwk y is not base64url")?;
    let x: [u8; 32] = x.try_into().map_err(|_| "jwk x must be 32 bytes")?;
    let y: [u8; 32] = y.try_into().map_err(|_| "jwk y must be 32 bytes")?;
    let point = EncodedPoint::from_affine_coordinates(
        &p256::FieldBytes::from(x),
        &p256::FieldBytes::from(y),
        false,
    );
    let key = VerifyingKey::from_encoded_point(&point).map_err(|_| "jwk is not a P-256 point")?;
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x_s}","y":"{y_s}"}}"#);
    Ok(EcJwk {
        key,
        thumbprint: sha256_b64(canonical.as_bytes()),
    })
}

/// Sign `header` and `claims` as a compact ES256 JWS.
pub(crate) fn sign_jwt(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig: Signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(sig.to_bytes()))
}

/// A compact JWS split and decoded, signature not yet checked.
#[derive(Debug)]
pub(crate) struct Jws {
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

impl Jws {
    /// Split and decode a compact JWS whose header and payload are JSON objects.
    pub(crate) fn parse(token: &str) -> Result<Jws, &'static str> {
        if token.len() > 16 * 1024 {
            return Err("JWT too large");
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a compact JWS");
        };
        let header = decode_object(h).ok_or("malformed JWT header")?;
        let claims = decode_object(p).ok_or("malformed JWT payload")?;
        let signature = b64_decode(s).ok_or("malformed JWT signature")?;
        Ok(Jws {
            header,
            claims,
            signing_input: format!("{h}.{p}"),
            signature,
        })
    }

    /// The header's `alg`.
    pub(crate) fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }

    /// Check the ES256 signature (raw r||s, 64 bytes) with `key`.
    pub(crate) fn verify(&self, key: &VerifyingKey) -> bool {
        if self.alg() != Some("ES256") {
            return false;
        }
        let Ok(sig) = Signature::from_slice(&self.signature) else {
            return false;
        };
        key.verify(self.signing_input.as_bytes(), &sig).is_ok()
    }

    /// A string claim.
    pub(crate) fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }

    /// A numeric claim as whole seconds (fractions truncated).
    pub(crate) fn num_claim(&self, name: &str) -> Option<i64> {
        let v = self.claims.get(name)?;
        v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
    }
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    let bytes = b64_decode(part)?;
    match serde_json::from_slice::<Value>(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sign_verify_round_trip_and_thumbprint() {
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let jwk = public_jwk(sk.verifying_key());
        let parsed = parse_public_jwk(&jwk).unwrap();
        let jwt = sign_jwt(&sk, &json!({"alg":"ES256"}), &json!({"a":1}));
        let jws = Jws::parse(&jwt).unwrap();
        assert!(jws.verify(&parsed.key));
        assert_eq!(jws.num_claim("a"), Some(1));
        let other = SigningKey::random(&mut rand::rngs::OsRng);
        assert!(!jws.verify(other.verifying_key()));
        assert_eq!(parsed.thumbprint.len(), 43);
    }

    #[test]
    fn rejects_malformed() {
        assert!(Jws::parse("a.b").is_err());
        assert!(Jws::parse("a.b.c.d").is_err());
        assert!(Jws::parse("!!.??.**").is_err());
        assert!(parse_public_jwk(&json!({"kty":"EC","crv":"P-256","x":"AA","y":"AA"})).is_err());
        assert!(parse_public_jwk(&json!("x")).is_err());
    }

    #[test]
    fn rfc7638_thumbprint_example_shape() {
        // The thumbprint covers exactly crv, kty, x, y in lexicographic order.
        let sk = SigningKey::random(&mut rand::rngs::OsRng);
        let mut jwk = public_jwk(sk.verifying_key());
        let a = parse_public_jwk(&jwk).unwrap().thumbprint;
        jwk["kid"] = json!("ignored");
        jwk["use"] = json!("sig");
        let b = parse_public_jwk(&jwk).unwrap().thumbprint;
        assert_eq!(a, b);
    }
}
