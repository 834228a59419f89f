//! Refreshing a grant: rotation under the store's lock, persist before hand-out, and the
//! re-read after a rejected refresh token.

use std::time::{Duration, SystemTime};

use super::Grant;
use crate::error::{Error, Result};
use crate::grant::TokenParams;
use crate::store::{StoreLock, StoreOutcome, StoredGrant, Versioned, REFRESH_LEASE};
use crate::token::{RefreshToken, TokenSet};

/// Member of a stored access token naming the parameters it was obtained with.
const PARAMS_TAG: &str = "agent_oauth_params";

/// A stored access token is reused only with more than this left (or half its lifetime).
const MIN_REMAINING: Duration = Duration::from_secs(30);

impl Grant {
    /// Refresh for `params`; `current` is the access token being replaced (never handed back).
    /// Also tells whether a refresh request was made (`false` when a token another writer
    /// stored was used).
    pub(crate) async fn refresh(
        &self,
        params: &TokenParams,
        current: Option<&TokenSet>,
    ) -> Result<(TokenSet, bool)> {
        let custody = self.custody.clone();
        let _in_process = custody.refresh.lock().await;
        // A lock kept while our rotated tokens wait for the store is ours already.
        let kept = custody.take_lock();
        let lock = match kept {
            Some(l) => Ok(l),
            None => self.store.lock(self.key.store_key(), REFRESH_LEASE).await,
        };
        let lock = match lock {
            Ok(lock) => Some(lock),
            // Tokens the store could not take are known to this process only: no other process
            // can rotate them, so refreshing under the in-process lock alone is safe.
            Err(e) if custody.pending().is_some() => {
                tracing::warn!(target: "agent_oauth", error = %e,
                    "store lock failed; refreshing from the tokens held in memory");
                None
            }
            // Without the lock another process could be rotating: send nothing.
            Err(e) => return Err(e),
        };
        let result = self.refresh_locked(params, current, lock.as_ref()).await;
        if let Some(lock) = lock {
            // Kept only while the store has not taken what the server issued.
            custody.keep_lock(lock);
        }
        result
    }

    /// The thumbprint of the DPoP key this grant's client binds its tokens to.
    pub(super) fn jkt(&self) -> Option<&str> {
        self.client.dpop_key().map(|k| k.thumbprint())
    }

    pub(super) async fn load(&self) -> Result<Option<Versioned<StoredGrant>>> {
        self.store.load(self.key.store_key()).await
    }

    /// A stored access token another writer left, if it is usable and not the one we hold.
    fn usable_stored(
        stored: &StoredGrant,
        params: &TokenParams,
        current: Option<&TokenSet>,
    ) -> Option<TokenSet> {
        let access = stored.access.as_ref()?;
        let now = SystemTime::now();
        let fresh = access
            .remaining(now)
            .is_none_or(|r| r > MIN_REMAINING.min(access.lifetime().unwrap_or_default() / 2));
        let same = current.is_some_and(|c| c.access_token.ct_eq(&access.access_token));
        // One grant can serve several resources; only a token obtained with the same
        // parameters is interchangeable.
        let same_params = match access.extra.get(PARAMS_TAG).and_then(|v| v.as_str()) {
            Some(stored_tag) => stored_tag == params_tag(params),
            // Written by something that does not tag (another tool, an older version): accept
            // it for the same scope when no resource or audience narrows what we need.
            None => {
                params.resources.is_empty()
                    && params.audiences.is_empty()
                    && params.scope.as_ref().is_none_or(|s| *s == access.scope)
            }
        };
        (fresh && !same && same_params).then(|| {
            let mut t = access.clone();
            t.refresh_token = stored.refresh_token.clone();
            t
        })
    }

    /// The newest live refresh token: the one in custody (the store has not taken it, so it is
    /// newer than anything stored), else the store's. A token rotated away or rejected is never
    /// chosen, whatever the store still holds.
    fn newest_refresh_token(&self, stored: Option<&StoredGrant>) -> Option<RefreshToken> {
        let alive = |r: &RefreshToken| !self.custody.is_dead(r);
        match self.custody.pending() {
            Some(p) => p.grant.refresh_token.filter(alive),
            None => stored.and_then(|g| g.refresh_token.clone()).filter(alive),
        }
    }

    async fn refresh_locked(
        &self,
        params: &TokenParams,
        current: Option<&TokenSet>,
        lock: Option<&StoreLock>,
    ) -> Result<(TokenSet, bool)> {
        let pending = self.custody.pending();
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
        if let Some(t) = newest.and_then(|g| Self::usable_stored(g, params, current)) {
            tracing::debug!(target: "agent_oauth", token = %t.access_token.fingerprint(),
                "using a token another writer refreshed");
            return Ok((t, false));
        }
        let Some(rt) = self.newest_refresh_token(stored.as_ref().map(|v| &v.value)) else {
            let known_dead = stored
                .as_ref()
                .and_then(|v| v.value.refresh_token.as_ref())
                .is_some_and(|r| self.custody.is_dead(r));
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
        // A refresh token bound to another key would be refused (and could end the grant).
        if let Some(stored_jkt) = newest.and_then(|g| g.dpop_jkt.as_deref()) {
            if Some(stored_jkt) != self.jkt() {
                return Err(Error::DpopKeyMismatch {
                    stored: stored_jkt.to_owned(),
                    ours: self.jkt().map(str::to_owned),
                });
            }
        }
        match self.client.refresh(&rt, params).await {
            Ok(tokens) => {
                let tokens = self.keep(&rt, tokens, params, version, lock).await;
                tracing::info!(target: "agent_oauth", token = %tokens.access_token.fingerprint(),
                    rotated = tokens.refresh_token.as_ref().is_some_and(|n| !n.ct_eq(&rt)),
                    "refreshed");
                Ok((tokens, true))
            }
            Err(Error::ReauthorizationRequired(why)) => {
                self.custody.mark_dead(&rt);
                self.after_rejection(why, params, current, version, lock)
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// The refresh token read at `version` was rejected: another writer may have rotated
    /// between our read and the server's answer, so the store is read again. A newer grant
    /// there is used (once); otherwise the grant is removed.
    async fn after_rejection(
        &self,
        why: String,
        params: &TokenParams,
        current: Option<&TokenSet>,
        version: Option<u64>,
        lock: Option<&StoreLock>,
    ) -> Result<(TokenSet, bool)> {
        let again = self.load().await.map_err(|e| {
            Error::Store(format!(
                "the refresh token was rejected ({why}), and the store could not be re-read \
                 for a newer one: {e}"
            ))
        })?;
        if let Some(v) = again.as_ref().filter(|v| Some(v.version) != version) {
            if let Some(t) = Self::usable_stored(&v.value, params, current) {
                return Ok((t, false));
            }
            let alive = |r: &RefreshToken| !self.custody.is_dead(r);
            if let Some(newer) = v.value.refresh_token.clone().filter(alive) {
                let tokens = match self.client.refresh(&newer, params).await {
                    Ok(t) => t,
                    Err(e) => {
                        if matches!(e, Error::ReauthorizationRequired(_)) {
                            self.custody.mark_dead(&newer);
                        }
                        return Err(e);
                    }
                };
                let tokens = self
                    .keep(&newer, tokens, params, Some(v.version), lock)
                    .await;
                return Ok((tokens, true));
            }
        }
        self.remove_stored(again.as_ref().map(|v| v.version)).await;
        tracing::warn!(target: "agent_oauth", "refresh token rejected; grant removed");
        Err(Error::ReauthorizationRequired(why))
    }

    /// Remove the grant at `version` (best effort: a failed removal leaves a token that is
    /// known dead and never presented again).
    async fn remove_stored(&self, version: Option<u64>) {
        let Some(version) = version else {
            return;
        };
        if let Err(e) = self.store.remove(self.key.store_key(), Some(version)).await {
            tracing::warn!(target: "agent_oauth", error = %e,
                "could not remove the rejected grant from the store");
        }
    }

    /// Keep what the server issued for `sent`: `sent` is dead once rotated away, and the new
    /// tokens go to the store, or, when it fails, into custody with a background retry. Never
    /// fails: the tokens are the newest the server knows, and dropping them would lose the grant.
    ///
    /// Fencing: when the refresh ran under a leased `lock` that was lost meanwhile and a newer
    /// grant is in the store, the store keeps the newer grant (its holder refreshed after us);
    /// the access token is still handed out.
    pub(super) async fn keep(
        &self,
        sent: &RefreshToken,
        tokens: TokenSet,
        params: &TokenParams,
        version: Option<u64>,
        lock: Option<&StoreLock>,
    ) -> TokenSet {
        if tokens
            .refresh_token
            .as_ref()
            .is_some_and(|n| !n.ct_eq(sent))
        {
            self.custody.mark_dead(sent);
        }
        let grant = stored_grant(&tokens, params, self.jkt());
        let fenced = lock.is_some_and(|l| !l.is_held());
        match self.persist(grant.clone(), version, fenced).await {
            Ok(()) => self.custody.written(),
            Err(Error::LeaseLost(why)) => {
                tracing::warn!(target: "agent_oauth", %why,
                    "lease lost during the refresh; the newer stored grant is kept");
            }
            Err(e) => self.keep_unstored(grant, &tokens, &e),
        }
        tokens
    }

    async fn persist(&self, grant: StoredGrant, version: Option<u64>, fenced: bool) -> Result<()> {
        let (store, key) = (&self.store, self.key.store_key());
        match store.store(key, &grant, version).await? {
            StoreOutcome::Written { .. } => Ok(()),
            // Our lease ran out and another holder wrote after us: the version fences us off.
            StoreOutcome::Conflict { .. } if fenced => Err(Error::LeaseLost(
                "a newer holder wrote the grant after our lease ran out".into(),
            )),
            // A writer that did not take the lock got in between. Ours is the newest token the
            // server issued, so it wins.
            StoreOutcome::Conflict { current } => {
                match store.store(key, &grant, current.map(|c| c.version)).await? {
                    StoreOutcome::Written { .. } => Ok(()),
                    StoreOutcome::Conflict { .. } => Err(Error::Store(
                        "could not persist the rotated refresh token".into(),
                    )),
                }
            }
        }
    }
}

fn params_tag(p: &TokenParams) -> String {
    serde_json::json!([
        p.scope.as_ref().map(ToString::to_string),
        p.resources,
        p.audiences
    ])
    .to_string()
}

/// What is stored for `tokens`: the refresh token, and the access token tagged with the
/// parameters it was obtained with.
pub(super) fn stored_grant(
    tokens: &TokenSet,
    params: &TokenParams,
    jkt: Option<&str>,
) -> StoredGrant {
    let mut access = tokens.clone();
    access
        .extra
        .insert(PARAMS_TAG.to_owned(), params_tag(params).into());
    let grant = StoredGrant::new(tokens.refresh_token.clone(), Some(access));
    match jkt {
        Some(j) => grant.with_dpop_jkt(j),
        None => grant,
    }
}
