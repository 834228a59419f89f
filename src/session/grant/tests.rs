//! A grant against a small rotating authorization server: every refresh issues a new refresh
//! token and kills the one presented; presenting a dead one is `invalid_grant`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::routing::post;
use axum::{Form, Json, Router};
use http::StatusCode;
use serde_json::{json, Value};

use super::{Grant, GrantKey, RefreshingSource};
use crate::cache::{TokenCache, TokenKey, TokenSource};
use crate::discovery::{AuthorizationServer, ServerMetadata};
use crate::error::{Error, Result};
use crate::grant::{OAuthClient, TokenParams};
use crate::store::{MemoryStore, StoreLock, StoreOutcome, StoredGrant, TokenStore, Versioned};
use crate::token::Binding;
use crate::token::{AccessToken, RefreshToken, TokenSet, TokenType};
use crate::transport::HttpTransport;

#[derive(Default)]
struct Server {
    /// The one live refresh token.
    live: Mutex<String>,
    issued: Mutex<u32>,
    /// Refresh tokens presented, in order.
    presented: Mutex<Vec<String>>,
    revoked: Mutex<Vec<String>>,
}

async fn token(
    State(s): State<Arc<Server>>,
    Form(f): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let rt = f.get("refresh_token").cloned().unwrap_or_default();
    s.presented.lock().unwrap().push(rt.clone());
    let mut live = s.live.lock().unwrap();
    if *live != rt {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        );
    }
    let mut n = s.issued.lock().unwrap();
    *n += 1;
    *live = format!("rt-{n}");
    let body = json!({"access_token": format!("at-{n}"), "token_type": "Bearer",
        "expires_in": 3600, "refresh_token": *live});
    (StatusCode::OK, Json(body))
}

async fn revoke(State(s): State<Arc<Server>>, Form(f): Form<HashMap<String, String>>) {
    let t = f.get("token").cloned().unwrap_or_default();
    s.revoked.lock().unwrap().push(t);
}

/// A server whose live refresh token is `rt-0`, and a client of it.
async fn server() -> (Arc<Server>, OAuthClient) {
    let state = Arc::new(Server::default());
    *state.live.lock().unwrap() = "rt-0".into();
    let app = Router::new()
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let md = ServerMetadata {
        issuer: base.clone(),
        token_endpoint: Some(format!("{base}/token")),
        revocation_endpoint: Some(format!("{base}/revoke")),
        ..Default::default()
    };
    let transport = HttpTransport::new().unwrap();
    let server = AuthorizationServer::from_metadata(md, transport).unwrap();
    (state, OAuthClient::builder(server, "agent").build())
}

/// A store whose writes fail while `fail` is set.
#[derive(Debug, Default)]
struct FailingStore {
    inner: MemoryStore,
    fail: AtomicBool,
}

#[crate::store::async_trait]
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
        if self.fail.load(Ordering::SeqCst) {
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

fn seed_tokens(rt: &str) -> TokenSet {
    let now = SystemTime::now();
    let mut t = TokenSet::new(
        AccessToken::new("seeded"),
        TokenType::Bearer,
        now - Duration::from_secs(120),
    );
    t.expires_at = Some(now - Duration::from_secs(60));
    t.refresh_token = Some(RefreshToken::new(rt));
    t
}

fn grant(client: &OAuthClient, store: Arc<dyn TokenStore>) -> Grant {
    let key = GrantKey::new(client.server().issuer(), "agent", Binding::bearer());
    Grant::new(client.clone(), store, key, None)
}

/// A grant of the test server's `rt-0` seeded into `store`.
async fn seeded(store: Arc<dyn TokenStore>) -> (Arc<Server>, Grant) {
    let (s, client) = server().await;
    let g = grant(&client, store);
    g.seed(&seed_tokens("rt-0"), &TokenParams::new())
        .await
        .unwrap();
    (s, g)
}

async fn stored_rt(store: &dyn TokenStore, grant: &Grant) -> Option<String> {
    let v = store.load(grant.key.store_key()).await.unwrap()?;
    v.value.refresh_token.map(|r| r.secret().to_owned())
}

#[test]
fn grant_key_keeps_the_agent_store_key() {
    let key = GrantKey::new("https://as.example", "agent", Binding::bearer());
    let old = TokenKey::new("https://as.example", "agent")
        .with_binding(Binding::bearer())
        .with_subject("grant")
        .store_key();
    assert_eq!(key.store_key(), old);
    assert!(key.principal.is_agent());
    // Another principal's grant has a key of its own.
    let alice = GrantKey::for_principal(
        "https://as.example",
        "agent",
        Binding::bearer(),
        crate::cache::Principal::new("user:alice"),
    );
    assert_ne!(alice.store_key(), key.store_key());
    assert_eq!(alice.principal.id(), Some("user:alice"));
}

#[tokio::test]
async fn grant_seed_makes_it_active_and_stores_the_refresh_token() {
    let (_s, client) = server().await;
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let g = grant(&client, store.clone());
    assert!(!g.is_active());
    g.seed(&seed_tokens("rt-0"), &TokenParams::new())
        .await
        .unwrap();
    assert!(g.is_active());
    assert_eq!(stored_rt(&*store, &g).await.as_deref(), Some("rt-0"));
    // A grant opened on the same store later finds it.
    let again = Grant::open(client, store, g.key.clone(), None)
        .await
        .unwrap();
    assert!(again.is_active());
}

#[tokio::test]
async fn grant_rotates_and_persists_before_handing_out() {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let (s, g) = seeded(store.clone()).await;
    let mut held: Option<TokenSet> = None;
    for n in 1..=3 {
        let (t, refreshed) = g.refresh(&TokenParams::new(), held.as_ref()).await.unwrap();
        assert!(refreshed);
        assert_eq!(t.access_token.secret(), format!("at-{n}"));
        assert_eq!(stored_rt(&*store, &g).await, Some(format!("rt-{n}")));
        held = Some(t);
    }
    // Without a token to replace, the fresh stored one is used: nothing is sent.
    let (t, refreshed) = g.refresh(&TokenParams::new(), None).await.unwrap();
    assert!(!refreshed);
    assert_eq!(t.access_token.secret(), "at-3");
    assert_eq!(*s.presented.lock().unwrap(), ["rt-0", "rt-1", "rt-2"]);
}

#[tokio::test]
async fn grant_custody_after_a_failed_write_presents_the_newest_token() {
    let store = Arc::new(FailingStore::default());
    let (s, g) = seeded(store.clone()).await;
    store.fail.store(true, Ordering::SeqCst);
    let params = TokenParams::new();
    let (t1, _) = g.refresh(&params, None).await.unwrap();
    assert_eq!(
        t1.access_token.secret(),
        "at-1",
        "handed out although unstored"
    );
    assert_eq!(stored_rt(&*store, &g).await.as_deref(), Some("rt-0"));
    assert_eq!(
        g.custody
            .pending_refresh_token()
            .map(|r| r.secret().to_owned()),
        Some("rt-1".to_owned())
    );
    // The store's rt-0 is dead: the next refresh presents rt-1 from custody.
    g.refresh(&params, Some(&t1)).await.unwrap();
    assert_eq!(*s.presented.lock().unwrap(), ["rt-0", "rt-1"]);
    // The store heals: the background write lands the newest refresh token.
    store.fail.store(false, Ordering::SeqCst);
    for _ in 0..100 {
        if stored_rt(&*store, &g).await.as_deref() == Some("rt-2") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored_rt(&*store, &g).await.as_deref(), Some("rt-2"));
    assert!(g.custody.pending().is_none());
}

#[tokio::test]
async fn grant_never_presents_a_rotated_token_the_store_still_holds() {
    let store = Arc::new(FailingStore::default());
    let (s, g) = seeded(store.clone()).await;
    store.fail.store(true, Ordering::SeqCst);
    g.refresh(&TokenParams::new(), None).await.unwrap();
    // Custody is lost (as after logout), the store still holds the rotated rt-0: it is known
    // dead and never sent.
    g.custody.clear();
    let e = g.refresh(&TokenParams::new(), None).await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    assert_eq!(*s.presented.lock().unwrap(), ["rt-0"]);
}

#[tokio::test]
async fn grant_logout_revokes_the_newest_token_even_when_only_in_memory() {
    let store = Arc::new(FailingStore::default());
    let (s, g) = seeded(store.clone()).await;
    store.fail.store(true, Ordering::SeqCst);
    g.refresh(&TokenParams::new(), None).await.unwrap();
    g.logout().await.unwrap();
    assert_eq!(
        *s.revoked.lock().unwrap(),
        ["rt-1"],
        "not the store's stale rt-0"
    );
    assert!(!g.is_active());
    assert!(stored_rt(&*store, &g).await.is_none());
    assert!(
        g.custody.pending().is_none(),
        "no background write puts it back"
    );
    // Nothing is presented after logout.
    let e = g.refresh(&TokenParams::new(), None).await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    assert_eq!(s.presented.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn grant_logout_revokes_the_stored_token() {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let (s, g) = seeded(store.clone()).await;
    g.refresh(&TokenParams::new(), None).await.unwrap();
    g.logout().await.unwrap();
    assert_eq!(*s.revoked.lock().unwrap(), ["rt-1"]);
    assert!(stored_rt(&*store, &g).await.is_none());
}

#[tokio::test]
async fn grant_cached_token_never_exposes_the_refresh_token() {
    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let (s, g) = seeded(store.clone()).await;
    let source = RefreshingSource::of(&g, TokenParams::new());
    let cache = TokenCache::default();
    let handle = cache.handle(&TokenKey::new(g.client.server().issuer(), "agent"), || {
        Arc::new(source) as Arc<dyn TokenSource>
    });
    let t = handle.get().await.unwrap();
    assert_eq!(t.token().access_token.secret(), "at-1");
    assert!(t.token().refresh_token.is_none());
    // Inserted tokens lose theirs too; the grant refreshes from its own (never from what
    // was inserted).
    handle.insert(seed_tokens("rt-from-outside"));
    assert!(handle.peek().is_none());
    let t = handle.refresh().await.unwrap();
    assert_eq!(t.token().access_token.secret(), "at-1", "the stored copy");
    assert!(t.token().refresh_token.is_none());
    handle.invalidate();
    let t = handle.get().await.unwrap();
    assert_eq!(t.token().access_token.secret(), "at-2");
    assert!(t.token().refresh_token.is_none());
    assert_eq!(*s.presented.lock().unwrap(), ["rt-0", "rt-1"]);
}

/// A store whose leases are lost as soon as they are taken (the holder was paused past its
/// lease), and where another holder writes a newer grant while the refresh is on the wire.
#[derive(Debug, Default)]
struct OvertakenStore {
    inner: MemoryStore,
    /// Armed: the next conditional write is preceded by another holder's.
    overtake: AtomicBool,
    /// The leases handed out report themselves lost.
    lose_leases: AtomicBool,
}

#[crate::store::async_trait]
impl TokenStore for OvertakenStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        self.inner.load(key).await
    }
    async fn store(
        &self,
        key: &str,
        value: &StoredGrant,
        expected: Option<u64>,
    ) -> Result<StoreOutcome> {
        if self.overtake.swap(false, Ordering::SeqCst) {
            let newer = StoredGrant::new(Some(RefreshToken::new("rt-newer-holder")), None);
            let _ = self.inner.store(key, &newer, expected).await?;
        }
        self.inner.store(key, value, expected).await
    }
    async fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        self.inner.remove(key, expected).await
    }
    async fn lock(&self, _: &str, _: Duration) -> Result<StoreLock> {
        let (lock, lease) = StoreLock::leased(());
        if self.lose_leases.load(Ordering::SeqCst) {
            lease.lost();
        }
        Ok(lock)
    }
}

#[tokio::test]
async fn store_fencing_a_refresh_whose_lease_was_lost_keeps_the_newer_grant() {
    let store = Arc::new(OvertakenStore::default());
    let (_s, g) = seeded(store.clone()).await;
    // Lease lost, and a newer holder wrote meanwhile: its grant stays, ours is not forced in.
    store.lose_leases.store(true, Ordering::SeqCst);
    store.overtake.store(true, Ordering::SeqCst);
    let (t, refreshed) = g.refresh(&TokenParams::new(), None).await.unwrap();
    assert!(refreshed);
    assert_eq!(
        t.access_token.secret(),
        "at-1",
        "the access token is handed out"
    );
    assert_eq!(
        stored_rt(&*store, &g).await.as_deref(),
        Some("rt-newer-holder"),
        "the fenced writer overwrote a newer grant"
    );
    assert!(
        g.custody.pending().is_none(),
        "nothing retried behind the newer grant"
    );

    // Under a lease still held, a writer that took no lock loses to the rotation, as before.
    let store = Arc::new(OvertakenStore::default());
    let (_s, g) = seeded(store.clone()).await;
    store.overtake.store(true, Ordering::SeqCst);
    let (t, _) = g.refresh(&TokenParams::new(), None).await.unwrap();
    assert_eq!(t.access_token.secret(), "at-1");
    assert_eq!(stored_rt(&*store, &g).await.as_deref(), Some("rt-1"));
}
