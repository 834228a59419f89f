//! The in-memory token cache: lock-free hits, refresh ahead of expiry, one request per key.
//!
//! Each [`TokenKey`] has an entry whose current token sits in an `ArcSwap`. A hit loads it
//! (no lock, no reference-count write), reads the coarse monotonic clock once and compares. When the
//! token enters its refresh window, the first caller to notice starts a background refresh and
//! every caller (that one included) keeps getting the still-valid token. A miss (cold or expired)
//! joins the key's single flight: one spawned task fetches, and every waiter is woken from its
//! shared result — errors included — in the order it joined. The task is spawned, so a caller
//! that gives up cannot cancel a refresh that is rotating a token.
//!
//! The cache holds access tokens only: a token put in an entry (fetched or
//! [inserted](TokenHandle::insert)) loses its refresh token, which stays with the grant that
//! issued it (the entry's [`TokenSource`]).

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::{ArcSwapOption, Guard};

pub use cached::CachedToken;
use cached::{mono_now, plus, Freshness};

use super::key::TokenKey;
use crate::error::Result;
use crate::token::TokenSet;

/// A boxed future, as [`TokenSource::fetch`] returns (only on the slow path).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a cache entry gets its tokens: a grant, with whatever state it needs.
pub trait TokenSource: Send + Sync + 'static {
    /// Obtain a new token. `current` is the token being replaced, if any (an access token: the
    /// cache keeps no refresh token, the source knows its own grant). Called by at most one task
    /// per key at a time.
    fn fetch(&self, current: Option<TokenSet>) -> BoxFuture<'static, Result<TokenSet>>;
}

impl<F, Fut> TokenSource for F
where
    F: Fn(Option<TokenSet>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TokenSet>> + Send + 'static,
{
    fn fetch(&self, current: Option<TokenSet>) -> BoxFuture<'static, Result<TokenSet>> {
        Box::pin(self(current))
    }
}

/// When to refresh and how many entries to keep.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheConfig {
    /// Refresh when less than this remains (default 30 s)...
    pub refresh_skew: Duration,
    /// ...or less than this fraction of the lifetime, whichever is larger (default 0.2).
    pub refresh_fraction: f64,
    /// Random extra lead, as a fraction of the lead time, so agents started together do not
    /// refresh together (default 0.1).
    pub jitter: f64,
    /// Treat a token as expired this long before its `expires_at` (default 5 s, at most 10 %
    /// of its lifetime), so it is not sent just as it dies.
    pub expiry_margin: Duration,
    /// Most entries kept; expired and unused ones are evicted first (default 1024).
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            refresh_skew: Duration::from_secs(30),
            refresh_fraction: 0.2,
            jitter: 0.1,
            expiry_margin: Duration::from_secs(5),
            max_entries: 1024,
        }
    }
}

struct Entry {
    key: TokenKey,
    config: Arc<CacheConfig>,
    source: Arc<dyn TokenSource>,
    current: ArcSwapOption<CachedToken>,
    flight: Mutex<Option<Slot>>,
    refreshing: AtomicBool,
    used: AtomicBool,
    fetches: AtomicU64,
}

/// A cached token, returned by [`TokenHandle::get`]. Derefs to [`CachedToken`]. A hit borrows
/// from the cache slot without touching the reference count.
pub struct TokenRef(Held);

/// How a [`TokenRef`] holds its token.
enum Held {
    /// Borrowed from the cache slot.
    Borrowed(Guard<Option<Arc<CachedToken>>>),
    /// Shared from a fetch.
    Owned(Arc<CachedToken>),
}

impl fmt::Debug for TokenRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl TokenRef {
    /// Whether the token is borrowed from the cache slot (no count written to hold it).
    #[cfg(test)]
    pub(crate) fn is_borrowed(&self) -> bool {
        matches!(self.0, Held::Borrowed(_))
    }

    /// The token as a shared pointer: one reference-count increment, no copy.
    pub(crate) fn share(&self) -> Arc<CachedToken> {
        match &self.0 {
            Held::Borrowed(g) => match g.as_ref() {
                Some(t) => t.clone(),
                None => Arc::new(CachedToken::new(
                    unreachable_empty().token.clone(),
                    &CacheConfig::default(),
                )),
            },
            Held::Owned(t) => t.clone(),
        }
    }
}

impl Deref for TokenRef {
    type Target = CachedToken;
    fn deref(&self) -> &CachedToken {
        match &self.0 {
            // A Borrowed guard is only built after checking it holds `Some`.
            Held::Borrowed(g) => match g.as_ref() {
                Some(t) => t,
                None => unreachable_empty(),
            },
            Held::Owned(t) => t,
        }
    }
}

#[cold]
fn unreachable_empty() -> &'static CachedToken {
    // A borrowed TokenRef is constructed only from a guard that holds a token; this function
    // exists so that no path can panic. It is never reached.
    static EMPTY: std::sync::OnceLock<CachedToken> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| CachedToken {
        token: TokenSet::new(
            crate::token::AccessToken::new(""),
            crate::token::TokenType::Bearer,
            SystemTime::UNIX_EPOCH,
        ),
        refresh_at: None,
        expires_at: Some(mono_now()),
        wire: std::sync::OnceLock::new(),
    })
}

/// A handle on one cache entry: hold it to skip the key lookup on every call.
#[derive(Clone)]
pub struct TokenHandle {
    entry: Arc<Entry>,
}

impl fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenHandle")
            .field("key", &self.entry.key)
            .finish_non_exhaustive()
    }
}

impl TokenHandle {
    /// The key.
    pub fn key(&self) -> &TokenKey {
        &self.entry.key
    }

    /// The cached token if it can be used now, without waiting. Starts a background refresh
    /// when the token is in its refresh window. This is the hit path: no lock, no allocation.
    #[inline]
    pub fn peek(&self) -> Option<TokenRef> {
        let guard = self.entry.current.load();
        let state = guard.as_ref()?.state(mono_now());
        if !self.entry.used.load(Ordering::Relaxed) {
            self.entry.used.store(true, Ordering::Relaxed);
        }
        match state {
            Freshness::Fresh => Some(TokenRef(Held::Borrowed(guard))),
            Freshness::RefreshAhead => {
                self.entry.refresh_in_background();
                Some(TokenRef(Held::Borrowed(guard)))
            }
            Freshness::Expired => None,
        }
    }

    /// A usable token: from the cache, or fetched now (one fetch per key, shared by every
    /// concurrent caller).
    ///
    /// # Errors
    /// The fetch's error, shared by every caller that waited on it.
    pub async fn get(&self) -> Result<TokenRef> {
        if let Some(t) = self.peek() {
            return Ok(t);
        }
        self.entry
            .clone()
            .fetch_shared()
            .await
            .map(|t| TokenRef(Held::Owned(t)))
    }

    /// As [`get`](Self::get), waiting at most `deadline` for a fetch (at least 99 % of it);
    /// the fetch itself goes on. Waiters share one clock per flight instead of a timer each.
    ///
    /// # Errors
    /// The fetch's error, or [`Error::Timeout`](crate::Error::Timeout) when the deadline passed
    /// first.
    pub async fn get_within(&self, deadline: Duration) -> Result<TokenRef> {
        if let Some(t) = self.peek() {
            return Ok(t);
        }
        let bound = (tokio::time::Instant::now(), deadline);
        let flight = flight::ended(self.entry.join(Some(bound)), Some(bound)).await?;
        let token = flight.outcome()?;
        // The fetch stored its token in the entry before it ended the flight: borrowed from
        // there, the token costs no write to its shared count, which thousands of waiters
        // woken at once would all make (a newer token stored since is not this one, and is
        // shared instead).
        let guard = self.entry.current.load();
        if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, token)) {
            return Ok(TokenRef(Held::Borrowed(guard)));
        }
        Ok(TokenRef(Held::Owned(token.clone())))
    }

    /// Drop the cached token (after the resource rejected it); the next `get` fetches anew,
    /// handing the source the dropped token so that it does not return the same one.
    pub fn invalidate(&self) {
        // Keep the token, marked expired: `peek` no longer serves it, and the next fetch hands
        // it to the source as `current` (which a `RefreshingSource` must recognise so as not to
        // return the stored copy of it).
        let now = mono_now();
        self.entry.current.rcu(|cur| {
            cur.as_ref().map(|c| {
                Arc::new(CachedToken {
                    token: c.token.clone(),
                    refresh_at: Some(now),
                    expires_at: Some(now),
                    wire: std::sync::OnceLock::new(),
                })
            })
        });
    }

    /// Force a new token now, replacing the current one, and wait for it.
    ///
    /// # Errors
    /// The fetch's error.
    pub async fn refresh(&self) -> Result<TokenRef> {
        self.entry
            .clone()
            .fetch_shared()
            .await
            .map(|t| TokenRef(Held::Owned(t)))
    }

    /// Put a token in the cache (e.g. one loaded from a store). Its refresh token, if any, is
    /// not kept.
    pub fn insert(&self, token: TokenSet) {
        self.entry
            .current
            .store(Some(Arc::new(CachedToken::new(token, &self.entry.config))));
    }

    /// Whether the entry holds a token that is not expired (no side effect: unlike
    /// [`peek`](Self::peek), never starts a refresh).
    pub(crate) fn holds_usable_token(&self) -> bool {
        self.entry
            .current
            .load()
            .as_ref()
            .is_some_and(|c| c.state(mono_now()) != Freshness::Expired)
    }

    /// How many fetches this entry has started.
    pub fn fetch_count(&self) -> u64 {
        self.entry.fetches.load(Ordering::Relaxed)
    }
}

impl Entry {
    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.load(Ordering::Relaxed) || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        // Joining (or starting) the flight is enough: the task runs without us.
        let _ = self.start_or_join();
    }

    fn start_or_join(self: &Arc<Self>) -> Flight {
        self.join(None)
    }

    /// Join the flight (starting it if there is none); a waiter with a deadline (`bound`: when
    /// it started, and how long it may wait) gets the flight's ticker.
    fn join(self: &Arc<Self>, bound: Option<(tokio::time::Instant, Duration)>) -> Flight {
        let mut flight = crate::sync::lock(&self.flight);
        if let Some(slot) = flight.as_mut() {
            if let Some((started, deadline)) = bound {
                slot.tick_for(started, deadline);
            }
            return slot.flight.clone();
        }
        let mut slot = Slot::new();
        if let Some((started, deadline)) = bound {
            slot.tick_for(started, deadline);
        }
        let joined = slot.flight.clone();
        *flight = Some(slot);
        drop(flight);
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let guard = FlightGuard {
            entry: self.clone(),
            flight: Some(joined.clone()),
        };
        tokio::spawn(async move {
            let entry = guard.entry.clone();
            let current = entry.current.load_full().map(|c| c.token.clone());
            let result = entry.source.fetch(current).await;
            let shared = match result {
                Ok(token) => {
                    let cached = Arc::new(CachedToken::new(token, &entry.config));
                    entry.current.store(Some(cached.clone()));
                    Ok(cached)
                }
                Err(e) => {
                    tracing::debug!(target: "agent_oauth", error = %e, "token fetch failed");
                    entry.back_off();
                    Err(e)
                }
            };
            guard.finish(shared).await;
        });
        joined
    }

    /// After a failed refresh-ahead, keep serving the still-valid token and try again later
    /// (a quarter of what remains, at least a second) instead of on the very next hit.
    fn back_off(&self) {
        let Some(cur) = self.current.load_full() else {
            return;
        };
        let now = mono_now();
        let Some(expires) = cur.expires_at.filter(|e| *e > now) else {
            return;
        };
        let left: Duration = expires.duration_since(now).into();
        let wait = (left / 4).max(Duration::from_secs(1));
        self.current.store(Some(Arc::new(CachedToken {
            token: cur.token.clone(),
            refresh_at: Some(plus(now, wait)),
            expires_at: cur.expires_at,
            wire: std::sync::OnceLock::new(),
        })));
    }

    async fn fetch_shared(self: Arc<Self>) -> Result<Arc<CachedToken>> {
        flight::wait(self.start_or_join(), None).await
    }
}

/// The token cache: [`TokenKey`] → entry. Cheap to clone.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<CacheInner>,
}

struct CacheInner {
    config: Arc<CacheConfig>,
    map: Shards,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.len())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(CacheConfig::default())
    }
}

impl TokenCache {
    /// An empty cache.
    pub fn new(config: CacheConfig) -> Self {
        TokenCache {
            inner: Arc::new(CacheInner {
                map: Shards::new(config.max_entries),
                config: Arc::new(config),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handle for `key` if the cache has an entry for it; never creates one.
    ///
    /// Use this to act on a token already handed out (e.g. [`TokenHandle::invalidate`] after a
    /// resource rejected it): [`handle`](Self::handle) with a stand-in source would silently
    /// create a new entry when the key is not exactly the one the token was cached under.
    pub fn get(&self, key: &TokenKey) -> Option<TokenHandle> {
        self.inner.map.get(key).map(|entry| TokenHandle { entry })
    }

    /// The handles of every entry whose key matches `pred` (no entry is created).
    pub fn handles_matching(&self, mut pred: impl FnMut(&TokenKey) -> bool) -> Vec<TokenHandle> {
        self.inner
            .map
            .matching(&mut pred)
            .into_iter()
            .map(|entry| TokenHandle { entry })
            .collect()
    }

    /// The handle for `key`, created with `source` if the key is new (an existing entry keeps
    /// its source). `source` is called only to create the entry: pass the real source, never a
    /// stand-in; to look up an existing entry, use [`get`](Self::get).
    pub fn handle(
        &self,
        key: &TokenKey,
        source: impl FnOnce() -> Arc<dyn TokenSource>,
    ) -> TokenHandle {
        let config = &self.inner.config;
        let entry = self.inner.map.get_or_insert(key, config.max_entries, || {
            Arc::new(Entry {
                key: key.clone(),
                config: config.clone(),
                source: source(),
                current: ArcSwapOption::empty(),
                flight: Mutex::new(None),
                refreshing: AtomicBool::new(false),
                used: AtomicBool::new(true),
                fetches: AtomicU64::new(0),
            })
        });
        TokenHandle { entry }
    }

    /// Remove `key` (and its token).
    pub fn remove(&self, key: &TokenKey) {
        self.inner.map.remove(key);
    }

    /// Remove every entry whose key matches `pred` (e.g. tokens bound to a retired key).
    pub fn retain(&self, pred: impl FnMut(&TokenKey) -> bool) {
        self.inner.map.retain(pred);
    }
}

mod cached;
mod evict;
mod flight;
mod map;
use flight::{Flight, FlightGuard, Slot};
use map::Shards;

#[cfg(test)]
mod flight_tests;
#[cfg(test)]
mod tests;
