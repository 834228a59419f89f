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
//!    *before* handing out the new access token;
//! 5. on `invalid_grant`, re-reads the store: a rotation by another writer is used; otherwise the
//!    grant is removed and [`Error::ReauthorizationRequired`] returned — never a retry loop.
//!
//! The cache runs this in a spawned task, so a caller that times out cannot cancel it between
//! the server's rotation and the store write.
//!
//! [`FileStore`]: super::FileStore

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::store::{StoreOutcome, StoredGrant, TokenStore, Versioned};
use super::token_cache::{BoxFuture, TokenSource};
use crate::error::{Error, Result};
use crate::grant::{OAuthClient, TokenParams};
use crate::token::TokenSet;

/// Member of a stored access token naming the parameters it was obtained with.
const PARAMS_TAG: &str = "agent_oauth_params";

/// How coarse a store's `updated_at` may be ([`FileStore`](super::FileStore) keeps whole
/// seconds).
const STORE_TIME_RESOLUTION: Duration = Duration::from_secs(1);

/// A token source that refreshes one grant's refresh token, rotation-safe (see the module docs).
#[derive(Clone)]
pub struct RefreshingSource {
    client: OAuthClient,
    store: Arc<dyn TokenStore>,
    store_key: String,
    params: TokenParams,
    min_remaining: Duration,
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
        }
    }

    /// Save a freshly obtained grant (from a code or device flow) as the starting point.
    ///
    /// # Errors
    /// [`Error::Store`].
    pub async fn seed(&self, tokens: &TokenSet) -> Result<()> {
        let store = self.store.clone();
        let key = self.store_key.clone();
        let grant = self.stored_grant(tokens);
        blocking(move || {
            let _lock = store.lock(&key)?;
            let current = store.load(&key)?.map(|v| v.version);
            match store.store(&key, &grant, current)? {
                StoreOutcome::Written { .. } => Ok(()),
                StoreOutcome::Conflict { .. } => {
                    Err(Error::Store("concurrent write while seeding".into()))
                }
            }
        })
        .await
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
        let store = self.store.clone();
        let key = self.store_key.clone();
        let lock = blocking(move || store.lock(&key)).await?;
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
        let stored = self.load().await?;
        if let Some(v) = &stored {
            if let Some(t) = self.usable_stored(&v.value, current.as_ref()) {
                tracing::debug!(target: "agent_oauth", token = %t.access_token.fingerprint(),
                    "using a token another writer refreshed");
                return Ok((t, false));
            }
        }
        // The newest refresh token we know: the store's, unless our in-memory one is newer (a
        // store write that failed earlier).
        let from_store = stored.as_ref().and_then(|v| {
            v.value
                .refresh_token
                .clone()
                .map(|r| (r, v.value.updated_at))
        });
        let from_memory = current
            .as_ref()
            .and_then(|c| c.refresh_token.clone().map(|r| (r, c.issued_at)));
        let rt = match (from_store, from_memory) {
            (Some((s, st)), Some((m, mt))) => {
                // Persistent stores keep `updated_at` in whole seconds: a write made just after
                // our token was issued can carry an earlier time. Every token this source hands
                // out was stored first, so in a tie the store is the newer one.
                if mt >= st + STORE_TIME_RESOLUTION {
                    m
                } else {
                    s
                }
            }
            (Some((s, _)), None) => s,
            (None, Some((m, _))) => m,
            (None, None) => {
                return Err(Error::ReauthorizationRequired(
                    "no refresh token for this grant".into(),
                ))
            }
        };
        let version = stored.as_ref().map(|v| v.version);
        match self.client.refresh(&rt, &self.params).await {
            Ok(tokens) => {
                self.persist(&tokens, version).await?;
                tracing::info!(target: "agent_oauth", token = %tokens.access_token.fingerprint(),
                    rotated = tokens.refresh_token.as_ref().is_some_and(|n| !n.ct_eq(&rt)),
                    "refreshed");
                Ok((tokens, true))
            }
            Err(Error::ReauthorizationRequired(why)) => {
                // Another writer may have rotated between our read and the server's answer.
                let again = self.load().await?;
                if let Some(v) = again.filter(|v| Some(v.version) != version) {
                    if let Some(t) = self.usable_stored(&v.value, current.as_ref()) {
                        return Ok((t, false));
                    }
                    if let Some(newer) = v.value.refresh_token.clone().filter(|n| !n.ct_eq(&rt)) {
                        let tokens = self.client.refresh(&newer, &self.params).await?;
                        self.persist(&tokens, Some(v.version)).await?;
                        return Ok((tokens, true));
                    }
                }
                let store = self.store.clone();
                let key = self.store_key.clone();
                let _ = blocking(move || store.remove(&key, version)).await;
                tracing::warn!(target: "agent_oauth", "refresh token rejected; grant removed");
                Err(Error::ReauthorizationRequired(why))
            }
            Err(e) => Err(e),
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
