//! Refresh-token rotation through [`RefreshingSource`] against the embedded test server, whose
//! grants die (all tokens revoked) as soon as a rotated refresh token is presented again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::prelude::{async_trait, TestServer, TestServerConfig};
use crate::support::prelude::{
    CacheConfig, Error, FileStore, MemoryStore, RefreshingSource, Result, StoreLock, StoreOutcome,
    StoredGrant, TokenCache, TokenHandle, TokenKey, TokenParams, TokenSource, TokenStore,
    Versioned,
};

use super::common::{agent, dyn_store, grant_with_refresh_token, secret_of};

const KEY: &str = "grant-under-test";

/// A server grant for `agent`, seeded into `store`, with a cache handle on top.
async fn seeded(
    server: &TestServer,
    store: Arc<dyn TokenStore>,
) -> (RefreshingSource, TokenHandle, String) {
    let rt = server.issue_refresh_token("agent", "read offline_access");
    let source = RefreshingSource::new(agent(server), store, KEY, TokenParams::new());
    source.seed(&grant_with_refresh_token(&rt)).await.unwrap();
    let handle = handle_for(server, &source);
    (source, handle, rt)
}

fn handle_for(server: &TestServer, source: &RefreshingSource) -> TokenHandle {
    let cache = TokenCache::new(CacheConfig::default());
    let source = source.clone();
    cache.handle(&TokenKey::new(server.issuer(), "agent"), move || {
        Arc::new(source) as Arc<dyn TokenSource>
    })
}

async fn stored_rt(store: &dyn TokenStore) -> Option<String> {
    store
        .load(KEY)
        .await
        .unwrap()
        .and_then(|v| v.value.refresh_token)
        .map(|r| r.secret().to_owned())
}

/// A store whose writes can be made to fail, to show that tokens the store could not take are
/// kept in memory rather than lost.
#[derive(Debug, Default)]
struct FailingStore {
    inner: MemoryStore,
    fail_writes: Mutex<bool>,
}

#[async_trait]
impl TokenStore for FailingStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        self.inner.load(key).await
    }
    async fn store(
        &self,
        key: &str,
        value: &StoredGrant,
        expected: Option<u64>,
    ) -> Result<StoreOutcome> {
        if *self.fail_writes.lock().unwrap() {
            return Err(Error::Store("disk full".into()));
        }
        self.inner.store(key, value, expected).await
    }
    async fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        self.inner.remove(key, expected).await
    }
    async fn lock(&self, key: &str, lease: std::time::Duration) -> Result<StoreLock> {
        self.inner.lock(key, lease).await
    }
}

#[tokio::test]
async fn refresh_store_write_failure_keeps_the_tokens_in_memory() {
    let server = TestServer::start().await;
    let store = Arc::new(FailingStore::default());
    let (_source, handle, first) = seeded(&server, store.clone()).await;
    *store.fail_writes.lock().unwrap() = true;
    // The server rotated: dropping what it issued would lose the grant, so the access token is
    // handed out and the new refresh token kept in memory while the store cannot take it.
    let t = handle.get().await.unwrap();
    assert_eq!(server.stats().grants.refresh_token, 1);
    assert_eq!(stored_rt(&*store).await.as_deref(), Some(first.as_str()));
    assert!(t.token().refresh_token.is_none());
    // The next refresh presents the in-memory token, not the store's rotated one.
    handle.refresh().await.unwrap();
    assert_eq!(server.stats().grants.refresh_token, 2);
    assert_eq!(server.stats().revoked_grants, 0);
}

#[tokio::test]
async fn refresh_invalid_grant_requires_reauthorization_and_removes_the_grant() {
    let server = TestServer::start().await;
    let store = Arc::new(MemoryStore::new());
    let (source, handle, _) = seeded(&server, store.clone()).await;
    handle.get().await.unwrap();
    server.revoke_all();
    let before = server.stats().token_requests;
    let e = handle.refresh().await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    assert_eq!(
        server.stats().token_requests,
        before + 1,
        "one request, no loop"
    );
    assert!(store.load(KEY).await.unwrap().is_none(), "grant removed");
    // Without a grant, the source sends nothing at all.
    let e = source.refresh_now(None).await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    assert_eq!(server.stats().token_requests, before + 1);
}

#[tokio::test]
async fn refresh_after_invalid_grant_does_not_resend_the_dead_token() {
    // The cache still holds the last token (with the dead refresh token) after the failure.
    // A later refresh through the cache must not present it again.
    let server = TestServer::start().await;
    let store = Arc::new(MemoryStore::new());
    let (_source, handle, _) = seeded(&server, store.clone()).await;
    handle.get().await.unwrap();
    server.revoke_all();
    let before = server.stats().token_requests;
    for _ in 0..3 {
        let e = handle.refresh().await.unwrap_err();
        assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    }
    assert_eq!(
        server.stats().token_requests,
        before + 1,
        "the dead refresh token was sent once only"
    );
}

/// Another writer (process) rotated the grant and left only the new refresh token in the store;
/// our cache still holds the previous one. The refresh must use the store's.
async fn newer_grant_in_store_is_used(store: Arc<dyn TokenStore>) {
    let server = TestServer::start().await;
    let (_source, handle, _) = seeded(&server, store.clone()).await;
    let held = handle.get().await.unwrap().token().clone();
    let held_rt = store
        .load(KEY)
        .await
        .unwrap()
        .unwrap()
        .value
        .refresh_token
        .unwrap();
    // The other writer: a raw refresh with the stored token, written back with CAS.
    let other = agent(&server);
    let current = store.load(KEY).await.unwrap().unwrap();
    let rotated = other
        .refresh(
            current.value.refresh_token.as_ref().unwrap(),
            &TokenParams::new(),
        )
        .await
        .unwrap();
    let newer = rotated.refresh_token.clone().unwrap();
    assert!(!newer.ct_eq(&held_rt));
    let grant = StoredGrant::new(Some(newer.clone()), None);
    assert!(store
        .store(KEY, &grant, Some(current.version))
        .await
        .unwrap()
        .written()
        .is_some());
    // Our refresh: the stale refresh token must not be sent (the server would revoke the
    // whole grant).
    let t = handle.refresh().await.unwrap();
    let stats = server.stats();
    assert_eq!(stats.revoked_grants, 0, "the stale refresh token was sent");
    assert_eq!(stats.grants.refresh_token, 3);
    assert_ne!(secret_of(t.token()), secret_of(&held));
    let stored = store.load(KEY).await.unwrap().unwrap().value;
    assert!(
        !stored.refresh_token.unwrap().ct_eq(&newer),
        "the rotation was stored"
    );
    assert_eq!(
        stored.access.map(|a| secret_of(&a)),
        Some(secret_of(t.token()))
    );
}

#[tokio::test]
async fn refresh_newer_grant_in_memory_store_is_used() {
    newer_grant_in_store_is_used(dyn_store(MemoryStore::new())).await;
}

#[tokio::test]
async fn refresh_newer_grant_in_file_store_is_used() {
    let dir = tempfile::tempdir().unwrap();
    newer_grant_in_store_is_used(dyn_store(FileStore::new(dir.path().join("s")).unwrap())).await;
}

#[tokio::test]
async fn refresh_token_left_by_another_writer_is_used_without_a_request() {
    let server = TestServer::start().await;
    let store = Arc::new(MemoryStore::new());
    let (_source, handle, _) = seeded(&server, store.clone()).await;
    let held = handle.get().await.unwrap().token().clone();
    let current = store.load(KEY).await.unwrap().unwrap();
    let other = agent(&server);
    let rotated = other
        .refresh(
            current.value.refresh_token.as_ref().unwrap(),
            &TokenParams::new(),
        )
        .await
        .unwrap();
    let grant = StoredGrant::new(rotated.refresh_token.clone(), Some(rotated.clone()));
    let _ = store
        .store(KEY, &grant, Some(current.version))
        .await
        .unwrap();
    let before = server.stats().token_requests;
    let t = handle.refresh().await.unwrap();
    assert_eq!(server.stats().token_requests, before, "nothing sent");
    assert_eq!(secret_of(t.token()), secret_of(&rotated));
    assert_ne!(secret_of(t.token()), secret_of(&held));
}

#[tokio::test]
async fn refresh_invalidate_gets_a_new_token_not_the_stored_copy() {
    // After a resource rejects the token, `invalidate` + `get` must produce a different token,
    // even though the store keeps a copy of the rejected one.
    let server = TestServer::start().await;
    let store = Arc::new(MemoryStore::new());
    let (_source, handle, _) = seeded(&server, store.clone()).await;
    let rejected = secret_of(handle.get().await.unwrap().token());
    handle.invalidate();
    let next = secret_of(handle.get().await.unwrap().token());
    assert_ne!(
        next, rejected,
        "the rejected token came back from the store"
    );
    assert_eq!(server.stats().grants.refresh_token, 2);
}

async fn fifty_forced_refreshes(store: Arc<dyn TokenStore>) {
    let server =
        TestServer::start_with(TestServerConfig::default().with_latency(Duration::from_millis(20)))
            .await;
    let (source, handle, _) = seeded(&server, store.clone()).await;
    handle.get().await.unwrap();
    // 50 tasks force a refresh through the shared handle...
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let h = handle.clone();
            tokio::spawn(async move {
                if i % 2 == 0 {
                    h.refresh().await.map(|t| secret_of(t.token()))
                } else {
                    h.invalidate();
                    h.get().await.map(|t| secret_of(t.token()))
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    // ...and 50 more straight through the source (no cache), each holding the same token and
    // asking for another: without the store's lock they would all spend the same refresh token.
    let held = handle.get().await.unwrap().token().clone();
    let before = server.stats().grants.refresh_token;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (s, held) = (source.clone(), held.clone());
            tokio::spawn(async move { s.refresh_now(Some(held)).await.map(|t| secret_of(&t)) })
        })
        .collect();
    let mut got = std::collections::HashSet::new();
    for t in tasks {
        got.insert(t.await.unwrap().unwrap());
    }
    assert!(!got.contains(&secret_of(&held)));
    assert_eq!(got.len(), 1, "one refresh, the other 49 reuse its result");
    assert_eq!(server.stats().grants.refresh_token, before + 1);
    let stats = server.stats();
    assert_eq!(stats.revoked_grants, 0, "{stats:?}");
    assert!(stats.grants.refresh_token >= 2, "{stats:?}");
    // The grant is alive: the stored refresh token works.
    let rt = store
        .load(KEY)
        .await
        .unwrap()
        .unwrap()
        .value
        .refresh_token
        .unwrap();
    agent(&server)
        .refresh(&rt, &TokenParams::new())
        .await
        .unwrap();
    println!("50+50 forced refreshes: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_50_forced_refreshes_memory_store_keep_the_grant() {
    fifty_forced_refreshes(dyn_store(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_50_forced_refreshes_file_store_keep_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    fifty_forced_refreshes(dyn_store(FileStore::new(dir.path().join("s")).unwrap())).await;
}

#[tokio::test]
async fn refresh_file_store_survives_a_restart() {
    let server = TestServer::start_with(
        TestServerConfig::default().with_access_token_ttl(Duration::from_secs(1)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens");
    let last_rt = {
        let store = dyn_store(FileStore::new(&path).unwrap());
        let (_source, handle, _) = seeded(&server, store.clone()).await;
        handle.get().await.unwrap();
        handle.refresh().await.unwrap();
        store
            .load(KEY)
            .await
            .unwrap()
            .unwrap()
            .value
            .refresh_token
            .unwrap()
    };
    // "Restart": everything above is dropped. Wait for the stored access token to expire.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let store = dyn_store(FileStore::new(&path).unwrap());
    let loaded = store.load(KEY).await.unwrap().unwrap();
    assert!(loaded.value.refresh_token.as_ref().unwrap().ct_eq(&last_rt));
    let access = loaded.value.access.clone().unwrap();
    assert!(access.is_expired(std::time::SystemTime::now()));
    let source = RefreshingSource::new(agent(&server), store.clone(), KEY, TokenParams::new());
    let handle = handle_for(&server, &source);
    handle.insert(access.clone());
    assert!(handle.peek().is_none(), "the reloaded token is expired");
    let t = handle.get().await.unwrap();
    assert_ne!(secret_of(t.token()), secret_of(&access));
    let stats = server.stats();
    assert_eq!(stats.revoked_grants, 0);
    assert_eq!(stats.grants.refresh_token, 3);
}

/// Every caller gives up while the refresh is on the wire: it still completes, the rotated
/// refresh token is persisted, and the next caller is served without a second request.
#[tokio::test]
async fn store_refresh_persists_its_result_when_every_caller_gives_up() {
    let server = TestServer::start().await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let (_source, handle, first) = seeded(&server, store.clone()).await;
    server.set_latency(Duration::from_millis(400));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let h = handle.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_millis(50), h.get())
                    .await
                    .is_err()
            })
        })
        .collect();
    for c in callers {
        assert!(c.await.unwrap(), "every caller timed out");
    }
    // Nobody waits any more; the refresh runs on and lands in the store.
    let mut rotated = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        rotated = stored_rt(&*store).await.filter(|rt| *rt != first);
        if rotated.is_some() {
            break;
        }
    }
    assert!(rotated.is_some(), "the rotated refresh token was persisted");
    server.set_latency(Duration::ZERO);
    let t = handle.get().await.unwrap();
    assert!(!t.token().access_token.secret().is_empty());
    assert_eq!(
        server.stats().grants.refresh_token,
        1,
        "one refresh, finished"
    );
    assert_eq!(server.stats().revoked_grants, 0);
}
