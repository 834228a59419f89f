//! Sources of externally issued JWTs: the assertions of workload identity.
//!
//! A workload on a platform often holds no long-lived secret. The platform hands it a short-lived
//! signed identity instead: a Kubernetes projected service-account token, a SPIFFE JWT-SVID, a
//! cloud workload token, an ID token from an enterprise identity provider. An
//! [`AssertionSource`] says where that token comes from:
//!
//! - [`file`](AssertionSource::file): a file the platform rewrites in place when it rotates
//!   the token (Kubernetes' projected volumes, the SPIFFE helper). The file is looked at on every
//!   use and re-read as soon as it changes.
//! - [`env`](AssertionSource::env): an environment variable, read on every use.
//! - [`command`](AssertionSource::command): a program that prints the token on standard output
//!   (a cloud CLI, a metadata-server helper), run again shortly before the token expires.
//! - [`from_fn`](AssertionSource::from_fn): any async closure.
//! - [`fixed`](AssertionSource::fixed): a token the caller already holds.
//!
//! Assertions are cached and renewed before they expire: a JWT's `exp` (read without
//! verification: the authorization server verifies it) tells when. A source whose renewal fails
//! while its cached assertion is still valid keeps serving the cached one. An assertion that has
//! expired is never handed out ([`Error::Assertion`]).
//!
//! A source is used as the grant of RFC 7523 ([`OAuthClient::jwt_bearer_from`]) or as a client
//! assertion ([`ClientAuth::client_assertion`], [`ClientAuth::spiffe_jwt_svid`]).
//!
//! [`OAuthClient::jwt_bearer_from`]: crate::OAuthClient::jwt_bearer_from
//! [`ClientAuth::client_assertion`]: crate::ClientAuth::client_assertion
//! [`ClientAuth::spiffe_jwt_svid`]: crate::ClientAuth::spiffe_jwt_svid

mod read;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::secret::SecretString;

/// The largest assertion read from a file, variable or command, in bytes.
pub const MAX_ASSERTION_LEN: usize = 64 * 1024;

/// The boxed future an [`AssertionSource::from_fn`] closure returns.
pub type AssertionFuture = Pin<Box<dyn Future<Output = Result<SecretString>> + Send>>;

type Producer = Arc<dyn Fn() -> AssertionFuture + Send + Sync>;

/// Where an externally issued assertion (a JWT) comes from; cheap to clone (clones share the
/// cache).
#[derive(Clone)]
pub struct AssertionSource {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    renew_before: Duration,
    timeout: Duration,
    cache: tokio::sync::Mutex<Option<Cached>>,
}

enum Kind {
    Fixed(SecretString),
    File(PathBuf),
    Env(String),
    Command { program: String, args: Vec<String> },
    Closure(Producer),
}

/// An assertion as last obtained.
struct Cached {
    value: SecretString,
    exp: Option<SystemTime>,
    iat: Option<SystemTime>,
    /// For files: what the file looked like when it was read.
    stamp: Option<read::FileStamp>,
}

impl fmt::Debug for AssertionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssertionSource")
            .field("origin", &self.origin())
            .field("renew_before", &self.inner.renew_before)
            .finish_non_exhaustive()
    }
}

impl AssertionSource {
    fn with(kind: Kind) -> Self {
        AssertionSource {
            inner: Arc::new(Inner {
                kind,
                renew_before: Duration::from_secs(60),
                timeout: Duration::from_secs(10),
                cache: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// A token the caller already holds. It is handed out until it expires.
    pub fn fixed(assertion: impl Into<SecretString>) -> Self {
        Self::with(Kind::Fixed(assertion.into()))
    }

    /// A file holding the token (surrounding whitespace ignored), re-read whenever its
    /// modification time, size or identity changes, and when the token read last is about to
    /// expire. Platforms rotate such files in place or by renaming a new one over them; both
    /// are seen.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::with(Kind::File(path.into()))
    }

    /// An environment variable holding the token, read on every use.
    pub fn env(variable: impl Into<String>) -> Self {
        Self::with(Kind::Env(variable.into()))
    }

    /// A program that prints the token on standard output and exits 0. It runs without a shell,
    /// with `args`, and again only when the token it printed last is about to expire (every use
    /// when what it prints is not a JWT with an `exp`). Its standard error is not read; a
    /// program that runs longer than the [timeout](Self::timeout) (default 10 s) is killed.
    pub fn command<I, S>(program: impl Into<String>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with(Kind::Command {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        })
    }

    /// An async closure producing the token, called again when the token it produced last is
    /// about to expire (every use when it is not a JWT with an `exp`).
    pub fn from_fn<F, Fut>(produce: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<SecretString>> + Send + 'static,
    {
        Self::with(Kind::Closure(Arc::new(move || {
            Box::pin(produce()) as AssertionFuture
        })))
    }

    /// Renew the assertion when less than this remains before its `exp` (default 60 s; at
    /// least a fifth of its lifetime is always kept).
    #[must_use]
    pub fn renew_before(self, margin: Duration) -> Self {
        self.map_inner(|i| i.renew_before = margin)
    }

    /// How long a [`command`](Self::command) may run (default 10 s).
    #[must_use]
    pub fn timeout(self, timeout: Duration) -> Self {
        self.map_inner(|i| i.timeout = timeout)
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = match Arc::try_unwrap(self.inner) {
            Ok(inner) => inner,
            Err(shared) => Inner {
                kind: match &shared.kind {
                    Kind::Fixed(s) => Kind::Fixed(s.clone()),
                    Kind::File(p) => Kind::File(p.clone()),
                    Kind::Env(v) => Kind::Env(v.clone()),
                    Kind::Command { program, args } => Kind::Command {
                        program: program.clone(),
                        args: args.clone(),
                    },
                    Kind::Closure(c) => Kind::Closure(c.clone()),
                },
                renew_before: shared.renew_before,
                timeout: shared.timeout,
                cache: tokio::sync::Mutex::new(None),
            },
        };
        f(&mut inner);
        AssertionSource {
            inner: Arc::new(inner),
        }
    }

    /// Where the assertion comes from, for messages: `file PATH`, `env NAME`, `command PROGRAM`,
    /// `closure` or `fixed`. Never the assertion.
    pub fn origin(&self) -> String {
        match &self.inner.kind {
            Kind::Fixed(_) => "fixed assertion".to_owned(),
            Kind::File(p) => format!("file {}", p.display()),
            Kind::Env(v) => format!("env {v}"),
            Kind::Command { program, .. } => format!("command {program}"),
            Kind::Closure(_) => "closure".to_owned(),
        }
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Assertion {
            origin: self.origin(),
            reason: reason.into(),
        }
    }

    /// The current assertion: the cached one while it is fresh, else a new one from the source.
    ///
    /// # Errors
    /// [`Error::Assertion`] when the source fails (file missing or empty, variable unset,
    /// command failing, larger than [`MAX_ASSERTION_LEN`]) and no unexpired assertion is cached,
    /// or when the assertion obtained has already expired; the closure's own error for
    /// [`from_fn`](Self::from_fn).
    pub async fn assertion(&self) -> Result<SecretString> {
        let now = SystemTime::now();
        let mut cache = self.inner.cache.lock().await;
        if let Some(c) = cache.as_ref() {
            if self.still_fresh(c, now).await {
                return Ok(c.value.clone());
            }
        }
        match self.obtain().await {
            Ok(fresh) => {
                if fresh.exp.is_some_and(|exp| exp <= now) {
                    return Err(self.error("the assertion has expired (its `exp` has passed)"));
                }
                let value = fresh.value.clone();
                *cache = Some(fresh);
                Ok(value)
            }
            // The renewal failed; the cached assertion is still valid: keep using it.
            Err(e) => match cache.as_ref() {
                Some(c) if c.exp.is_some_and(|exp| exp > now) => {
                    tracing::warn!(target: "agent_oauth", origin = %self.origin(), error = %e,
                        "could not renew the assertion; using the cached one until it expires");
                    Ok(c.value.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// The assertion obtained last, if it has not expired (no I/O).
    pub(crate) fn cached(&self) -> Option<SecretString> {
        let cache = self.inner.cache.try_lock().ok()?;
        let c = cache.as_ref()?;
        c.exp
            .is_none_or(|exp| exp > SystemTime::now())
            .then(|| c.value.clone())
    }

    /// Is the cached assertion still the one to hand out?
    async fn still_fresh(&self, c: &Cached, now: SystemTime) -> bool {
        let Some(exp) = c.exp else {
            // Without an expiry: a fixed assertion stays; a file stays while it is unchanged;
            // variables, commands and closures are asked again.
            return match &self.inner.kind {
                Kind::Fixed(_) => true,
                Kind::File(p) => read::stamp(p).await.ok() == c.stamp,
                _ => false,
            };
        };
        let lifetime = c
            .iat
            .and_then(|iat| exp.duration_since(iat).ok())
            .unwrap_or_default();
        let margin = self.inner.renew_before.max(lifetime / 5);
        let fresh = exp.duration_since(now).is_ok_and(|left| left > margin);
        match &self.inner.kind {
            Kind::File(p) => fresh && read::stamp(p).await.ok() == c.stamp,
            Kind::Env(v) => {
                // Cheap to read: always the variable's current value.
                fresh
                    && std::env::var(v)
                        .ok()
                        .is_some_and(|now| now.trim() == c.value.expose_secret())
            }
            _ => fresh,
        }
    }

    async fn obtain(&self) -> Result<Cached> {
        let (value, stamp) = match &self.inner.kind {
            Kind::Fixed(s) => (s.clone(), None),
            Kind::File(p) => {
                let (text, stamp) = read::file(p).await.map_err(|why| self.error(why))?;
                (text, Some(stamp))
            }
            Kind::Env(v) => {
                let raw = std::env::var(v).map_err(|_| self.error("the variable is not set"))?;
                (read::token_text(raw).map_err(|why| self.error(why))?, None)
            }
            Kind::Command { program, args } => {
                let text = read::command(program, args, self.inner.timeout)
                    .await
                    .map_err(|why| self.error(why))?;
                (text, None)
            }
            Kind::Closure(produce) => {
                let s = produce().await?;
                (
                    read::token_text(s.expose_secret().to_owned())
                        .map_err(|why| self.error(why))?,
                    None,
                )
            }
        };
        let claims = crate::jwt::unverified_claims(value.expose_secret()).ok();
        let time = |name: &str| {
            claims
                .as_ref()
                .and_then(|c| c.get(name))
                .and_then(serde_json::Value::as_u64)
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s.min(1 << 40)))
        };
        Ok(Cached {
            exp: time("exp"),
            iat: time("iat"),
            value,
            stamp,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
