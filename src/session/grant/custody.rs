//! In-memory custody of a grant's tokens: what the store has not taken yet, the refresh tokens
//! that must never be presented again, and the background write that hands pending tokens to
//! the store once it works again.

use std::sync::Mutex;
use std::time::Duration;

use backon::BackoffBuilder as _;

use super::Grant;
use crate::error::{sanitize, Error};
use crate::event::{AgentEvent, EventHook};
use crate::store::{StoreLock, StoreOutcome, StoredGrant, REFRESH_LEASE};
use crate::token::{RefreshToken, TokenSet};

/// How many refresh tokens known to be dead (rotated away or rejected) are remembered.
const DEAD_TOKENS_KEPT: usize = 32;

/// Backoff of the background store write: first retry after this...
const WRITE_RETRY_MIN: Duration = Duration::from_millis(100);
/// ...and never more than this apart.
const WRITE_RETRY_MAX: Duration = Duration::from_secs(30);

/// What this process knows of one grant beyond its store: tokens the store has not taken yet,
/// and refresh tokens that must never be presented again. One per [`Grant`], shared by its
/// clones.
#[derive(Default)]
pub(crate) struct Custody {
    state: Mutex<CustodyState>,
    /// Serializes this process's refreshes of the grant, also when the store's lock fails.
    pub(super) refresh: tokio::sync::Mutex<()>,
    /// The store's lock, kept from a refresh whose result the store failed to take until the
    /// pending write lands: no other process may refresh from the refresh token it still
    /// holds (rotated away by us).
    held: Mutex<Option<StoreLock>>,
}

#[derive(Default)]
struct CustodyState {
    /// Issued tokens the store failed to take: authoritative over the store until written.
    pending: Option<Pending>,
    /// Refresh tokens rotated away or rejected, newest last.
    dead: Vec<RefreshToken>,
    /// Bumped whenever `pending` changes.
    seq: u64,
    /// A background writer is running.
    writer: bool,
}

/// Tokens waiting for the store.
#[derive(Clone)]
pub(super) struct Pending {
    pub(super) grant: StoredGrant,
    pub(super) fingerprint: String,
    seq: u64,
    pub(super) failures: u32,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Custody")
            .field("pending", &st.pending.is_some())
            .field("dead", &st.dead.len())
            .finish_non_exhaustive()
    }
}

impl Custody {
    fn lock(&self) -> std::sync::MutexGuard<'_, CustodyState> {
        // Every update is a few assignments: a panic cannot leave the state half-written.
        crate::sync::lock(&self.state)
    }

    /// Keep `lock` while tokens are pending (dropped at once when nothing is).
    pub(super) fn keep_lock(&self, lock: StoreLock) {
        if self.lock().pending.is_some() {
            *crate::sync::lock(&self.held) = Some(lock);
        }
    }

    /// The kept lock, if it is still held.
    pub(super) fn take_lock(&self) -> Option<StoreLock> {
        crate::sync::lock(&self.held)
            .take()
            .filter(StoreLock::is_held)
    }

    pub(super) fn pending(&self) -> Option<Pending> {
        self.lock().pending.clone()
    }

    /// The newest refresh token the store has not taken, if any.
    pub(super) fn pending_refresh_token(&self) -> Option<RefreshToken> {
        self.lock()
            .pending
            .as_ref()
            .and_then(|p| p.grant.refresh_token.clone())
    }

    /// Forget the pending tokens (the grant was ended on purpose).
    pub(super) fn clear(&self) {
        let mut st = self.lock();
        st.pending = None;
        st.seq = st.seq.wrapping_add(1);
    }

    pub(super) fn is_dead(&self, rt: &RefreshToken) -> bool {
        self.lock().dead.iter().any(|d| d.ct_eq(rt))
    }

    /// `rt` was rotated away, rejected or revoked: never present it again.
    pub(super) fn mark_dead(&self, rt: &RefreshToken) {
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
    pub(super) fn written(&self) {
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

/// Hands the lock back to the custody when dropped while tokens are still pending.
struct KeepOnFailure<'a> {
    custody: &'a Custody,
    lock: Option<StoreLock>,
}

impl Drop for KeepOnFailure<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.lock.take() {
            self.custody.keep_lock(l);
        }
    }
}

impl Grant {
    /// The store failed to take `grant`: keep it in memory, report, and retry in the background.
    pub(super) fn keep_unstored(&self, grant: StoredGrant, tokens: &TokenSet, error: &Error) {
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
        if self.custody.keep_pending(grant, fingerprint) {
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
            if self.custody.writer_may_stop() {
                return;
            }
            tokio::time::sleep(backoff.next().unwrap_or(WRITE_RETRY_MAX)).await;
            // Never while this process refreshes the grant (also when the store's lock failed
            // for that refresh).
            let custody = self.custody.clone();
            let _in_process = custody.refresh.lock().await;
            let (store, key, custody) = (
                self.store.clone(),
                self.key.store_key().to_owned(),
                self.custody.clone(),
            );
            // Under the grant's lock, so that a refresh (which holds it) and this write never
            // interleave: the pending value is read and written in one step.
            let result = async move {
                let lock = match custody.take_lock() {
                    Some(l) => l,
                    None => store.lock(&key, REFRESH_LEASE).await?,
                };
                let Some(p) = custody.pending() else {
                    return Ok(None);
                };
                // Kept again when this write fails; released once it is written.
                let _lock = KeepOnFailure {
                    custody: &custody,
                    lock: Some(lock),
                };
                let current = store.load(&key).await?.map(|v| v.version);
                // Ours is the newest token the server issued: it wins over what the store holds.
                match store.store(&key, &p.grant, current).await? {
                    StoreOutcome::Written { .. } => {
                        custody.write_succeeded(p.seq);
                        Ok(Some(p))
                    }
                    StoreOutcome::Conflict { .. } => Err(Error::Store(
                        "another writer got in between; retrying".into(),
                    )),
                }
            }
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
                Err(e) => self.report_write_failure(&e),
            }
        }
    }

    fn report_write_failure(&self, e: &Error) {
        let seq = self.custody.pending().map(|p| p.seq);
        if let Some((fingerprint, attempt)) = seq.and_then(|seq| self.custody.write_failed(seq)) {
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
