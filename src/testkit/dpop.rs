//! DPoP proof verification (RFC 9449 §4.3) and server nonces (§8, §9).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::HeaderMap;
use serde_json::Value;
use url::Url;

use super::jose::{parse_public_jwk, random_token, sha256_b64, Jws};

/// How far a proof's `iat` may be from the server clock.
pub(crate) const IAT_WINDOW: i64 = 60;

/// Rotating nonces: the current and the previous value are accepted.
#[derive(Debug)]
pub(crate) struct Nonces {
    current: String,
    previous: String,
    rotated: Instant,
    every: Duration,
}

impl Nonces {
    pub(crate) fn new(every: Duration) -> Self {
        Nonces {
            current: random_token(),
            previous: random_token(),
            rotated: Instant::now(),
            every: every.max(Duration::from_millis(1)),
        }
    }

    fn rotate_if_due(&mut self) {
        let elapsed = self.rotated.elapsed();
        if elapsed >= self.every.saturating_mul(2) {
            // Both values are stale.
            self.previous = random_token();
            self.current = random_token();
            self.rotated = Instant::now();
        } else if elapsed >= self.every {
            self.previous = std::mem::replace(&mut self.current, random_token());
            self.rotated = Instant::now();
        }
    }

    /// The nonce to hand out now.
    pub(crate) fn current(&mut self) -> String {
        self.rotate_if_due();
        self.current.clone()
    }

    /// Is `nonce` the current or the previous value?
    pub(crate) fn accepts(&mut self, nonce: &str) -> bool {
        self.rotate_if_due();
        nonce == self.current || nonce == self.previous
    }
}

/// Proof `jti`s seen recently, to refuse replays.
#[derive(Debug, Default)]
pub(crate) struct ReplayCache {
    seen: HashMap<String, i64>,
}

impl ReplayCache {
    /// Record `key` until `until` (unix seconds); false when it was already recorded.
    pub(crate) fn insert(&mut self, key: String, until: i64, now: i64) -> bool {
        if self.seen.len() > 10_000 {
            self.seen.retain(|_, exp| *exp >= now);
        }
        match self.seen.get(&key) {
            Some(exp) if *exp >= now => false,
            _ => {
                self.seen.insert(key, until);
                true
            }
        }
    }
}

/// A proof that passed every check.
#[derive(Debug, Clone)]
pub(crate) struct Proof {
    /// JWK SHA-256 thumbprint of the proof key.
    pub(crate) jkt: String,
}

/// Why a proof was refused.
#[derive(Debug)]
pub(crate) enum ProofError {
    /// `invalid_dpop_proof` with a description.
    Invalid(String),
    /// `use_dpop_nonce`: the proof lacks the current server nonce.
    UseNonce,
}

/// What a proof must match.
pub(crate) struct Expect<'a> {
    /// The request method (`htm`).
    pub(crate) method: &'a str,
    /// Acceptable `htu` values (compared without query and fragment).
    pub(crate) urls: &'a [Url],
    /// The access token the proof must hash (`ath`), at a resource.
    pub(crate) access_token: Option<&'a str>,
    /// Whether a nonce must be present.
    pub(crate) nonce_required: bool,
    /// Server clock, unix seconds.
    pub(crate) now: i64,
}

/// Check the `DPoP` header of a request, if there is one. `nonces` and `replay` belong to the
/// endpoint (authorization server or resource).
pub(crate) fn verify_request(
    headers: &HeaderMap,
    expect: &Expect<'_>,
    nonces: &mut Nonces,
    replay: &mut ReplayCache,
) -> Result<Option<Proof>, ProofError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("more than one DPoP header"));
    }
    let token = value
        .to_str()
        .map_err(|_| invalid("DPoP header is not ASCII"))?;
    let jws = Jws::parse(token.trim()).map_err(invalid)?;

    if jws.header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(invalid("typ must be dpop+jwt"));
    }
    if jws.alg() != Some("ES256") {
        return Err(invalid("unsupported alg, only ES256 is accepted"));
    }
    let jwk = jws
        .header
        .get("jwk")
        .ok_or_else(|| invalid("jwk header missing"))?;
    let key = parse_public_jwk(jwk).map_err(invalid)?;
    if !jws.verify(&key.key) {
        return Err(invalid("signature verification failed"));
    }

    let jti = jws
        .str_claim("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid("jti missing"))?;
    if jws.str_claim("htm") != Some(expect.method) {
        return Err(invalid("htm mismatch"));
    }
    let htu = jws.str_claim("htu").ok_or_else(|| invalid("htu missing"))?;
    let htu = Url::parse(htu).map_err(|_| invalid("htu is not a URL"))?;
    if !expect.urls.iter().any(|u| same_target(u, &htu)) {
        return Err(invalid("htu mismatch"));
    }
    let iat = jws.num_claim("iat").ok_or_else(|| invalid("iat missing"))?;
    if iat.abs_diff(expect.now) > IAT_WINDOW.unsigned_abs() {
        return Err(invalid("iat outside the acceptable window"));
    }
    match (expect.access_token, jws.str_claim("ath")) {
        (Some(at), Some(ath)) if ath == sha256_b64(at.as_bytes()) => {}
        (Some(_), Some(_)) => return Err(invalid("ath mismatch")),
        (Some(_), None) => return Err(invalid("ath missing")),
        (None, _) => {}
    }
    match jws.claims.get("nonce") {
        None if expect.nonce_required => return Err(ProofError::UseNonce),
        None => {}
        Some(Value::String(n)) if nonces.accepts(n) => {}
        Some(_) => return Err(ProofError::UseNonce),
    }
    if !replay.insert(
        format!("{}:{jti}", key.thumbprint),
        iat + IAT_WINDOW + 1,
        expect.now,
    ) {
        return Err(invalid("DPoP proof jti replayed"));
    }
    Ok(Some(Proof {
        jkt: key.thumbprint,
    }))
}

fn invalid(msg: impl Into<String>) -> ProofError {
    ProofError::Invalid(msg.into())
}

/// Same scheme, host, port and path (query and fragment ignored, RFC 9449 §4.3).
pub(crate) fn same_target(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn nonces_rotate_and_accept_previous() {
        let mut n = Nonces::new(Duration::from_millis(30));
        let first = n.current();
        assert!(n.accepts(&first));
        std::thread::sleep(Duration::from_millis(35));
        let second = n.current();
        assert_ne!(first, second);
        assert!(n.accepts(&first));
        std::thread::sleep(Duration::from_millis(65));
        assert!(!n.accepts(&first));
    }

    #[test]
    fn replay_cache_refuses_duplicates() {
        let mut c = ReplayCache::default();
        assert!(c.insert("a".into(), 100, 10));
        assert!(!c.insert("a".into(), 100, 10));
        assert!(c.insert("a".into(), 300, 200));
    }

    #[test]
    fn target_comparison_ignores_query() {
        let a = Url::parse("http://127.0.0.1:80/api/x").unwrap();
        let b = Url::parse("http://127.0.0.1/api/x?q=1#f").unwrap();
        assert!(same_target(&a, &b));
        let c = Url::parse("http://127.0.0.1/api/y").unwrap();
        assert!(!same_target(&a, &c));
    }
}
