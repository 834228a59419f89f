//! Durable grants: the [`TokenStore`] trait, its value types, and the stores the crate ships
//! ([`MemoryStore`] in process, [`FileStore`] for one machine, `RedisStore` for a fleet with
//! the feature `redis`).
//!
//! A store keeps, per grant, the refresh token and the last access token, with a version that
//! every write compares and swaps, and a lock that serializes the grant's refreshes (across
//! processes for [`FileStore`], a leased lock with fencing for network stores). Beside the grants it can keep small opaque records
//! ([`TokenStore::load_record`], [`TokenStore::store_record`]): the client registrations an
//! agent made, per issuer. The refresh-token lifecycle built on it lives in the session
//! layer; the in-memory access-token cache is [`TokenCache`](crate::cache::TokenCache).
//!
//! [`conformance`] (feature `testkit`) is the behaviour every implementation must have, as
//! functions a test suite can call with its own store.
//!
//! # A fleet sharing grants
//!
//! Replicas sharing a store share its grants, and a DPoP-bound refresh token works only with
//! its key: every replica must sign with the same DPoP key. The stored grant records the key's
//! thumbprint ([`StoredGrant::dpop_jkt`]); a replica with another key gets
//! [`Error::DpopKeyMismatch`] instead of a refresh the server would refuse. Load the key from a
//! secret as PKCS#8 PEM (or give every replica a `Signer` backed by the same KMS or HSM key,
//! [`DpopKey::from_signer`](crate::DpopKey::from_signer)), and seal what the store keeps with a
//! shared [`SealKey`]:
//!
//! ```no_run
//! # async fn run() -> agent_oauth::Result<()> {
//! use agent_oauth::DpopKey;
//! use agent_oauth::store::SealKey;
//! // Made once: `DpopKey::generate().to_pkcs8_pem()`, kept in the secret manager.
//! let dpop = DpopKey::from_pkcs8_pem(&std::env::var("AGENT_DPOP_KEY_PEM").unwrap_or_default())?;
//! let seal = SealKey::from_base64(&std::env::var("AGENT_SEAL_KEY").unwrap_or_default())?;
//! let agent = agent_oauth::Agent::builder()
//!     .issuer("https://as.example.com")
//!     .client_id("billing-agent")
//!     .dpop(dpop)
//!     .token_store(std::sync::Arc::new(
//!         agent_oauth::store::FileStore::new("/var/lib/agent/tokens")?.with_seal_key(seal),
//!     ))
//!     .build()
//!     .await?;
//! # let _ = agent; Ok(()) }
//! ```

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

pub use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::token::{RefreshToken, TokenSet};

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod file;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod seal;
#[cfg(test)]
mod tests;

#[cfg(feature = "redis")]
pub use self::redis::{RedisStore, RedisStoreBuilder};
pub use file::FileStore;
pub use memory::MemoryStore;
pub use seal::SealKey;

/// What a store keeps for one grant: the refresh token and optionally the last access token.
///
/// Times are absolute (see [`TokenSet`]), so an access token reloaded after its expiry is seen as
/// expired.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StoredGrant {
    /// The refresh token, if the grant has one.
    pub refresh_token: Option<RefreshToken>,
    /// The last access token, if it is worth keeping.
    ///
    /// Persistent stores may drop the members that duplicate or do not belong to the grant:
    /// [`FileStore`] keeps neither `access.refresh_token` (the grant's
    /// [`refresh_token`](Self::refresh_token) is the one kept) nor `access.id_token`.
    pub access: Option<TokenSet>,
    /// When this value was written (persistent stores keep whole seconds).
    pub updated_at: SystemTime,
    /// The JWK thumbprint (RFC 7638) of the DPoP key the refresh token is bound to, if any. A
    /// replica whose key differs gets [`Error::DpopKeyMismatch`] instead of sending a refresh
    /// the server would refuse: replicas sharing a grant share its key.
    pub dpop_jkt: Option<String>,
}

impl StoredGrant {
    /// A grant updated now.
    pub fn new(refresh_token: Option<RefreshToken>, access: Option<TokenSet>) -> Self {
        StoredGrant {
            refresh_token,
            access,
            updated_at: SystemTime::now(),
            dpop_jkt: None,
        }
    }

    /// The same grant, its refresh token bound to the DPoP key with thumbprint `jkt`.
    pub fn with_dpop_jkt(mut self, jkt: impl Into<String>) -> Self {
        self.dpop_jkt = Some(jkt.into());
        self
    }
}

/// A stored value with its version.
///
/// Versions start at 1 and increase by one on every write of a key, removals included, and are
/// never reused for that key: a value removed and written again continues the count, so a
/// compare-and-swap against a stale version cannot succeed by coincidence.
#[derive(Clone, Debug)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Its version.
    pub version: u64,
}

/// What a conditional write ([`TokenStore::store`], [`TokenStore::remove`]) did.
#[derive(Clone, Debug)]
#[must_use]
// Returned once per write and never kept in bulk: boxing the conflict value would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum StoreOutcome {
    /// The write happened; `version` is the key's version now.
    Written {
        /// The key's version after the write.
        version: u64,
    },
    /// The expected version did not match: nothing was written.
    Conflict {
        /// What the store holds now (`None` when the key has no value).
        current: Option<Versioned<StoredGrant>>,
    },
}

impl StoreOutcome {
    /// The new version if the write happened, `None` on conflict.
    pub fn written(&self) -> Option<u64> {
        match self {
            StoreOutcome::Written { version } => Some(*version),
            StoreOutcome::Conflict { .. } => None,
        }
    }

    /// True on conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreOutcome::Conflict { .. })
    }
}

/// The durable home of refresh tokens, keyed by an opaque string chosen by the crate (issuer,
/// client, principal and grant).
///
/// Methods are async (the trait is object-safe through [`async_trait`](macro@async_trait): implement it with
/// `#[agent_oauth::store::async_trait]`), so a network store never blocks the runtime; stores
/// on disk run their file I/O in `tokio::task::spawn_blocking`.
///
/// Writes are compare-and-swap on the key's [version](Versioned::version), so two processes
/// sharing a store cannot both rotate a refresh token from the same version: one gets
/// [`StoreOutcome::Conflict`] with the value the other wrote. [`lock`](TokenStore::lock) lets a
/// refresh run alone, so the losing side waits instead of spending a refresh token the winner
/// already rotated.
///
/// # Leases and fencing
///
/// A lock is a lease: its holder keeps it while it works (the [`StoreLock`] renews it), and it
/// ends when the holder releases it or dies (a process killed mid-refresh cannot keep every
/// other process waiting). A holder whose lease ended without its knowledge (it was paused
/// longer than the lease) may still try to write: the version it read is its fencing token, and
/// the compare-and-swap refuses its write once a newer holder has written. Such a holder sees
/// [`StoreLock::is_held`] turn false and must not overwrite what it finds.
#[async_trait]
pub trait TokenStore: fmt::Debug + Send + Sync + 'static {
    /// The value stored under `key` with its version, or `None`.
    async fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>>;

    /// Write `value` if the key's current version equals `expected` (`None`: the key must have no
    /// value). Returns the new version, or the current value on conflict.
    async fn store(
        &self,
        key: &str,
        value: &StoredGrant,
        expected: Option<u64>,
    ) -> Result<StoreOutcome>;

    /// Remove the value under `key` if its current version equals `expected`; `None` removes
    /// unconditionally (and removing a key with no value is not an error).
    async fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome>;

    /// Take the exclusive lock for `key` as a lease of `lease`, waiting until it is free (or the
    /// previous holder's lease has run out). Held while a refresh runs: the returned guard
    /// renews the lease while it lives and releases it when dropped.
    ///
    /// The lock is advisory: it excludes other `lock` callers on the same key (other tasks and,
    /// for shared stores, other processes), not [`store`](TokenStore::store) or
    /// [`remove`](TokenStore::remove), which stay safe through compare-and-swap. Calling `store`
    /// while holding the lock therefore never deadlocks.
    ///
    /// Stores whose locks end with their holder's process ([`FileStore`]: OS file locks) may
    /// ignore `lease`.
    async fn lock(&self, key: &str, lease: Duration) -> Result<StoreLock>;

    /// The small opaque record stored under `key` by [`store_record`](TokenStore::store_record),
    /// or `None`. Records (client registrations, per issuer) live apart from grants: a record
    /// and a grant with the same key are independent.
    ///
    /// Provided: stores that do not implement the records keep none (`Ok(None)`), and the
    /// crate then keeps registrations in memory only, registering again in a new process.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails or what it holds is not a record.
    async fn load_record(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let _ = key;
        Ok(None)
    }

    /// Store `value` under `key`, replacing what was there (last writer wins), or remove the
    /// record with `None` (removing a missing record is not an error). Returns whether the
    /// store persisted the change.
    ///
    /// Provided: stores that do not implement the records return `Ok(false)` (nothing is
    /// persisted), and the crate keeps registrations in memory only.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails.
    ///
    /// # Security
    /// A record can hold a client secret: keep records as safe as refresh tokens.
    async fn store_record(&self, key: &str, value: Option<&[u8]>) -> Result<bool> {
        let _ = (key, value);
        Ok(false)
    }
}

/// The lease the crate asks for when it takes a grant's lock for a refresh: long enough for a
/// token request with its retries, renewed while the refresh runs.
pub const REFRESH_LEASE: Duration = Duration::from_secs(10);

/// The guard of a [`TokenStore::lock`]: the lock is released when it drops.
///
/// It is `Send + Sync`, so a tokio task can hold it across `.await`. A leased lock
/// ([`leased`](Self::leased)) is renewed by a task of the store for as long as the guard lives.
pub struct StoreLock {
    // Dropped first: stops the renewal before the guard releases.
    alive: Option<Arc<()>>,
    guard: Option<Box<dyn Any + Send + Sync>>,
    held: Arc<AtomicBool>,
}

impl StoreLock {
    /// Wrap whatever releases the lock when dropped, for a lock held until then (for
    /// [`TokenStore`] implementations whose locks end with their holder, such as OS locks).
    pub fn new<G: Send + Sync + 'static>(guard: G) -> Self {
        StoreLock {
            alive: None,
            guard: Some(Box::new(guard)),
            held: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A leased lock: `guard` releases it when dropped; the store's renewal task keeps it while
    /// [`Lease::is_alive`] (it stops once this lock is dropped) and reports a lease it could
    /// not renew with [`Lease::lost`].
    pub fn leased<G: Send + Sync + 'static>(guard: G) -> (Self, Lease) {
        let alive = Arc::new(());
        let held = Arc::new(AtomicBool::new(true));
        let lease = Lease {
            alive: Arc::downgrade(&alive),
            held: held.clone(),
        };
        (
            StoreLock {
                alive: Some(alive),
                guard: Some(Box::new(guard)),
                held,
            },
            lease,
        )
    }

    /// Whether the lock is still held: false once a leased lock could not be renewed (its
    /// lease ran out, or another holder has it). A holder that lost its lease must not
    /// overwrite what a newer holder wrote.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }

    /// Stop renewing without releasing, as a holder that dies does: the lease runs out on its
    /// own. For store conformance tests.
    #[doc(hidden)]
    pub fn abandon(mut self) {
        self.alive = None;
        if let Some(g) = self.guard.take() {
            std::mem::forget(g);
        }
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        self.alive = None;
        self.guard = None;
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock").finish_non_exhaustive()
    }
}

/// The renewal side of a leased [`StoreLock`], held by the store's renewal task.
#[derive(Debug, Clone)]
pub struct Lease {
    alive: std::sync::Weak<()>,
    held: Arc<AtomicBool>,
}

impl Lease {
    /// Whether the lock still wants its lease renewed (its guard lives).
    pub fn is_alive(&self) -> bool {
        self.alive.strong_count() > 0
    }

    /// The lease could not be renewed: the lock is no longer held.
    pub fn lost(&self) {
        self.held.store(false, Ordering::Release);
    }

    /// Renew every `lease / 3` with `renew` until the lock is dropped. `renew` answers
    /// `Ok(true)` (renewed), `Ok(false)` (the lock is no longer ours: the lease is
    /// [`lost`](Self::lost)) or an error (the store is unreachable: tried again, and the lease
    /// is lost once it has run out since the last renewal). Spawn this on the runtime.
    pub async fn keep<F, Fut>(self, lease: Duration, mut renew: F)
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<bool>> + Send,
    {
        let every = (lease / 3).max(Duration::from_millis(10));
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(every).await;
            if !self.is_alive() {
                return;
            }
            match renew().await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => return self.lost(),
                Err(e) if renewed.elapsed() >= lease => {
                    tracing::warn!(target: "agent_oauth", error = %e, "store lease lost");
                    return self.lost();
                }
                Err(e) => {
                    tracing::debug!(target: "agent_oauth", error = %e, "lease renewal failed");
                }
            }
        }
    }
}

/// In-process exclusive locks by name: a set of held names under a mutex, and a condition
/// variable to wait for one to be released. Guards own an `Arc`, so they are `Send + 'static`.
#[derive(Debug, Default)]
pub(crate) struct KeyLocks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

impl KeyLocks {
    /// Block until `name` is free, then hold it until the guard drops.
    pub(crate) fn acquire(self: &Arc<Self>, name: &str) -> KeyGuard {
        // The set stays consistent whatever panicked while holding the mutex: recover from poison.
        let mut held = crate::sync::lock(&self.held);
        while held.contains(name) {
            held = crate::sync::wait(&self.released, held);
        }
        held.insert(name.to_owned());
        KeyGuard {
            locks: Arc::clone(self),
            name: name.to_owned(),
        }
    }
}

/// Holds one name of a [`KeyLocks`].
#[derive(Debug)]
pub(crate) struct KeyGuard {
    locks: Arc<KeyLocks>,
    name: String,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let mut held = crate::sync::lock(&self.locks.held);
        held.remove(&self.name);
        drop(held);
        self.locks.released.notify_all();
    }
}

/// The compare-and-swap decision shared by the stores.
///
/// `last` is the key's last version (0 if never written), `live` whether a value is present
/// (not removed). Returns the version to write, or `None` on conflict.
pub(crate) fn next_version(last: u64, live: bool, expected: Option<u64>) -> Result<Option<u64>> {
    let current = live.then_some(last);
    if current != expected {
        return Ok(None);
    }
    last.checked_add(1)
        .map(Some)
        .ok_or_else(|| Error::Store("version overflow".into()))
}
