//! Verifying compact JWS (RFC 7515 §5.2) with public JSON Web Keys (RFC 7517, RFC 7518 §6,
//! RFC 8037 §2), signatures checked by ring.
//!
//! Only asymmetric algorithms are verified: ES256 (P-256), RS256 and PS256 (RSA of 2048 to 8192
//! bits) and EdDSA (Ed25519). `none` and the `HS*` family are always refused: a verifier holds
//! public keys only, and a public key used as an HMAC secret is the classic forgery. The key is
//! chosen by the verifier (by `kid` from the issuer's key set), never from the token's own `jwk`,
//! `jku` or `x5u` headers, and the algorithm must fit the key's type, curve and `alg`.

use std::fmt;

use ring::signature as rs;
use serde_json::{Map, Value};

use super::jwk::b64_decode;
use crate::error::{sanitize, VerificationError as V};

/// Largest JWS this module verifies, in bytes (the same bound as the unverified reader).
pub(crate) const MAX_JWS_LEN: usize = crate::jwt::MAX_LEN;

/// An asymmetric JWS algorithm this crate verifies (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// ECDSA P-256 with SHA-256 (RFC 7518 §3.4).
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 7518 §3.3).
    Rs256,
    /// RSASSA-PSS with SHA-256 and MGF1 with SHA-256 (RFC 7518 §3.5).
    Ps256,
    /// EdDSA with Ed25519 (RFC 8037 §3.1; also accepted under its RFC 9864 name `Ed25519`).
    EdDsa,
}

impl JwsAlgorithm {
    /// Every algorithm this crate verifies.
    pub const ALL: [JwsAlgorithm; 4] = [Self::Es256, Self::Rs256, Self::Ps256, Self::EdDsa];

    /// The algorithm named `name` in a JOSE header; `None` for anything else, `none` and
    /// `HS256` included.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES256" => Some(Self::Es256),
            "RS256" => Some(Self::Rs256),
            "PS256" => Some(Self::Ps256),
            "EdDSA" | "Ed25519" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The algorithm's JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Material {
    /// Uncompressed SEC1 point: 0x04 || x || y.
    P256(Vec<u8>),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519([u8; 32]),
}

/// A public signature-verification key read from a JWK (RFC 7517 §4): EC P-256, RSA of at
/// least 2048 bits, or OKP Ed25519, with its `kid` and `alg` when the JWK has them.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingJwk {
    kid: Option<String>,
    alg: Option<String>,
    material: Material,
}

impl fmt::Debug for VerifyingJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingJwk")
            .field("kty", &self.kty())
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyingJwk {
    /// Parse a public JWK. Keys for another use than signing (`use` other than `sig`,
    /// `key_ops` without `verify`), other key types and curves (`oct`, P-384, X25519, ...),
    /// RSA moduli under 2048 or over 8192 bits, and EC points off the curve are refused.
    /// Private members (`d`, `p`, ...) are ignored and not kept.
    ///
    /// # Errors
    /// A message naming the member that is missing or wrong.
    pub fn from_json(jwk: &Value) -> Result<Self, String> {
        let obj = jwk.as_object().ok_or("a JWK is not a JSON object")?;
        let text = |name: &str| -> Result<Option<&str>, String> {
            match obj.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(format!("JWK member `{name}` is not a string")),
            }
        };
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            let s = text(name)?.ok_or_else(|| format!("JWK member `{name}` is missing"))?;
            b64_decode(s).map_err(|_| format!("JWK member `{name}` is not base64url"))
        };
        if let Some(u) = text("use")? {
            if u != "sig" {
                return Err(format!("a key for `use` `{}`", sanitize(u, 16)));
            }
        }
        if let Some(ops) = obj.get("key_ops") {
            let verify = ops
                .as_array()
                .is_some_and(|a| a.iter().any(|o| o == "verify"));
            if !verify {
                return Err("`key_ops` does not allow `verify`".into());
            }
        }
        let kty = text("kty")?.ok_or("JWK member `kty` is missing")?;
        let material = match kty {
            "EC" => {
                if text("crv")? != Some("P-256") {
                    return Err("an EC key on a curve other than P-256".into());
                }
                let (x, y) = (bytes("x")?, bytes("y")?);
                if x.len() != 32 || y.len() != 32 {
                    return Err("P-256 coordinates are not 32 bytes".into());
                }
                let mut point = Vec::with_capacity(65);
                point.push(4);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| "the EC point is not on P-256".to_owned())?;
                Material::P256(point)
            }
            "RSA" => {
                let n = strip_zeros(bytes("n")?);
                let e = strip_zeros(bytes("e")?);
                if n.len() < 256 || n.len() > 1024 {
                    return Err(format!(
                        "an RSA modulus of {} bits (2048 to 8192 accepted)",
                        n.len() * 8
                    ));
                }
                if e.is_empty() || e.len() > 8 {
                    return Err("an RSA exponent out of range".into());
                }
                Material::Rsa { n, e }
            }
            "OKP" => {
                if text("crv")? != Some("Ed25519") {
                    return Err("an OKP key on a curve other than Ed25519".into());
                }
                let x = <[u8; 32]>::try_from(bytes("x")?.as_slice())
                    .map_err(|_| "an Ed25519 key that is not 32 bytes".to_owned())?;
                Material::Ed25519(x)
            }
            other => return Err(format!("key type `{}`", sanitize(other, 16))),
        };
        Ok(VerifyingJwk {
            kid: text("kid")?.map(str::to_owned),
            alg: text("alg")?.map(str::to_owned),
            material,
        })
    }

    /// The key's `kid`, if it has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The key's `alg` member, as sent, if it has one.
    pub fn alg(&self) -> Option<&str> {
        self.alg.as_deref()
    }

    /// The key type: `EC`, `RSA` or `OKP`.
    pub fn kty(&self) -> &'static str {
        match self.material {
            Material::P256(_) => "EC",
            Material::Rsa { .. } => "RSA",
            Material::Ed25519(_) => "OKP",
        }
    }

    /// Can `alg` be verified with this key: the key type and curve fit, and the JWK's own
    /// `alg`, when it has one, names the same algorithm?
    ///
    /// # Errors
    /// [`VerificationError::KeyMismatch`](crate::jose::VerificationError::KeyMismatch).
    pub fn check_alg(&self, alg: JwsAlgorithm) -> Result<(), V> {
        let fits = matches!(
            (&self.material, alg),
            (Material::P256(_), JwsAlgorithm::Es256)
                | (
                    Material::Rsa { .. },
                    JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256
                )
                | (Material::Ed25519(_), JwsAlgorithm::EdDsa)
        );
        if !fits {
            return Err(V::KeyMismatch(format!(
                "a {} key cannot verify {alg}",
                self.kty()
            )));
        }
        if let Some(own) = &self.alg {
            if JwsAlgorithm::from_name(own) != Some(alg) {
                return Err(V::KeyMismatch(format!(
                    "the key is for `{}`, the token uses {alg}",
                    sanitize(own, 16)
                )));
            }
        }
        Ok(())
    }

    /// Verify `signature` over `signing_input` with `alg` (raw `r || s` for ES256).
    ///
    /// # Errors
    /// [`KeyMismatch`](crate::jose::VerificationError::KeyMismatch) when `alg` does not fit
    /// the key, [`BadSignature`](crate::jose::VerificationError::BadSignature) otherwise.
    pub fn verify(
        &self,
        alg: JwsAlgorithm,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), V> {
        self.check_alg(alg)?;
        let ok = match (&self.material, alg) {
            (Material::P256(point), JwsAlgorithm::Es256) => {
                signature.len() == 64
                    && rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_FIXED, point)
                        .verify(signing_input, signature)
                        .is_ok()
            }
            (Material::Rsa { n, e }, JwsAlgorithm::Rs256 | JwsAlgorithm::Ps256) => {
                let params = if alg == JwsAlgorithm::Rs256 {
                    &rs::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &rs::RSA_PSS_2048_8192_SHA256
                };
                rs::RsaPublicKeyComponents { n, e }
                    .verify(params, signing_input, signature)
                    .is_ok()
            }
            (Material::Ed25519(x), JwsAlgorithm::EdDsa) => {
                rs::UnparsedPublicKey::new(&rs::ED25519, x)
                    .verify(signing_input, signature)
                    .is_ok()
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(V::BadSignature)
        }
    }
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let lead = v.iter().take_while(|b| **b == 0).count();
    v.drain(..lead);
    v
}

/// A compact JWS split and decoded, its signature not yet checked.
#[derive(Debug)]
pub(crate) struct CompactJws<'a> {
    pub(crate) header: Map<String, Value>,
    pub(crate) alg: JwsAlgorithm,
    pub(crate) kid: Option<String>,
    pub(crate) payload: Vec<u8>,
    pub(crate) signing_input: &'a str,
    pub(crate) signature: Vec<u8>,
}

impl<'a> CompactJws<'a> {
    /// Split and decode `token`, refusing every algorithm not in `allowed` (and always `none`
    /// and `HS*`) before anything else is decoded, and headers with `crit` (no extension is
    /// understood here).
    pub(crate) fn parse(token: &'a str, allowed: &[JwsAlgorithm]) -> Result<Self, V> {
        if token.len() > MAX_JWS_LEN {
            return Err(V::Malformed(format!("longer than {MAX_JWS_LEN} bytes")));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(V::Malformed("not a compact JWS (three parts)".into()));
        };
        let header = decode_object(h).ok_or_else(|| V::Malformed("header".into()))?;
        let alg = match header.get("alg") {
            Some(Value::String(a)) => a,
            _ => return Err(V::Malformed("no `alg` in the header".into())),
        };
        let alg = JwsAlgorithm::from_name(alg)
            .filter(|a| allowed.contains(a))
            .ok_or_else(|| V::AlgorithmNotAllowed(sanitize(alg, 32)))?;
        if header.contains_key("crit") {
            return Err(V::Malformed(
                "`crit` header extensions are not supported".into(),
            ));
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(V::Malformed("`kid` is not a string".into())),
        };
        let payload = b64_decode(p).map_err(|_| V::Malformed("payload is not base64url".into()))?;
        let signature =
            b64_decode(s).map_err(|_| V::Malformed("signature is not base64url".into()))?;
        if signature.is_empty() {
            return Err(V::BadSignature);
        }
        Ok(CompactJws {
            header,
            alg,
            kid,
            payload,
            signing_input: &token[..h.len() + 1 + p.len()],
            signature,
        })
    }

    /// Check the signature with `key`.
    pub(crate) fn verify(&self, key: &VerifyingJwk) -> Result<(), V> {
        key.verify(self.alg, self.signing_input.as_bytes(), &self.signature)
    }
}

fn decode_object(part: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&b64_decode(part).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Verify a compact JWS with one known key and return its payload: the algorithm must be in
/// `allowed` and fit `key`.
///
/// # Errors
/// [`Error::Verification`](crate::Error::Verification) naming what failed.
pub fn verify_compact(
    token: &str,
    key: &VerifyingJwk,
    allowed: &[JwsAlgorithm],
) -> crate::error::Result<Vec<u8>> {
    let jws = CompactJws::parse(token, allowed).map_err(crate::error::Error::Verification)?;
    jws.verify(key).map_err(crate::error::Error::Verification)?;
    Ok(jws.payload)
}

#[cfg(test)]
mod tests;
