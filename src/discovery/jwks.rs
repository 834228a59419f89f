//! An authorization server's signing keys (RFC 7517 §5 JWK Set, RFC 8414 §2 `jwks_uri`),
//! fetched, cached and refreshed on an unknown `kid`, and the verification of JWT access
//! tokens (RFC 9068) against them.
//!
//! [`Jwks`] fetches the set from the `jwks_uri` of the server's metadata (or a URL given
//! directly) through the server's transport, so the same HTTPS rules apply as to every other
//! discovery fetch; a `jwks_uri` on another origin than the issuer must not point at a
//! loopback, private or link-local address (the [`TrustPolicy`] rule for endpoints). The
//! document is size-limited and every malformed part is a typed error. A token whose `kid`
//! is not in the cached set makes the set be fetched again, at most once per
//! [`JwksConfig::min_refetch_interval`], so a flood of tokens with invented `kid`s costs the
//! server one request per interval, not one per token.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde_json::Value;
use url::Url;

use super::server_metadata::get_json;
use super::{AuthorizationServer, TrustPolicy};
use crate::error::{sanitize, Error, ErrorContext, Result, VerificationError};
use crate::jose::{verify_parsed, CompactJws, Validation, VerifiedJwt, VerifyingJwk};
use crate::transport::{expect_json, HttpTransport, RetryPolicy};

/// Limits and timing of a [`Jwks`] cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksConfig {
    /// The shortest time between two fetches caused by unknown `kid`s or
    /// [`Jwks::refresh`] (default 30 seconds). Fetches of an empty or expired cache are not
    /// limited.
    pub min_refetch_interval: Duration,
    /// How long a fetched set is used before the next verification fetches it again (default
    /// one hour).
    pub ttl: Duration,
    /// The largest JWKS document accepted, in bytes (default 64 KiB).
    pub max_bytes: usize,
    /// The most keys a set may hold (default 32).
    pub max_keys: usize,
}

impl Default for JwksConfig {
    fn default() -> Self {
        JwksConfig {
            min_refetch_interval: Duration::from_secs(30),
            ttl: Duration::from_secs(3600),
            max_bytes: 64 * 1024,
            max_keys: 32,
        }
    }
}

impl JwksConfig {
    /// Set [`min_refetch_interval`](Self::min_refetch_interval).
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// Set [`ttl`](Self::ttl).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Set [`max_bytes`](Self::max_bytes).
    pub fn max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    /// Set [`max_keys`](Self::max_keys).
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }
}

/// The keys of one fetch.
#[derive(Debug)]
struct KeySet {
    keys: Vec<VerifyingJwk>,
    at: Instant,
}

#[derive(Debug)]
enum Source {
    Server(AuthorizationServer),
    Url(Url, HttpTransport),
}

#[derive(Debug)]
struct Inner {
    issuer: String,
    source: Source,
    config: JwksConfig,
    keys: ArcSwapOption<KeySet>,
    fetch: tokio::sync::Mutex<()>,
    last_fetch: Mutex<Option<Instant>>,
}

/// The JWK Set (RFC 7517 §5) of one authorization server, fetched from its metadata's
/// `jwks_uri` through its transport, cached for [`JwksConfig::ttl`], and fetched again when a
/// token names an unknown `kid` (at most once per [`JwksConfig::min_refetch_interval`], so
/// invented `kid`s cannot make it hammer the server). A `jwks_uri` on another origin than the
/// issuer must not point at a loopback, private or link-local address; the document is
/// capped at [`JwksConfig::max_bytes`] and [`JwksConfig::max_keys`].
///
/// Cheap to clone; clones share the cache. One `Jwks` per server is meant to be shared by
/// every verification against it.
///
/// ```no_run
/// # async fn run(agent: agent_oauth::Agent, token: agent_oauth::AccessToken) -> agent_oauth::Result<()> {
/// use agent_oauth::discovery::Jwks;
/// use agent_oauth::jose::Validation;
/// let server = agent.client().expect("configured issuer").server().clone();
/// let jwks = Jwks::new(server);
/// let jwt = jwks.verify(token.secret(), &Validation::new(jwks.issuer())).await?;
/// println!("{:?}", jwt.claim("sub"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Jwks {
    inner: Arc<Inner>,
}

impl Jwks {
    /// The keys of `server`, from its metadata's `jwks_uri`, with the default [`JwksConfig`].
    pub fn new(server: AuthorizationServer) -> Self {
        Self::with_config(server, JwksConfig::default())
    }

    /// As [`new`](Self::new), with `config`.
    pub fn with_config(server: AuthorizationServer, config: JwksConfig) -> Self {
        Self::build(server.issuer().to_owned(), Source::Server(server), config)
    }

    /// The keys at `jwks_uri`, for tokens of `issuer`, fetched through `transport`.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that does not parse, [`Error::InsecureUrl`] for one the
    /// transport refuses (HTTP off loopback), [`Error::Discovery`] for one on another origin
    /// than the issuer that points at an internal address.
    pub fn from_url(
        issuer: &str,
        jwks_uri: &str,
        transport: HttpTransport,
        config: JwksConfig,
    ) -> Result<Self> {
        let url = checked_url(issuer, jwks_uri, &transport)?;
        Ok(Self::build(
            issuer.to_owned(),
            Source::Url(url, transport),
            config,
        ))
    }

    fn build(issuer: String, source: Source, config: JwksConfig) -> Self {
        Jwks {
            inner: Arc::new(Inner {
                issuer,
                source,
                config,
                keys: ArcSwapOption::empty(),
                fetch: tokio::sync::Mutex::new(()),
                last_fetch: Mutex::new(None),
            }),
        }
    }

    /// The issuer whose keys these are.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The limits in use.
    pub fn config(&self) -> &JwksConfig {
        &self.inner.config
    }

    fn transport(&self) -> &HttpTransport {
        match &self.inner.source {
            Source::Server(s) => s.transport(),
            Source::Url(_, t) => t,
        }
    }

    /// The cached keys, fetched first when there are none or they are older than the TTL.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn keys(&self) -> Result<Vec<VerifyingJwk>> {
        Ok(self.current().await?.keys.clone())
    }

    /// Forget the cached keys; the next verification fetches them.
    pub fn invalidate(&self) {
        self.inner.keys.store(None);
    }

    async fn current(&self) -> Result<Arc<KeySet>> {
        let fresh = |s: &Arc<KeySet>| s.at.elapsed() < self.inner.config.ttl;
        if let Some(set) = self.inner.keys.load_full().filter(fresh) {
            return Ok(set);
        }
        let _guard = self.inner.fetch.lock().await;
        if let Some(set) = self.inner.keys.load_full().filter(fresh) {
            return Ok(set);
        }
        self.fetch_now().await
    }

    /// Fetch the set now (under the fetch lock held by the caller).
    async fn fetch_now(&self) -> Result<Arc<KeySet>> {
        let url = match &self.inner.source {
            Source::Url(u, _) => u.clone(),
            Source::Server(server) => {
                let md = server.metadata().await?;
                let uri = md.jwks_uri.as_deref().ok_or_else(|| {
                    Error::Discovery(format!(
                        "the metadata of `{}` names no jwks_uri",
                        sanitize(&self.inner.issuer, 200)
                    ))
                })?;
                checked_url(&self.inner.issuer, uri, server.transport())?
            }
        };
        let ctx = ErrorContext::new("JWKS request", &url);
        let resp = self
            .transport()
            .execute(RetryPolicy::Idempotent, || get_json(&url))
            .await
            .map_err(|e| e.with_context(&ctx))?;
        let body = expect_json(&resp, "JWKS").map_err(|e| e.with_context(&ctx))?;
        let keys = parse_jwks(body, &self.inner.config).map_err(|e| e.with_context(&ctx))?;
        let set = Arc::new(KeySet {
            keys,
            at: Instant::now(),
        });
        self.inner.keys.store(Some(set.clone()));
        Ok(set)
    }

    /// Fetch the set again now, unless a refetch (this or one for an unknown `kid`) happened
    /// within the last [`min_refetch_interval`](JwksConfig::min_refetch_interval); then the
    /// cached set is kept. Returns whether it fetched.
    ///
    /// # Errors
    /// Transport errors, [`Error::Discovery`] when the metadata names no `jwks_uri` or one
    /// the rules refuse, [`Error::InvalidResponse`] for a malformed or oversized document,
    /// one with too many keys or with no usable signing key.
    pub async fn refresh(&self) -> Result<bool> {
        let _guard = self.inner.fetch.lock().await;
        if !self.take_refetch() {
            return Ok(false);
        }
        self.fetch_now().await.map(|_| true)
    }

    /// May a refetch happen now (none within the interval)? If so, it is counted as made.
    fn take_refetch(&self) -> bool {
        let mut last = crate::sync::lock(&self.inner.last_fetch);
        let allowed = last.is_none_or(|t| t.elapsed() >= self.inner.config.min_refetch_interval);
        if allowed {
            *last = Some(Instant::now());
        }
        allowed
    }

    /// Verify a compact JWT signed by one of these keys and check its claims against
    /// `validation`. A `kid` not in the cached set causes one refetch (rate-limited, see
    /// [`JwksConfig::min_refetch_interval`]) before the token is refused.
    ///
    /// # Errors
    /// [`Error::Verification`] naming what failed (algorithm, key, signature, issuer, time
    /// window, audience); the errors of fetching the set.
    pub async fn verify(&self, token: &str, validation: &Validation) -> Result<VerifiedJwt> {
        let jws = CompactJws::parse(token, validation.allowed_algorithms())
            .map_err(Error::Verification)?;
        let now = crate::clock::unix_secs(self.transport().clock().now());
        let set = self.current().await?;
        match verify_parsed(&jws, &set.keys, validation, now) {
            Err(VerificationError::UnknownKey(Some(kid))) => {
                let refetched = {
                    let _guard = self.inner.fetch.lock().await;
                    let latest = self.inner.keys.load_full();
                    match latest {
                        // Another caller fetched while this one waited.
                        Some(l) if !Arc::ptr_eq(&l, &set) => Some(l),
                        _ if self.take_refetch() => Some(self.fetch_now().await?),
                        _ => None,
                    }
                };
                match refetched {
                    Some(set) => verify_parsed(&jws, &set.keys, validation, now),
                    None => Err(VerificationError::UnknownKey(Some(kid))),
                }
            }
            other => other,
        }
        .map_err(Error::Verification)
    }
}

#[allow(dead_code)]
fn _assert_send_sync(jwks: &Jwks, v: &Validation) {
    fn check<T: Send + Sync + Clone>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    check(jwks);
    send(&jwks.verify("", v));
    send(&jwks.refresh());
}

/// The `jwks_uri` as a URL the transport may fetch: its HTTPS rules, and no internal address
/// off the issuer's origin.
fn checked_url(issuer: &str, uri: &str, transport: &HttpTransport) -> Result<Url> {
    let url = Url::parse(uri).map_err(|e| Error::config(format!("jwks_uri is not a URL: {e}")))?;
    transport.check(&url)?;
    let same_origin = Url::parse(issuer).is_ok_and(|i| i.origin() == url.origin());
    if !same_origin {
        TrustPolicy::any_https().check_endpoint(issuer, url.as_str())?;
    }
    Ok(url)
}

/// Parse a JWK Set document: an object with a `keys` array of at most `max_keys` JWKs, at
/// most `max_bytes` long. Keys this crate cannot verify with (other types, curves or uses,
/// malformed members) are skipped; a set left with none is an error.
pub(crate) fn parse_jwks(body: &[u8], config: &JwksConfig) -> Result<Vec<VerifyingJwk>> {
    if body.len() > config.max_bytes {
        return Err(Error::invalid(format!(
            "JWKS of {} bytes, over the limit of {}",
            body.len(),
            config.max_bytes
        )));
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("JWKS: {}", sanitize(&e.to_string(), 200))))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::invalid("JWKS: no `keys` array"))?;
    if keys.len() > config.max_keys {
        return Err(Error::invalid(format!(
            "JWKS: {} keys, more than the limit of {}",
            keys.len(),
            config.max_keys
        )));
    }
    let mut usable = Vec::with_capacity(keys.len());
    for key in keys {
        match VerifyingJwk::from_json(key) {
            Ok(k) => usable.push(k),
            Err(why) => {
                tracing::debug!(target: "agent_oauth", %why, "JWKS key skipped");
            }
        }
    }
    if usable.is_empty() {
        return Err(Error::invalid("JWKS: no usable signing key"));
    }
    Ok(usable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jwks_document_limits_and_shape() {
        let config = JwksConfig::default();
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "a",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"});
        let doc = |keys: Value| json!({ "keys": keys }).to_string().into_bytes();
        let keys = parse_jwks(&doc(json!([ec, {"kty": "oct", "k": "AA"}])), &config)
            .expect("one usable key");
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid(), Some("a"));
        let message = |body: &[u8], config: &JwksConfig| match parse_jwks(body, config) {
            Err(Error::InvalidResponse(m)) => m,
            other => panic!("expected InvalidResponse, got {other:?}"),
        };
        assert!(message(b"not json", &config).starts_with("JWKS: "));
        assert!(message(b"[]", &config).contains("no `keys` array"));
        assert!(message(br#"{"keys": {}}"#, &config).contains("no `keys` array"));
        assert!(message(&doc(json!([])), &config).contains("no usable signing key"));
        assert!(message(&doc(json!([1, "x", null])), &config).contains("no usable"));
        let many = doc(Value::Array(vec![ec.clone(); 33]));
        assert!(message(&many, &config).contains("33 keys"));
        let small = config.clone().max_bytes(64);
        assert!(message(&doc(json!([ec])), &small).contains("over the limit of 64"));
        // Deep nesting is refused by the JSON parser, not the stack.
        let deep = format!("{{\"keys\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(message(deep.as_bytes(), &config.clone().max_bytes(1 << 20)).starts_with("JWKS"));
    }

    #[test]
    fn jwks_uri_must_pass_transport_and_ssrf_rules() {
        let t = HttpTransport::new().expect("transport");
        let issuer = "https://as.example.com";
        assert!(checked_url(issuer, "https://as.example.com/jwks", &t).is_ok());
        assert!(checked_url(issuer, "https://keys.example.net/jwks", &t).is_ok());
        assert!(matches!(
            checked_url(issuer, "http://as.example.com/jwks", &t),
            Err(Error::InsecureUrl { .. })
        ));
        for internal in [
            "https://10.0.0.8/jwks",
            "https://169.254.169.254/jwks",
            "https://localhost/jwks",
        ] {
            assert!(
                matches!(checked_url(issuer, internal, &t), Err(Error::Discovery(_))),
                "{internal}"
            );
        }
        assert!(matches!(
            checked_url(issuer, "not a url", &t),
            Err(Error::Config(_))
        ));
        // An issuer on loopback may keep its keys on its own origin.
        assert!(checked_url("http://127.0.0.1:8080", "http://127.0.0.1:8080/jwks", &t).is_ok());
    }
}
