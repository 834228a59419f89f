//! Durable grants: the [`TokenStore`] trait, its value types, and the stores the crate ships
//! ([`MemoryStore`] in process, [`FileStore`] for one machine).
//!
//! A store keeps, per grant, the refresh token and the last access token, with a version that
//! every write compares and swaps, and a lock that serializes the grant's refreshes (across
//! processes for [`FileStore`]). Beside the grants it can keep small opaque records
//! ([`TokenStore::load_record`], [`TokenStore::store_record`]): the client registrations an
//! agent made, per issuer. The refresh-token lifecycle built on it lives in the session
//! layer; the in-memory access-token cache is [`TokenCache`](crate::cache::TokenCache).
//!
//! [`conformance`] (feature `testkit`) is the behaviour every implementation must have, as
//! functions a test suite can call with its own store.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::token::{RefreshToken, TokenSet};

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
mod file;
mod memory;
#[cfg(test)]
mod tests;

pub use file::FileStore;
pub use memory::MemoryStore;

/// Run a store call off the async threads (store methods are synchronous).
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> crate::error::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::error::Error::Store(format!("store task failed: {e}")))?
}

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
}

impl StoredGrant {
    /// A grant updated now.
    pub fn new(refresh_token: Option<RefreshToken>, access: Option<TokenSet>) -> Self {
        StoredGrant {
            refresh_token,
            access,
            updated_at: SystemTime::now(),
        }
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
/// client and grant).
///
/// Methods are synchronous; the crate calls them inside `tokio::task::spawn_blocking`.
///
/// Writes are compare-and-swap on the key's [version](Versioned::version), so two processes
/// sharing a store cannot both rotate a refresh token from the same version: one gets
/// [`StoreOutcome::Conflict`] with the value the other wrote. [`lock`](TokenStore::lock) lets a
/// refresh run alone, so the losing side waits instead of spending a refresh token the winner
/// already rotated.
pub trait TokenStore: fmt::Debug + Send + Sync + 'static {
    /// The value stored under `key` with its version, or `None`.
    fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>>;

    /// Write `value` if the key's current version equals `expected` (`None`: the key must have no
    /// value). Returns the new version, or the current value on conflict.
    fn store(&self, key: &str, value: &StoredGrant, expected: Option<u64>) -> Result<StoreOutcome>;

    /// Remove the value under `key` if its current version equals `expected`; `None` removes
    /// unconditionally (and removing a key with no value is not an error).
    fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome>;

    /// Take the exclusive lock for `key`, blocking until it is free. Held while a refresh runs;
    /// released when the returned guard drops.
    ///
    /// The lock is advisory: it excludes other `lock` callers on the same key (other threads and,
    /// for shared stores, other processes), not [`store`](TokenStore::store) or
    /// [`remove`](TokenStore::remove), which stay safe through compare-and-swap. Calling `store`
    /// while holding the lock therefore never deadlocks.
    fn lock(&self, key: &str) -> Result<StoreLock>;

    /// The small opaque record stored under `key` by [`store_record`](TokenStore::store_record),
    /// or `None`. Records (client registrations, per issuer) live apart from grants: a record
    /// and a grant with the same key are independent.
    ///
    /// Provided: stores that do not implement the records keep none (`Ok(None)`), and the
    /// crate then keeps registrations in memory only, registering again in a new process.
    ///
    /// # Errors
    /// [`Error::Store`] when the store fails or what it holds is not a record.
    fn load_record(&self, key: &str) -> Result<Option<Vec<u8>>> {
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
    fn store_record(&self, key: &str, value: Option<&[u8]>) -> Result<bool> {
        let _ = (key, value);
        Ok(false)
    }
}

/// The guard of a [`TokenStore::lock`]: the lock is released when it drops.
///
/// It is `Send`, so a tokio task can hold it across `.await`.
pub struct StoreLock {
    _guard: Box<dyn Any + Send>,
}

impl StoreLock {
    /// Wrap whatever releases the lock when dropped (for [`TokenStore`] implementations).
    pub fn new<G: Send + 'static>(guard: G) -> Self {
        StoreLock {
            _guard: Box::new(guard),
        }
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreLock").finish_non_exhaustive()
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
