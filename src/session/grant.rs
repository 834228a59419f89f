//! Refresh-token rotation that never loses or reuses a token.
//!
//! [`RefreshingSource`] is the [`TokenSource`] of a grant that has a refresh token. Every
//! refresh:
//!
//! 1. takes the store's lock for the grant (across threads and, with [`FileStore`], processes);
//! 2. re-reads the store: if another writer already rotated and left a usable access token, it
//!    is used and nothing is sent;
//! 3. sends the newest refresh token it knows;
//! 4. writes the returned refresh token (or keeps the old one when none came back) to the store
//!    *before* handing out the new access token (when the store fails, see below);
//! 5. on `invalid_grant`, re-reads the store: a rotation by another writer is used; otherwise the
//!    grant is removed and [`Error::ReauthorizationRequired`] returned — never a retry loop.
//!
//! The cache runs this in a spawned task, so a caller that times out cannot cancel it between
//! the server's rotation and the store write.
//!
//! Tokens the server issued are never dropped. When the store fails to take them (disk full,
//! a network store down), they are kept in memory and the access token is handed out; the
//! in-memory grant is authoritative over the store (the next refresh presents its refresh token
//! whatever the store says), and the write is retried in the background with backoff, reported
//! by [`AgentEvent::StoreWriteFailed`] and [`AgentEvent::StoreWriteRecovered`]. A refresh
//! token rotated away or rejected is remembered and never presented again, even if the store
//! still holds it.
//!
//! [`FileStore`]: crate::store::FileStore

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use backon::BackoffBuilder as _;

use crate::cache::{BoxFuture, TokenSource};
use crate::error::{sanitize, Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::{OAuthClient, TokenParams};
use crate::store::{StoreOutcome, StoredGrant, TokenStore, Versioned};
use crate::token::{RefreshToken, TokenSet};

/// Member of a stored access token naming the parameters it was obtained with.
const PARAMS_TAG: &str = "agent_oauth_params";

/// How coarse a store's `updated_at` may be ([`FileStore`](crate::store::FileStore) keeps whole
/// seconds).
const STORE_TIME_RESOLUTION: Duration = Duration::from_secs(1);

/// How many refresh tokens known to be dead (rotated away or rejected) are remembered.
const DEAD_TOKENS_KEPT: usize = 32;

/// Backoff of the background store write: first retry after this...
const WRITE_RETRY_MIN: Duration = Duration::from_millis(100);
/// ...and never more than this apart.
const WRITE_RETRY_MAX: Duration = Duration::from_secs(30);

/// What this process knows of one grant beyond its store: tokens the store has not taken yet,
/// and refresh tokens that must never be presented again. Shared by every
/// [`RefreshingSource`] of the grant.
#[derive(Default)]
pub(crate) struct GrantMemory {
    state: Mutex<MemoryState>,
    /// Serializes this process's refreshes of the grant, also when the store's lock fails.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct MemoryState {
    /// Issued tokens the store failed to take: authoritative over the store until written.
    pending: Option<Pending>,
    /// Refresh tokens rotated away or rejected, newest last.
    dead: Vec<RefreshToken>,
    /// Bumped whenever `pending` changes.
    seq: u64,
    /// A background writer is running.
    writer: bool,
}

#[derive(Clone)]
struct Pending {
    grant: StoredGrant,
    fingerprint: String,
    seq: u64,
    failures: u32,
}

impl std::fmt::Debug for GrantMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("GrantMemory")
            .field("pending", &st.pending.is_some())
            .field("dead", &st.dead.len())
            .finish_non_exhaustive()
    }
}

impl GrantMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // Every update is a few assignments: a panic cannot leave the state half-written.
        crate::sync::lock(&self.state)
    }

    fn pending(&self) -> Option<Pending> {
        self.lock().pending.clone()
    }

    /// The newest refresh token the store has not taken, if any.
    pub(crate) fn pending_refresh_token(&self) -> Option<RefreshToken> {
        self.lock()
            .pending
            .as_ref()
            .and_then(|p| p.grant.refresh_token.clone())
    }

    /// Forget everything (the grant was ended on purpose).
    pub(crate) fn clear(&self) {
        let mut st = self.lock();
        st.pending = None;
        st.seq = st.seq.wrapping_add(1);
    }

    fn is_dead(&self, rt: &RefreshToken) -> bool {
        self.lock().dead.iter().any(|d| d.ct_eq(rt))
    }

    fn mark_dead(&self, rt: &RefreshToken) {
        let mut st = self.lock();
        if st
            .pending
            .as_ref()
            .and_then(|p| p.grant.refresh_token.as_ref())
            .is_some_and(|p| p.ct_eq(rt))
        {
            st.pending = None;
            st.seq = st.seq.wrapping_add(1);
        }
        if !st.dead.iter().any(|d| d.ct_eq(rt)) {
            if st.dead.len() >= DEAD_TOKENS_KEPT {
                st.dead.remove(0);
            }
            st.dead.push(rt.clone());
        }
    }

    /// The store holds the newest tokens: nothing is pending any more.
    fn written(&self) {
        let mut st = self.lock();
        if st.pending.is_some() {
            st.pending = None;
            st.seq = st.seq.wrapping_add(1);
        }
    }

    /// Keep `grant` as pending; returns whether a writer must be started.
    fn keep_pending(&self, grant: StoredGrant, fingerprint: String) -> bool {
        let mut st = self.lock();
        st.seq = st.seq.wrapping_add(1);
        st.pending = Some(Pending {
            grant,
            fingerprint,
            seq: st.seq,
            failures: 1,
        });
        !std::mem::replace(&mut st.writer, true)
    }

    /// The writer stops when nothing is pending (decided under the lock, so that a grant kept
    /// meanwhile finds the writer still running or starts a new one).
    fn writer_may_stop(&self) -> bool {
        let mut st = self.lock();
        if st.pending.is_none() {
            st.writer = false;
            true
        } else {
            false
        }
    }

    /// Count a failed background write; returns the pending fingerprint and failures so far.
    fn write_failed(&self, seq: u64) -> Option<(String, u32)> {
        let mut st = self.lock();
        let p = st.pending.as_mut().filter(|p| p.seq == seq)?;
        p.failures = p.failures.saturating_add(1);
        Some((p.fingerprint.clone(), p.failures))
    }

    /// A background write of `seq` succeeded: clear it unless something newer is pending.
    fn write_succeeded(&self, seq: u64) {
        let mut st = self.lock();
        if st.pending.as_ref().is_some_and(|p| p.seq == seq) {
            st.pending = None;
        }
    }
}

/// A token source that refreshes one grant's refresh token, rotation-safe (see the module docs).
#[derive(Clone)]
pub struct RefreshingSource {
    client: OAuthClient,
    store: Arc<dyn TokenStore>,
    store_key: String,
    params: TokenParams,
    min_remaining: Duration,
    memory: Arc<GrantMemory>,
    events: Option<EventHook>,
}

impl std::fmt::Debug for RefreshingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingSource")
            .field("client", &self.client)
            .field("store", &self.store)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Store(format!("store task failed: {e}")))?
}

impl RefreshingSource {
    /// A source for the grant stored under `store_key`, refreshed with `params` (scope and
    /// resources of the access tokens wanted).
    pub fn new(
        client: OAuthClient,
        store: Arc<dyn TokenStore>,
        store_key: impl Into<String>,
        params: TokenParams,
    ) -> Self {
        RefreshingSource {
            client,
            store,
            store_key: store_key.into(),
            params,
            min_remaining: Duration::from_secs(30),
            memory: Arc::default(),
            events: None,
        }
    }

    /// Report store write failures and recoveries ([`AgentEvent::StoreWriteFailed`],
    /// [`AgentEvent::StoreWriteRecovered`]) to `hook` as well as to `tracing`.
    pub fn with_event_hook(mut self, hook: EventHook) -> Self {
        self.events = Some(hook);
        self
    }

    /// Share what this process knows of the grant (tokens not yet stored, dead refresh
    /// tokens) with the other sources of the grant.
    pub(crate) fn with_memory(
        mut self,
        memory: Arc<GrantMemory>,
        events: Option<EventHook>,
    ) -> Self {
        self.memory = memory;
        self.events = events;
        self
    }

    /// Save a freshly obtained grant (from a code or device flow) as the starting point.
    ///
    /// When the store fails, the grant is kept in memory (and used from there) and the write is
    /// retried in the background, as after a refresh.
    ///
    /// # Errors
    /// [`Error::Store`] when another writer wrote the grant at the same time.
    pub async fn seed(&self, tokens: &TokenSet) -> Result<()> {
        let store = self.store.clone();
        let key = self.store_key.clone();
        let grant = self.stored_grant(tokens);
        let pending = grant.clone();
        let result = blocking(move || {
            let _lock = store.lock(&key)?;
            let current = store.load(&key)?.map(|v| v.version);
            store.store(&key, &grant, current)
        })
        .await;
        match result {
            Ok(StoreOutcome::Written { .. }) => {
                self.memory.written();
                Ok(())
            }
            Ok(StoreOutcome::Conflict { .. }) => {
                Err(Error::Store("concurrent write while seeding".into()))
            }
            Err(e) => {
                self.keep_unstored(pending, tokens, &e);
                Ok(())
            }
        }
    }

    /// Refresh now (normally called by the cache).
    ///
    /// # Errors
    /// [`Error::ReauthorizationRequired`] when the grant is gone; store and server errors.
    pub async fn refresh_now(&self, current: Option<TokenSet>) -> Result<TokenSet> {
        self.refresh_reporting(current).await.map(|(t, _)| t)
    }

    /// As [`refresh_now`](Self::refresh_now), also telling whether a refresh request was made
    /// (`false` when a token another writer stored was used).
    pub(crate) async fn refresh_reporting(
        &self,
        current: Option<TokenSet>,
    ) -> Result<(TokenSet, bool)> {
        let memory = self.memory.clone();
        let _in_process = memory.refresh.lock().await;
        let store = self.store.clone();
        let key = self.store_key.clone();
        let lock = match blocking(move || store.lock(&key)).await {
            Ok(lock) => Some(lock),
            // Tokens the store could not take are known to this process only: no other process
            // can rotate them, so refreshing under the in-process lock alone is safe.
            Err(e) if memory.pending().is_some() => {
                tracing::warn!(target: "agent_oauth", error = %e,
                    "store lock failed; refreshing from the tokens held in memory");
                None
            }
            // Without the lock another process could be rotating: send nothing.
            Err(e) => return Err(e),
        };
        let result = self.refresh_locked(current).await;
        drop(lock);
        result
    }

    async fn load(&self) -> Result<Option<Versioned<StoredGrant>>> {
        let store = self.store.clone();
        let key = self.store_key.clone();
        blocking(move || store.load(&key)).await
    }

    /// A stored access token another writer left, if it is usable and not the one we hold.
    fn usable_stored(&self, stored: &StoredGrant, current: Option<&TokenSet>) -> Option<TokenSet> {
        let access = stored.access.as_ref()?;
        let now = SystemTime::now();
        let fresh = access.remaining(now).is_none_or(|r| {
            r > self
                .min_remaining
                .min(access.lifetime().unwrap_or_default() / 2)
        });
        let same = current.is_some_and(|c| c.access_token.ct_eq(&access.access_token));
        // One grant can serve several resources; only a token obtained with the same
        // parameters is interchangeable.
        let tag = self.params_tag();
        let same_params = match access.extra.get(PARAMS_TAG).and_then(|v| v.as_str()) {
            Some(stored_tag) => stored_tag == tag,
            // Written by something that does not tag (another tool, an older version): accept
            // it for the same scope when no resource or audience narrows what we need.
            None => {
                self.params.resources.is_empty()
                    && self.params.audiences.is_empty()
                    && self
                        .params
                        .scope
                        .as_ref()
                        .is_none_or(|s| *s == access.scope)
            }
        };
        (fresh && !same && same_params).then(|| {
            let mut t = access.clone();
            t.refresh_token = stored.refresh_token.clone();
            t
        })
    }

    async fn refresh_locked(&self, current: Option<TokenSet>) -> Result<(TokenSet, bool)> {
        let pending = self.memory.pending();
        let stored = match self.load().await {
            Ok(stored) => stored,
            // The store failed, but the newest tokens are in memory: go on from them.
            Err(e) if pending.is_some() => {
                tracing::warn!(target: "agent_oauth", error = %e,
                    "store read failed; refreshing from the tokens held in memory");
                None
            }
            Err(e) => return Err(e),
        };
        // Tokens the store has not taken are newer than anything it holds.
        let newest = pending
            .as_ref()
            .map(|p| &p.grant)
            .or(stored.as_ref().map(|v| &v.value));
        if let Some(g) = newest {
            if let Some(t) = self.usable_stored(g, current.as_ref()) {
                tracing::debug!(target: "agent_oauth", token = %t.access_token.fingerprint(),
                    "using a token another writer refreshed");
                return Ok((t, false));
            }
        }
        let alive = |r: &RefreshToken| !self.memory.is_dead(r);
        let rt = if let Some(p) = &pending {
            p.grant.refresh_token.clone().filter(alive)
        } else {
            // The newest refresh token we know: the store's, unless our in-memory one is newer.
            let from_store = stored.as_ref().and_then(|v| {
                v.value
                    .refresh_token
                    .clone()
                    .filter(alive)
                    .map(|r| (r, v.value.updated_at))
            });
            let from_memory = current.as_ref().and_then(|c| {
                c.refresh_token
                    .clone()
                    .filter(alive)
                    .map(|r| (r, c.issued_at))
            });
            match (from_store, from_memory) {
                (Some((s, st)), Some((m, mt))) => {
                    // Persistent stores keep `updated_at` in whole seconds: a write made just
                    // after our token was issued can carry an earlier time. Every token this
                    // source hands out was stored (or is pending) first, so in a tie the store
                    // is the newer one.
                    if mt >= st + STORE_TIME_RESOLUTION {
                        Some(m)
                    } else {
                        Some(s)
                    }
                }
                (Some((s, _)), None) => Some(s),
                (None, Some((m, _))) => Some(m),
                (None, None) => None,
            }
        };
        let Some(rt) = rt else {
            let known_dead = stored
                .as_ref()
                .and_then(|v| v.value.refresh_token.as_ref())
                .is_some_and(|r| self.memory.is_dead(r));
            if known_dead {
                // A rejected token a failed removal left behind: try the removal again.
                self.remove_stored(stored.as_ref().map(|v| v.version)).await;
                return Err(Error::ReauthorizationRequired(
                    "the grant's refresh token was rejected earlier".into(),
                ));
            }
            return Err(Error::ReauthorizationRequired(
                "no refresh token for this grant".into(),
            ));
        };
        let version = stored.as_ref().map(|v| v.version);
        match self.client.refresh(&rt, &self.params).await {
            Ok(tokens) => {
                let tokens = self.keep(&rt, tokens, version).await;
                tracing::info!(target: "agent_oauth", token = %tokens.access_token.fingerprint(),
                    rotated = tokens.refresh_token.as_ref().is_some_and(|n| !n.ct_eq(&rt)),
                    "refreshed");
                Ok((tokens, true))
            }
            Err(Error::ReauthorizationRequired(why)) => {
                self.memory.mark_dead(&rt);
                // Another writer may have rotated between our read and the server's answer.
                let again = self.load().await.map_err(|e| {
                    Error::Store(format!(
                        "the refresh token was rejected ({why}), and the store could not be \
                         re-read for a newer one: {e}"
                    ))
                })?;
                if let Some(v) = again.as_ref().filter(|v| Some(v.version) != version) {
                    if let Some(t) = self.usable_stored(&v.value, current.as_ref()) {
                        return Ok((t, false));
                    }
                    if let Some(newer) = v.value.refresh_token.clone().filter(|n| alive(n)) {
                        let tokens = match self.client.refresh(&newer, &self.params).await {
                            Ok(t) => t,
                            Err(e) => {
                                if matches!(e, Error::ReauthorizationRequired(_)) {
                                    self.memory.mark_dead(&newer);
                                }
                                return Err(e);
                            }
                        };
                        let tokens = self.keep(&newer, tokens, Some(v.version)).await;
                        return Ok((tokens, true));
                    }
                }
                self.remove_stored(again.as_ref().map(|v| v.version)).await;
                tracing::warn!(target: "agent_oauth", "refresh token rejected; grant removed");
                Err(Error::ReauthorizationRequired(why))
            }
            Err(e) => Err(e),
        }
    }

    /// Remove the grant at `version` (best effort: a failed removal leaves a token that is
    /// known dead and never presented again).
    async fn remove_stored(&self, version: Option<u64>) {
        let Some(version) = version else {
            return;
        };
        let store = self.store.clone();
        let key = self.store_key.clone();
        if let Err(e) = blocking(move || store.remove(&key, Some(version))).await {
            tracing::warn!(target: "agent_oauth", error = %e,
                "could not remove the rejected grant from the store");
        }
    }

    /// Keep what the server issued for `sent`: `sent` is dead once rotated away, and the new
    /// tokens go to the store, or, when it fails, to memory with a background retry. Never
    /// fails: the tokens are the newest the server knows, and dropping them would lose the grant.
    async fn keep(&self, sent: &RefreshToken, tokens: TokenSet, version: Option<u64>) -> TokenSet {
        if tokens
            .refresh_token
            .as_ref()
            .is_some_and(|n| !n.ct_eq(sent))
        {
            self.memory.mark_dead(sent);
        }
        match self.persist(&tokens, version).await {
            Ok(()) => self.memory.written(),
            Err(e) => {
                let grant = self.stored_grant(&tokens);
                self.keep_unstored(grant, &tokens, &e);
            }
        }
        tokens
    }

    /// The store failed to take `grant`: keep it in memory, report, and retry in the background.
    fn keep_unstored(&self, grant: StoredGrant, tokens: &TokenSet, error: &Error) {
        let fingerprint = tokens.access_token.fingerprint();
        tracing::warn!(target: "agent_oauth", token = %fingerprint, error = %error,
            "the store failed to take the issued tokens; kept in memory, retrying the write");
        EventHook::emit(
            self.events.as_ref(),
            AgentEvent::StoreWriteFailed {
                fingerprint: fingerprint.clone(),
                attempt: 1,
                error: sanitize(&error.to_string(), 200),
            },
        );
        if self.memory.keep_pending(grant, fingerprint) {
            let this = self.clone();
            tokio::spawn(async move { this.write_behind().await });
        }
    }

    /// Retry writing the pending grant with backoff until it is written (or superseded).
    async fn write_behind(self) {
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(WRITE_RETRY_MIN)
            .with_max_delay(WRITE_RETRY_MAX)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            if self.memory.writer_may_stop() {
                return;
            }
            tokio::time::sleep(backoff.next().unwrap_or(WRITE_RETRY_MAX)).await;
            // Never while this process refreshes the grant (also when the store's lock failed
            // for that refresh).
            let memory_ref = self.memory.clone();
            let _in_process = memory_ref.refresh.lock().await;
            let (store, key, memory) = (
                self.store.clone(),
                self.store_key.clone(),
                self.memory.clone(),
            );
            // Under the grant's lock, so that a refresh (which holds it) and this write never
            // interleave: the pending value is read and written in one step.
            let result = blocking(move || {
                let _lock = store.lock(&key)?;
                let Some(p) = memory.pending() else {
                    return Ok(None);
                };
                let current = store.load(&key)?.map(|v| v.version);
                // Ours is the newest token the server issued: it wins over what the store holds.
                match store.store(&key, &p.grant, current)? {
                    StoreOutcome::Written { .. } => {
                        memory.write_succeeded(p.seq);
                        Ok(Some(p))
                    }
                    StoreOutcome::Conflict { .. } => Err(Error::Store(
                        "another writer got in between; retrying".into(),
                    )),
                }
            })
            .await;
            match result {
                Ok(None) => {}
                Ok(Some(p)) => {
                    tracing::info!(target: "agent_oauth", token = %p.fingerprint,
                        failed_attempts = p.failures, "store write succeeded after failures");
                    EventHook::emit(
                        self.events.as_ref(),
                        AgentEvent::StoreWriteRecovered {
                            fingerprint: p.fingerprint,
                            failed_attempts: p.failures,
                        },
                    );
                }
                Err(e) => {
                    let seq = self.memory.pending().map(|p| p.seq);
                    if let Some((fingerprint, attempt)) =
                        seq.and_then(|seq| self.memory.write_failed(seq))
                    {
                        tracing::warn!(target: "agent_oauth", token = %fingerprint, attempt,
                            error = %e, "store write failed again; retrying");
                        EventHook::emit(
                            self.events.as_ref(),
                            AgentEvent::StoreWriteFailed {
                                fingerprint,
                                attempt,
                                error: sanitize(&e.to_string(), 200),
                            },
                        );
                    }
                }
            }
        }
    }

    fn params_tag(&self) -> String {
        let p = &self.params;
        serde_json::json!([
            p.scope.as_ref().map(ToString::to_string),
            p.resources,
            p.audiences
        ])
        .to_string()
    }

    /// What is stored for `tokens`: the refresh token, and the access token tagged with the
    /// parameters it was obtained with.
    fn stored_grant(&self, tokens: &TokenSet) -> StoredGrant {
        let mut access = tokens.clone();
        access
            .extra
            .insert(PARAMS_TAG.to_owned(), self.params_tag().into());
        StoredGrant::new(tokens.refresh_token.clone(), Some(access))
    }

    async fn persist(&self, tokens: &TokenSet, version: Option<u64>) -> Result<()> {
        let store = self.store.clone();
        let key = self.store_key.clone();
        let grant = self.stored_grant(tokens);
        blocking(move || match store.store(&key, &grant, version)? {
            StoreOutcome::Written { .. } => Ok(()),
            // A writer that did not take the lock got in between. Ours is the newest token the
            // server issued, so it wins.
            StoreOutcome::Conflict { current } => {
                match store.store(&key, &grant, current.map(|c| c.version))? {
                    StoreOutcome::Written { .. } => Ok(()),
                    StoreOutcome::Conflict { .. } => Err(Error::Store(
                        "could not persist the rotated refresh token".into(),
                    )),
                }
            }
        })
        .await
    }
}

impl TokenSource for RefreshingSource {
    fn fetch(&self, current: Option<TokenSet>) -> BoxFuture<'static, Result<TokenSet>> {
        let this = self.clone();
        Box::pin(async move { this.refresh_now(current).await })
    }
}
