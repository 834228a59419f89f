//! The [`TokenStore`] trait, its value types and the in-process [`MemoryStore`].

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::token::{RefreshToken, TokenSet};

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
    /// [`FileStore`](crate::FileStore) keeps neither `access.refresh_token` (the grant's
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
pub(super) struct KeyLocks {
    held: Mutex<HashSet<String>>,
    released: Condvar,
}

impl KeyLocks {
    /// Block until `name` is free, then hold it until the guard drops.
    pub(super) fn acquire(self: &Arc<Self>, name: &str) -> KeyGuard {
        // The set stays consistent whatever panicked while holding the mutex: recover from poison.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        while held.contains(name) {
            held = self
                .released
                .wait(held)
                .unwrap_or_else(PoisonError::into_inner);
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
pub(super) struct KeyGuard {
    locks: Arc<KeyLocks>,
    name: String,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        let mut held = self
            .locks
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.remove(&self.name);
        drop(held);
        self.locks.released.notify_all();
    }
}

/// The compare-and-swap decision shared by the stores.
///
/// `last` is the key's last version (0 if never written), `live` whether a value is present
/// (not removed). Returns the version to write, or `None` on conflict.
pub(super) fn next_version(last: u64, live: bool, expected: Option<u64>) -> Result<Option<u64>> {
    let current = live.then_some(last);
    if current != expected {
        return Ok(None);
    }
    last.checked_add(1)
        .map(Some)
        .ok_or_else(|| Error::Store("version overflow".into()))
}

/// One key of a [`MemoryStore`]: its last version and value (`None` once removed, so the
/// version count goes on).
#[derive(Debug)]
struct Entry {
    version: u64,
    value: Option<StoredGrant>,
}

impl Entry {
    fn current(&self) -> Option<Versioned<StoredGrant>> {
        self.value.as_ref().map(|value| Versioned {
            value: value.clone(),
            version: self.version,
        })
    }
}

/// A [`TokenStore`] in memory: nothing survives the process, and only this process shares it.
///
/// [`lock`](TokenStore::lock) excludes other threads locking the same key.
#[derive(Default)]
pub struct MemoryStore {
    entries: Mutex<HashMap<String, Entry>>,
    locks: Arc<KeyLocks>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The keys that hold a value, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .entries()
            .iter()
            .filter(|(_, e)| e.value.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // Every update below is a single assignment: a panic cannot leave an entry half-written.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let live = self
            .entries()
            .values()
            .filter(|e| e.value.is_some())
            .count();
        f.debug_struct("MemoryStore")
            .field("keys", &live)
            .finish_non_exhaustive()
    }
}

impl TokenStore for MemoryStore {
    fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        Ok(self.entries().get(key).and_then(Entry::current))
    }

    fn store(&self, key: &str, value: &StoredGrant, expected: Option<u64>) -> Result<StoreOutcome> {
        let mut entries = self.entries();
        let (last, live) = entries
            .get(key)
            .map_or((0, false), |e| (e.version, e.value.is_some()));
        let Some(version) = next_version(last, live, expected)? else {
            return Ok(StoreOutcome::Conflict {
                current: entries.get(key).and_then(Entry::current),
            });
        };
        entries.insert(
            key.to_owned(),
            Entry {
                version,
                value: Some(value.clone()),
            },
        );
        Ok(StoreOutcome::Written { version })
    }

    fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        let mut entries = self.entries();
        let Some(entry) = entries.get_mut(key) else {
            return Ok(match expected {
                None => StoreOutcome::Written { version: 0 },
                Some(_) => StoreOutcome::Conflict { current: None },
            });
        };
        let live = entry.value.is_some();
        if !live && expected.is_none() {
            return Ok(StoreOutcome::Written {
                version: entry.version,
            });
        }
        let expected = expected.or(Some(entry.version));
        let Some(version) = next_version(entry.version, live, expected)? else {
            return Ok(StoreOutcome::Conflict {
                current: entry.current(),
            });
        };
        *entry = Entry {
            version,
            value: None,
        };
        Ok(StoreOutcome::Written { version })
    }

    fn lock(&self, key: &str) -> Result<StoreLock> {
        Ok(StoreLock::new(self.locks.acquire(key)))
    }
}

/// Behaviour every [`TokenStore`] must have, run against each implementation.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(super) mod conformance {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::token::{AccessToken, Scope, TokenType};

    pub(crate) const RT: &str = "rt-secret-0123456789";
    pub(crate) const AT: &str = "at-secret-abcdefghij";

    pub(crate) fn sample(rt: &str) -> StoredGrant {
        let issued = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut access = TokenSet::new(AccessToken::new(AT), TokenType::Dpop, issued);
        access.expires_at = Some(issued + Duration::from_secs(3600));
        access.scope = Scope::parse("read write");
        access.issued_token_type = Some("urn:ietf:params:oauth:token-type:access_token".into());
        access
            .extra
            .insert("audience".into(), serde_json::json!(["https://api"]));
        let mut g = StoredGrant::new(Some(RefreshToken::new(rt)), Some(access));
        g.updated_at = issued + Duration::from_secs(5);
        g
    }

    fn written(o: StoreOutcome) -> u64 {
        match o {
            StoreOutcome::Written { version } => version,
            StoreOutcome::Conflict { .. } => panic!("unexpected conflict"),
        }
    }

    pub(crate) fn load_missing(s: &dyn TokenStore) {
        assert!(s.load("nope").unwrap().is_none());
    }

    pub(crate) fn round_trip(s: &dyn TokenStore) {
        let key = "https://issuer.example|client|agent \u{1F916}/../x";
        assert_eq!(written(s.store(key, &sample(RT), None).unwrap()), 1);
        let got = s.load(key).unwrap().unwrap();
        assert_eq!(got.version, 1);
        let g = got.value;
        assert_eq!(g.refresh_token.unwrap().secret(), RT);
        assert_eq!(
            g.updated_at,
            UNIX_EPOCH + Duration::from_secs(1_700_000_005)
        );
        let a = g.access.unwrap();
        assert_eq!(a.access_token.secret(), AT);
        assert_eq!(a.token_type, TokenType::Dpop);
        assert_eq!(a.issued_at, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(
            a.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_700_003_600))
        );
        assert_eq!(a.scope, Scope::parse("write read"));
        assert_eq!(
            a.issued_token_type.as_deref(),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
        assert_eq!(a.extra["audience"], serde_json::json!(["https://api"]));
        // Other keys are independent.
        assert!(s.load("other").unwrap().is_none());
        // A grant with neither token round-trips too.
        let empty = StoredGrant::new(None, None);
        assert_eq!(written(s.store("empty", &empty, None).unwrap()), 1);
        let e = s.load("empty").unwrap().unwrap().value;
        assert!(e.refresh_token.is_none() && e.access.is_none());
    }

    pub(crate) fn cas(s: &dyn TokenStore) {
        assert_eq!(written(s.store("k", &sample("rt-1"), None).unwrap()), 1);
        assert_eq!(written(s.store("k", &sample("rt-2"), Some(1)).unwrap()), 2);
        assert_eq!(written(s.store("k", &sample("rt-3"), Some(2)).unwrap()), 3);
        // Stale version: conflict with the current value, nothing written.
        for expected in [Some(2), None, Some(4)] {
            match s.store("k", &sample("rt-stale"), expected).unwrap() {
                StoreOutcome::Conflict { current: Some(c) } => {
                    assert_eq!(c.version, 3);
                    assert_eq!(c.value.refresh_token.unwrap().secret(), "rt-3");
                }
                other => panic!("expected conflict, got {other:?}"),
            }
        }
        // Expecting a version of a key that does not exist.
        let o = s.store("absent", &sample("rt"), Some(1)).unwrap();
        assert!(matches!(o, StoreOutcome::Conflict { current: None }));
        assert!(s.load("absent").unwrap().is_none());
        let v = s.load("k").unwrap().unwrap();
        assert_eq!(v.version, 3);
        assert_eq!(v.value.refresh_token.unwrap().secret(), "rt-3");
    }

    pub(crate) fn remove(s: &dyn TokenStore) {
        // Unconditional remove of nothing is fine.
        assert!(s.remove("k", None).unwrap().written().is_some());
        assert!(s.remove("k", Some(1)).unwrap().is_conflict());

        assert_eq!(written(s.store("k", &sample("rt-1"), None).unwrap()), 1);
        assert_eq!(written(s.store("k", &sample("rt-2"), Some(1)).unwrap()), 2);
        // Wrong version: conflict, value kept.
        match s.remove("k", Some(1)).unwrap() {
            StoreOutcome::Conflict { current: Some(c) } => assert_eq!(c.version, 2),
            other => panic!("expected conflict, got {other:?}"),
        }
        assert_eq!(written(s.remove("k", Some(2)).unwrap()), 3);
        assert!(s.load("k").unwrap().is_none());
        assert!(s.remove("k", Some(3)).unwrap().is_conflict());
        // Written again: versions go on, never reused.
        assert_eq!(written(s.store("k", &sample("rt-4"), None).unwrap()), 4);
        assert_eq!(s.load("k").unwrap().unwrap().version, 4);
        // Unconditional remove.
        assert_eq!(written(s.remove("k", None).unwrap()), 5);
        assert!(s.load("k").unwrap().is_none());
        assert_eq!(written(s.remove("k", None).unwrap()), 5);
    }

    /// Two threads contend on one key: the second gets the lock only after the first guard drops.
    pub(crate) fn lock_excludes<S: TokenStore>(s: Arc<S>) {
        let step = Arc::new(AtomicUsize::new(0));
        let first = s.lock("k").unwrap();
        let t = {
            let (s, step) = (Arc::clone(&s), Arc::clone(&step));
            std::thread::spawn(move || {
                step.store(1, Ordering::SeqCst);
                let _g = s.lock("k").unwrap();
                // The main thread set 2 just before dropping its guard.
                assert_eq!(step.load(Ordering::SeqCst), 2);
                step.store(3, Ordering::SeqCst);
            })
        };
        while step.load(Ordering::SeqCst) != 1 {
            std::thread::yield_now();
        }
        // Give the thread a chance to run into the lock; correctness does not depend on it.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(step.load(Ordering::SeqCst), 1);
        step.store(2, Ordering::SeqCst);
        drop(first);
        t.join().unwrap();
        assert_eq!(step.load(Ordering::SeqCst), 3);
    }

    /// Locks on different keys are independent.
    pub(crate) fn lock_other_key<S: TokenStore>(s: Arc<S>) {
        let _a = s.lock("a").unwrap();
        let s2 = Arc::clone(&s);
        std::thread::spawn(move || drop(s2.lock("b").unwrap()))
            .join()
            .unwrap();
    }

    /// `store`/`remove` while holding `lock` on the same key, from this thread and another.
    pub(crate) fn store_under_lock<S: TokenStore>(s: Arc<S>) {
        let g = s.lock("k").unwrap();
        assert_eq!(written(s.store("k", &sample("rt-1"), None).unwrap()), 1);
        let s2 = Arc::clone(&s);
        std::thread::spawn(move || {
            assert_eq!(written(s2.store("k", &sample("rt-2"), Some(1)).unwrap()), 2);
        })
        .join()
        .unwrap();
        assert_eq!(written(s.remove("k", Some(2)).unwrap()), 3);
        drop(g);
        // And the lock is free again.
        drop(s.lock("k").unwrap());
    }

    /// Many threads rotating under the lock never conflict and never lose an update.
    pub(crate) fn lock_serializes_rotation<S: TokenStore>(s: Arc<S>) {
        const THREADS: usize = 4;
        const ROUNDS: usize = 25;
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..ROUNDS {
                        let _g = s.lock("k").unwrap();
                        let cur = s.load("k").unwrap();
                        let next = sample(&format!("rt-{t}-{i}"));
                        let o = s.store("k", &next, cur.map(|c| c.version)).unwrap();
                        assert!(!o.is_conflict(), "conflict under lock");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let v = s.load("k").unwrap().unwrap();
        assert_eq!(v.version, (THREADS * ROUNDS) as u64);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::conformance as c;
    use super::*;

    #[test]
    fn store_memory_load_missing() {
        c::load_missing(&MemoryStore::new());
    }

    #[test]
    fn store_memory_round_trip() {
        c::round_trip(&MemoryStore::new());
    }

    #[test]
    fn store_memory_cas_conflict_returns_current() {
        c::cas(&MemoryStore::new());
    }

    #[test]
    fn store_memory_remove() {
        c::remove(&MemoryStore::new());
    }

    #[test]
    fn store_memory_lock_excludes_other_thread() {
        c::lock_excludes(Arc::new(MemoryStore::new()));
    }

    #[test]
    fn store_memory_lock_other_key_does_not_block() {
        c::lock_other_key(Arc::new(MemoryStore::new()));
    }

    #[test]
    fn store_memory_store_while_locked_does_not_deadlock() {
        c::store_under_lock(Arc::new(MemoryStore::new()));
    }

    #[test]
    fn store_memory_lock_serializes_rotation() {
        c::lock_serializes_rotation(Arc::new(MemoryStore::new()));
    }

    #[test]
    fn store_memory_debug_has_no_token() {
        let s = MemoryStore::new();
        let _ = s.store("k", &c::sample(c::RT), None).unwrap();
        let dbg = format!("{s:?} {:?}", s.load("k").unwrap());
        assert!(!dbg.contains(c::RT) && !dbg.contains(c::AT), "{dbg}");
    }

    #[test]
    fn store_lock_guard_is_send() {
        fn check<T: Send + 'static>() {}
        check::<StoreLock>();
        check::<MemoryStore>();
        let g = MemoryStore::new().lock("k").unwrap();
        assert_eq!(format!("{g:?}"), "StoreLock { .. }");
    }
}
