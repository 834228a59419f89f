//! A grant: the one home of a refresh token.
//!
//! A [`Grant`] owns everything about one authorization grant of one client at one
//! authorization server: seeding it after a login, refreshing it, keeping what the store could
//! not take, and ending it (logout). Nothing else holds a refresh token: the token cache keeps
//! access tokens only, and asks the grant for a new one ([`RefreshingSource`] is the grant as a
//! cache's token source, for tokens with given parameters).
//!
//! Every refresh (`rotation`):
//!
//! 1. takes the store's lock for the grant (across threads and, with [`FileStore`], processes);
//! 2. re-reads the store: if another writer already rotated and left a usable access token, it
//!    is used and nothing is sent;
//! 3. sends the newest live refresh token: the one in custody (below) when the store has not
//!    taken it, else the store's. A refresh token rotated away or rejected is remembered and
//!    never presented again, even if the store still holds it;
//! 4. writes the returned refresh token (or keeps the old one when none came back) to the store
//!    *before* handing out the new access token;
//! 5. when the server rejects the refresh token (`invalid_grant`, or any 4xx that ends it, see
//!    [`OAuthClient::refresh`]), re-reads the store: a rotation by another writer is used;
//!    otherwise the grant is removed and [`Error::ReauthorizationRequired`] returned — never a
//!    retry loop.
//!
//! The cache runs refreshes in a spawned task, so a caller that times out cannot cancel one
//! between the server's rotation and the store write.
//!
//! Tokens the server issued are never dropped (`custody`). When the store fails to take them
//! (disk full, a network store down), they are kept in memory and the access token is handed
//! out; the tokens in custody are authoritative over the store, and the write is retried in the
//! background with backoff, reported by [`AgentEvent::StoreWriteFailed`] and
//! [`AgentEvent::StoreWriteRecovered`].
//!
//! A grant is named by a [`GrantKey`] (issuer, client id, and room for a principal), so that an
//! agent can hold grants at several authorization servers, or for several principals, side by
//! side.
//!
//! [`FileStore`]: crate::store::FileStore
//! [`AgentEvent::StoreWriteFailed`]: crate::event::AgentEvent::StoreWriteFailed
//! [`AgentEvent::StoreWriteRecovered`]: crate::event::AgentEvent::StoreWriteRecovered

mod custody;
mod rotation;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cache::{BoxFuture, Principal, TokenKey, TokenSource};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::{OAuthClient, TokenParams};
use crate::store::{StoreOutcome, TokenStore, REFRESH_LEASE};
use crate::token::Binding;
use crate::token::TokenSet;

use custody::Custody;
use rotation::stored_grant;

/// Which grant: the authorization server, the client, and (reserved) the principal it acts
/// for. Also names the grant's entry in the store.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct GrantKey {
    issuer: String,
    client_id: String,
    /// The principal the grant acts for ([`Principal::agent`] for an agent's own user grant).
    principal: Principal,
    store_key: String,
}

impl GrantKey {
    /// The grant of `client_id` at `issuer` for tokens with `binding`, under the store key
    /// agents have always used for it.
    pub(crate) fn new(issuer: &str, client_id: &str, binding: Binding) -> Self {
        Self::for_principal(issuer, client_id, binding, Principal::agent())
    }

    /// The grant of `client_id` at `issuer` acting for `principal`, for tokens with
    /// `binding`. The agent's own grant keeps its historic store key; another principal's
    /// key names it (see [`TokenKey::store_key`]).
    pub(crate) fn for_principal(
        issuer: &str,
        client_id: &str,
        binding: Binding,
        principal: Principal,
    ) -> Self {
        let store_key = TokenKey::new(issuer, client_id)
            .with_binding(binding)
            .with_subject("grant")
            .with_principal(principal.clone())
            .store_key();
        GrantKey {
            principal,
            ..Self::with_store_key(issuer, client_id, store_key)
        }
    }

    /// The grant of `client_id` at `issuer`, stored under `store_key`.
    pub(crate) fn with_store_key(issuer: &str, client_id: &str, store_key: String) -> Self {
        GrantKey {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            principal: Principal::agent(),
            store_key,
        }
    }

    /// The key of the grant's entry in the store.
    pub(crate) fn store_key(&self) -> &str {
        &self.store_key
    }
}

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantKey")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

/// One grant: its refresh token lives here and nowhere else. Cheap to clone; clones share the
/// tokens in custody.
#[derive(Clone)]
pub(crate) struct Grant {
    client: OAuthClient,
    store: Arc<dyn TokenStore>,
    key: GrantKey,
    custody: Arc<Custody>,
    events: Option<EventHook>,
    /// Seeded (or found in the store) and not ended.
    active: Arc<AtomicBool>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant")
            .field("key", &self.key)
            .field("store", &self.store)
            .field("custody", &self.custody)
            .field("active", &self.is_active())
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// The grant `key` of `client` in `store` (not read yet: see [`open`](Self::open)).
    pub(crate) fn new(
        client: OAuthClient,
        store: Arc<dyn TokenStore>,
        key: GrantKey,
        events: Option<EventHook>,
    ) -> Self {
        Grant {
            client,
            store,
            key,
            custody: Arc::default(),
            events,
            active: Arc::default(),
        }
    }

    /// As [`new`](Self::new), active when the store holds a refresh token for it (a grant
    /// persisted by an earlier run is picked up).
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot be read.
    pub(crate) async fn open(
        client: OAuthClient,
        store: Arc<dyn TokenStore>,
        key: GrantKey,
        events: Option<EventHook>,
    ) -> Result<Self> {
        let grant = Self::new(client, store, key, events);
        let stored = grant.load().await?;
        let found = stored.is_some_and(|v| v.value.refresh_token.is_some());
        grant.active.store(found, Ordering::SeqCst);
        Ok(grant)
    }

    /// The same client, store and event hook, for the grant `key` (opened: see
    /// [`open`](Self::open)).
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot be read.
    pub(crate) async fn sibling(&self, key: GrantKey) -> Result<Self> {
        Self::open(
            self.client.clone(),
            self.store.clone(),
            key,
            self.events.clone(),
        )
        .await
    }

    /// The store's lock for the grant: the one kept for tokens waiting for the store (ours
    /// already), else a new one.
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot lock.
    pub(crate) async fn store_lock(&self) -> Result<crate::store::StoreLock> {
        match self.custody.take_lock() {
            Some(l) => Ok(l),
            None => self.store.lock(self.key.store_key(), REFRESH_LEASE).await,
        }
    }

    /// Whether there is a grant to refresh (seeded or found in the store, not ended).
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    /// Keep freshly obtained tokens (from a code or device flow, or adopted) as the grant's
    /// starting point, obtained with `params`.
    ///
    /// When the store fails, the tokens are kept in custody (and used from there) and the write
    /// is retried in the background, as after a refresh.
    ///
    /// # Errors
    /// [`Error::Store`] when another writer wrote the grant at the same time.
    pub(crate) async fn seed(&self, tokens: &TokenSet, params: &TokenParams) -> Result<()> {
        let (store, key) = (&self.store, self.key.store_key());
        let grant = stored_grant(tokens, params, self.jkt());
        let pending = grant.clone();
        let result = async {
            let _lock = self.store_lock().await?;
            let current = store.load(key).await?.map(|v| v.version);
            store.store(key, &grant, current).await
        }
        .await;
        match result {
            Ok(StoreOutcome::Written { .. }) => self.custody.written(),
            Ok(StoreOutcome::Conflict { .. }) => {
                return Err(Error::Store("concurrent write while seeding".into()))
            }
            Err(e) => self.keep_unstored(pending, tokens, &e),
        }
        self.active.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// End the grant: forget the tokens in custody (so that no background write puts the grant
    /// back), remove it from the store, and revoke its newest refresh token (RFC 7009) — the one
    /// in custody when the store never took it.
    ///
    /// # Errors
    /// Store and revocation errors. The grant is ended locally even when revocation fails.
    pub(crate) async fn logout(&self) -> Result<()> {
        let unstored = self.custody.pending_refresh_token();
        // Taken before the tokens in custody are forgotten: a lock kept for them is ours.
        let kept = self.custody.take_lock();
        self.custody.clear();
        let (store, key) = (&self.store, self.key.store_key());
        let stored = async {
            let _lock = match kept {
                Some(l) => l,
                None => store.lock(key, REFRESH_LEASE).await?,
            };
            let current = store.load(key).await?;
            let _ = store.remove(key, None).await?;
            Ok::<_, Error>(current)
        }
        .await?;
        self.active.store(false, Ordering::SeqCst);
        let Some(rt) = unstored.or_else(|| stored.and_then(|v| v.value.refresh_token)) else {
            return Ok(());
        };
        self.custody.mark_dead(&rt);
        self.client
            .revoke(rt.secret(), Some("refresh_token"))
            .await?;
        EventHook::emit(
            self.events.as_ref(),
            AgentEvent::TokenRevoked {
                fingerprint: rt.fingerprint(),
            },
        );
        Ok(())
    }
}

/// A token source that refreshes one grant for tokens with given parameters, rotation-safe
/// (see the module docs). The grant's refresh token never leaves it: a cache fed by this source
/// holds access tokens only.
#[derive(Clone)]
pub struct RefreshingSource {
    grant: Grant,
    params: TokenParams,
}

impl std::fmt::Debug for RefreshingSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingSource")
            .field("client", &self.grant.client)
            .field("store", &self.grant.store)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
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
        let key = GrantKey::with_store_key(
            client.server().issuer(),
            client.client_id(),
            store_key.into(),
        );
        RefreshingSource {
            grant: Grant::new(client, store, key, None),
            params,
        }
    }

    /// The source of `grant`'s tokens with `params`.
    pub(crate) fn of(grant: &Grant, params: TokenParams) -> Self {
        RefreshingSource {
            grant: grant.clone(),
            params,
        }
    }

    /// Save a freshly obtained grant (from a code or device flow) as the starting point.
    ///
    /// When the store fails, the grant is kept in memory (and used from there) and the write is
    /// retried in the background, as after a refresh.
    ///
    /// # Errors
    /// [`Error::Store`] when another writer wrote the grant at the same time.
    pub async fn seed(&self, tokens: &TokenSet) -> Result<()> {
        self.grant.seed(tokens, &self.params).await
    }

    /// Refresh now (normally called by the cache). `current` is the access token being
    /// replaced, if any: a stored copy of it is not handed back. The result carries the
    /// grant's refresh token; a cache keeps none of it.
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
        self.grant.refresh(&self.params, current.as_ref()).await
    }
}

impl TokenSource for RefreshingSource {
    fn fetch(&self, current: Option<TokenSet>) -> BoxFuture<'static, Result<TokenSet>> {
        let this = self.clone();
        Box::pin(async move { this.refresh_now(current).await })
    }
}
