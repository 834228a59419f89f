//! What a verified JWT must also satisfy (RFC 7519 §4.1, RFC 9068 §4): the issuer, the
//! validity window with clock skew, and optionally an audience.

use std::time::Duration;

use serde_json::{Map, Value};

use super::verify::{CompactJws, JwsAlgorithm, VerifyingJwk};
use crate::error::{sanitize, VerificationError as V};

/// How a JWT's claims are checked once its signature verifies.
///
/// ```
/// use agent_oauth::jose::{JwsAlgorithm, Validation};
/// use std::time::Duration;
/// let v = Validation::new("https://as.example.com")
///     .audience("https://api.example.com")
///     .leeway(Duration::from_secs(30))
///     .algorithms([JwsAlgorithm::Es256]);
/// assert_eq!(v.issuer(), "https://as.example.com");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    issuer: String,
    audience: Option<String>,
    leeway: Duration,
    algorithms: Vec<JwsAlgorithm>,
}

impl Validation {
    /// `iss` must equal `issuer` exactly; `exp` is required and `nbf`/`iat` checked, with 60
    /// seconds of clock skew; every algorithm of [`JwsAlgorithm::ALL`] accepted; no audience
    /// check.
    pub fn new(issuer: impl Into<String>) -> Self {
        Validation {
            issuer: issuer.into(),
            audience: None,
            leeway: Duration::from_secs(60),
            algorithms: JwsAlgorithm::ALL.to_vec(),
        }
    }

    /// Also require `audience` among the token's `aud` values.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The clock skew allowed on `exp`, `nbf` and `iat` (default 60 seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Accept only these algorithms (a subset of [`JwsAlgorithm::ALL`]; `none` and `HS*` can
    /// never be accepted).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = JwsAlgorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// The expected issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The algorithms accepted.
    pub fn allowed_algorithms(&self) -> &[JwsAlgorithm] {
        &self.algorithms
    }

    /// Check `claims` at `now` (seconds since the epoch).
    ///
    /// # Errors
    /// The [`VerificationError`](crate::jose::VerificationError) of the first claim that fails.
    pub fn check_claims(&self, claims: &Map<String, Value>, now: i64) -> Result<(), V> {
        match claims.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            other => {
                return Err(V::IssuerMismatch {
                    expected: sanitize(&self.issuer, 200),
                    found: other.map(|v| match v {
                        Value::String(s) => sanitize(s, 200),
                        v => sanitize(&v.to_string(), 64),
                    }),
                })
            }
        }
        let leeway = i64::try_from(self.leeway.as_secs()).unwrap_or(i64::MAX);
        let exp =
            numeric(claims, "exp")?.ok_or_else(|| V::InvalidClaim("`exp` is missing".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(V::Expired);
        }
        for name in ["nbf", "iat"] {
            if let Some(t) = numeric(claims, name)? {
                if t > now.saturating_add(leeway) {
                    return Err(V::NotYetValid);
                }
            }
        }
        let aud_ok = match claims.get("aud") {
            None | Some(Value::String(_)) => true,
            Some(Value::Array(a)) => a.iter().all(Value::is_string),
            Some(_) => false,
        };
        if !aud_ok {
            return Err(V::InvalidClaim(
                "`aud` is not a string or an array of strings".into(),
            ));
        }
        if let Some(want) = &self.audience {
            if !crate::jwt::audiences(claims).iter().any(|a| a == want) {
                return Err(V::AudienceMismatch(sanitize(want, 200)));
            }
        }
        Ok(())
    }
}

/// A NumericDate claim (RFC 7519 §2) as whole seconds; fractions are cut.
fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, V> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.abs() < 1e15)
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| V::InvalidClaim(format!("`{name}` is out of range"))),
        Some(_) => Err(V::InvalidClaim(format!("`{name}` is not a number"))),
    }
}

/// A JWT whose signature, algorithm, key, issuer and validity window were verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedJwt {
    pub(crate) header: Map<String, Value>,
    pub(crate) claims: Map<String, Value>,
}

impl VerifiedJwt {
    /// The protected header.
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }

    /// The verified claims.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// A claim.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.claims.get(name)
    }

    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The header's `alg`.
    pub fn alg(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }
}

/// The keys of `keys` that may have signed a token with `kid` and `alg`: those with that
/// `kid` (or, for a token without one, every key) whose type, curve and `alg` fit.
///
/// # Errors
/// [`V::UnknownKey`] when no key has the `kid` (or none fits a token without one),
/// [`V::KeyMismatch`] when keys with the `kid` exist but none fits `alg`.
pub(crate) fn candidates<'k>(
    keys: &'k [VerifyingJwk],
    kid: Option<&str>,
    alg: JwsAlgorithm,
) -> Result<Vec<&'k VerifyingJwk>, V> {
    let named: Vec<&VerifyingJwk> = match kid {
        Some(kid) => keys.iter().filter(|k| k.kid() == Some(kid)).collect(),
        None => keys.iter().collect(),
    };
    if named.is_empty() {
        return Err(V::UnknownKey(kid.map(|k| sanitize(k, 64))));
    }
    let mut mismatch = None;
    let fit: Vec<&VerifyingJwk> = named
        .into_iter()
        .filter(|k| match k.check_alg(alg) {
            Ok(()) => true,
            Err(e) => {
                mismatch.get_or_insert(e);
                false
            }
        })
        .collect();
    match (fit.is_empty(), kid, mismatch) {
        (false, _, _) => Ok(fit),
        (true, Some(_), Some(e)) => Err(e),
        (true, _, _) => Err(V::UnknownKey(None)),
    }
}

/// Verify a parsed JWS with `keys` (see [`candidates`]) and check its claims at `now`.
pub(crate) fn verify_parsed(
    jws: &CompactJws<'_>,
    keys: &[VerifyingJwk],
    validation: &Validation,
    now: i64,
) -> Result<VerifiedJwt, V> {
    let found = candidates(keys, jws.kid.as_deref(), jws.alg)?;
    if !found.iter().any(|k| jws.verify(k).is_ok()) {
        return Err(V::BadSignature);
    }
    let claims = match serde_json::from_slice(&jws.payload) {
        Ok(Value::Object(claims)) => claims,
        _ => return Err(V::Malformed("the payload is not a JSON object".into())),
    };
    validation.check_claims(&claims, now)?;
    Ok(VerifiedJwt {
        header: jws.header.clone(),
        claims,
    })
}

/// Verify a compact JWT with a known set of public keys (no fetching) and check its claims
/// against `validation` at the current system time.
///
/// # Errors
/// [`Error::Verification`](crate::Error::Verification) naming what failed.
pub fn verify_jwt(
    token: &str,
    keys: &[VerifyingJwk],
    validation: &Validation,
) -> crate::error::Result<VerifiedJwt> {
    let now = crate::clock::unix_secs(std::time::SystemTime::now());
    let jws = CompactJws::parse(token, validation.allowed_algorithms())
        .map_err(crate::error::Error::Verification)?;
    verify_parsed(&jws, keys, validation, now).map_err(crate::error::Error::Verification)
}
