//! Hardening: ways to lose a grant or wedge the token cache.
//!
//! - 01: a store that fails during rotation must not lose the tokens the server issued;
//! - 02: a panicking fetch (user source, overflowing expiry maths) must not wedge its key;
//! - 03: a dead refresh token answered without an OAuth body is not sent again and again;
//! - 04: a delegated lifetime of `Duration::MAX` does not panic;
//! - 18: a rejected token can be dropped, and a refresh forced, through the `Agent`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::prelude::{async_trait, TestServer};
use crate::support::prelude::{
    AccessToken, Agent, AgentEvent, CacheConfig, ClientAuth, DpopMode, Error, FileStore,
    MemoryStore, RefreshToken, Result, StoreLock, StoreOutcome, StoredGrant, TokenCache, TokenKey,
    TokenSet, TokenSource, TokenStore, TokenType, Versioned,
};
use tokio::sync::mpsc;

use crate::support::server::{guard, Reply, Scripted};

// ---------------------------------------------------------------------------------------------
// A store that fails on demand.

/// The store operations a test can make fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lock,
    Load,
    Store,
    Remove,
}

/// A [`TokenStore`] over a [`MemoryStore`] whose operations fail when told to: `fail(op, n)`
/// makes the next `n` calls of `op` fail (`usize::MAX`: until told otherwise).
#[derive(Debug)]
struct FlakyStore {
    inner: Arc<dyn TokenStore>,
    /// Per operation: calls to let through first, then calls to fail.
    failures: Mutex<Vec<(Op, usize, usize)>>,
    keys: Mutex<Vec<String>>,
    /// The refresh token of the last write asked for, taken or not.
    offered: Mutex<Option<String>>,
}

impl Default for FlakyStore {
    fn default() -> Self {
        Self::over(Arc::new(MemoryStore::new()))
    }
}

impl FlakyStore {
    fn over(inner: Arc<dyn TokenStore>) -> Self {
        FlakyStore {
            inner,
            failures: Mutex::default(),
            keys: Mutex::default(),
            offered: Mutex::default(),
        }
    }

    fn fail(&self, op: Op, n: usize) {
        self.fail_after(op, 0, n);
    }

    /// Let `skip` calls of `op` through, then fail `n`.
    fn fail_after(&self, op: Op, skip: usize, n: usize) {
        let mut f = self.failures.lock().unwrap();
        f.retain(|(o, _, _)| *o != op);
        if n > 0 {
            f.push((op, skip, n));
        }
    }

    fn heal(&self) {
        self.failures.lock().unwrap().clear();
    }

    fn check(&self, op: Op, key: &str) -> Result<()> {
        {
            let mut keys = self.keys.lock().unwrap();
            if !keys.iter().any(|k| k == key) {
                keys.push(key.to_owned());
            }
        }
        let mut f = self.failures.lock().unwrap();
        if let Some((_, skip, n)) = f.iter_mut().find(|(o, _, _)| *o == op) {
            if *skip > 0 {
                *skip -= 1;
            } else if *n > 0 {
                if *n != usize::MAX {
                    *n -= 1;
                }
                return Err(Error::Store(format!("injected {op:?} failure (disk full)")));
            }
        }
        Ok(())
    }

    async fn stored_rt(&self, key: &str) -> Option<String> {
        self.inner
            .load(key)
            .await
            .unwrap()
            .and_then(|v| v.value.refresh_token)
            .map(|r| r.secret().to_owned())
    }

    /// The refresh token the agent last tried to store (its newest, even when only in memory).
    fn offered_rt(&self) -> String {
        self.offered
            .lock()
            .unwrap()
            .clone()
            .expect("a write was tried")
    }

    fn only_key(&self) -> String {
        let keys = self.keys.lock().unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        keys[0].clone()
    }
}

#[async_trait]
impl TokenStore for FlakyStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        self.check(Op::Load, key)?;
        self.inner.load(key).await
    }

    async fn store(
        &self,
        key: &str,
        value: &StoredGrant,
        expected: Option<u64>,
    ) -> Result<StoreOutcome> {
        *self.offered.lock().unwrap() = value.refresh_token.as_ref().map(|r| r.secret().to_owned());
        self.check(Op::Store, key)?;
        self.inner.store(key, value, expected).await
    }

    async fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        self.check(Op::Remove, key)?;
        self.inner.remove(key, expected).await
    }

    async fn lock(&self, key: &str, lease: std::time::Duration) -> Result<StoreLock> {
        self.check(Op::Lock, key)?;
        self.inner.lock(key, lease).await
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A grant holding only `refresh_token` (its access token already expired), as an application
/// adopts a refresh token obtained elsewhere.
fn grant_with_refresh_token(refresh_token: &str) -> TokenSet {
    let now = SystemTime::now();
    let mut t = TokenSet::new(
        AccessToken::new("placeholder-expired"),
        TokenType::Bearer,
        now - Duration::from_secs(120),
    );
    t.expires_at = Some(now - Duration::from_secs(60));
    t.refresh_token = Some(RefreshToken::new(refresh_token));
    t
}

/// An agent of the test server's `agent` client on `store`, its events sent to the receiver.
async fn agent_on(
    server: &TestServer,
    store: Arc<dyn TokenStore>,
) -> (Agent, mpsc::UnboundedReceiver<AgentEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .token_store(store)
        // One binding across restarts (a new DPoP key would be another grant).
        .dpop_mode(DpopMode::Off)
        .on_event(move |e| {
            let _ = tx.send(e.clone());
        })
        .build()
        .await
        .expect("agent");
    (agent, rx)
}

/// Wait (hang-guarded) for an event matching `pred`, skipping others.
async fn wait_for_event(
    rx: &mut mpsc::UnboundedReceiver<AgentEvent>,
    pred: impl Fn(&AgentEvent) -> bool,
) -> AgentEvent {
    guard(async {
        loop {
            let e = rx.recv().await.expect("event channel open");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
}

fn drain(rx: &mut mpsc::UnboundedReceiver<AgentEvent>) -> Vec<AgentEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 01: a failed store write after rotation loses nothing.

#[tokio::test]
async fn hardening_01_failed_store_write_after_rotation_keeps_the_issued_tokens() {
    let server = TestServer::start().await;
    let store = Arc::new(FlakyStore::default());
    let (agent, mut events) = agent_on(&server, store.clone()).await;
    let rt0 = server.issue_refresh_token("agent", "read offline_access");
    agent
        .adopt_grant(grant_with_refresh_token(&rt0))
        .await
        .unwrap();
    let key = store.only_key();

    // Disk full right after the server rotated RT0 into RT1.
    store.fail(Op::Store, usize::MAX);
    let t1 = guard(agent.access_token(None))
        .await
        .expect("the issued access token is handed out although the store failed")
        .token()
        .clone();
    let rt1 = store.offered_rt();
    assert_ne!(rt1, rt0, "the server rotated");
    assert_eq!(store.stored_rt(&key).await.as_deref(), Some(rt0.as_str()));
    let failed = drain(&mut events);
    assert!(
        failed.iter().any(|e| matches!(
            e,
            AgentEvent::StoreWriteFailed { fingerprint, attempt: 1, .. }
                if *fingerprint == t1.access_token.fingerprint()
        )),
        "{failed:?}"
    );
    assert!(
        !format!("{failed:?}").contains(&rt1),
        "events carry no token"
    );

    // The next refresh presents RT1 (memory), not the store's RT0: no reuse, the grant lives.
    let t2 = guard(agent.force_refresh(None))
        .await
        .expect("refresh from the in-memory refresh token")
        .token()
        .clone();
    assert_ne!(t2.access_token.secret(), t1.access_token.secret());
    assert!(t2.refresh_token.is_none());
    let rt2 = store.offered_rt();
    assert_ne!(rt2, rt1);
    let stats = server.stats();
    assert_eq!(
        stats.revoked_grants, 0,
        "the server never saw a reused token"
    );
    assert_eq!(stats.grants.refresh_token, 2);

    // The store comes back: the background write lands the newest grant.
    store.heal();
    let recovered = wait_for_event(&mut events, |e| {
        matches!(e, AgentEvent::StoreWriteRecovered { .. })
    })
    .await;
    assert!(
        matches!(&recovered, AgentEvent::StoreWriteRecovered { fingerprint, failed_attempts }
            if *fingerprint == t2.access_token.fingerprint() && *failed_attempts >= 1),
        "{recovered:?}"
    );
    assert_eq!(store.stored_rt(&key).await.as_deref(), Some(rt2.as_str()));

    // A restarted agent on the same store continues the grant.
    let (restarted, _ev) = agent_on(&server, store.clone()).await;
    let stored = guard(restarted.access_token(None)).await.unwrap();
    assert_eq!(
        stored.token().access_token.secret(),
        t2.access_token.secret(),
        "the stored access token is used"
    );
    let t3 = guard(restarted.force_refresh(None)).await.unwrap();
    assert_eq!(
        server.stats().grants.refresh_token,
        3,
        "refreshed from the stored RT2"
    );
    assert!(t3.token().refresh_token.is_none());
    assert_ne!(store.stored_rt(&key).await.unwrap(), rt2);
    assert_eq!(server.stats().revoked_grants, 0);
}

#[tokio::test]
async fn hardening_01_grant_survives_store_failures_at_every_step_of_rotation() {
    let server = TestServer::start().await;
    let store = Arc::new(FlakyStore::default());
    let (agent, mut events) = agent_on(&server, store.clone()).await;
    let rt0 = server.issue_refresh_token("agent", "read offline_access");
    agent
        .adopt_grant(grant_with_refresh_token(&rt0))
        .await
        .unwrap();
    let key = store.only_key();
    let requests = || server.stats().token_requests;

    // The lock fails: nothing is sent (another process could be rotating), the call fails.
    store.fail(Op::Lock, 1);
    let before = requests();
    let e = guard(agent.access_token(None)).await.unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    assert_eq!(requests(), before, "nothing sent without the lock");

    // The load before the refresh fails: nothing is sent either.
    store.fail(Op::Load, 1);
    let e = guard(agent.access_token(None)).await.unwrap_err();
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    assert_eq!(
        requests(),
        before,
        "nothing sent without knowing the newest token"
    );

    // The write after the refresh fails (and keeps failing): the token is handed out.
    store.fail(Op::Store, usize::MAX);
    let t1 = guard(agent.access_token(None))
        .await
        .unwrap()
        .token()
        .clone();
    assert_eq!(store.stored_rt(&key).await.as_deref(), Some(rt0.as_str()));
    assert!(t1.refresh_token.is_none());
    let rt1 = store.offered_rt();

    // While the newest tokens live only in memory, a failing lock or load does not stop the
    // next refresh: memory is authoritative, and no other process can hold these tokens.
    store.fail(Op::Lock, 1);
    store.fail(Op::Load, 1);
    let t2 = guard(agent.force_refresh(None))
        .await
        .unwrap()
        .token()
        .clone();
    assert!(t2.refresh_token.is_none());
    let rt2 = store.offered_rt();
    assert_ne!(rt2, rt1);
    let t3 = guard(agent.force_refresh(None))
        .await
        .unwrap()
        .token()
        .clone();
    let rt3 = store.offered_rt();
    assert_ne!(rt3, rt2);
    assert_eq!(server.stats().revoked_grants, 0);
    assert_eq!(server.stats().grants.refresh_token, 3);

    // The store heals: the newest grant is written, and a restarted agent continues it.
    store.heal();
    wait_for_event(&mut events, |e| {
        matches!(e, AgentEvent::StoreWriteRecovered { fingerprint, .. }
            if *fingerprint == t3.access_token.fingerprint())
    })
    .await;
    assert_eq!(store.stored_rt(&key).await, Some(rt3));
    let (restarted, _ev) = agent_on(&server, store.clone()).await;
    guard(restarted.access_token(None)).await.unwrap();
    guard(restarted.force_refresh(None)).await.unwrap();
    assert_eq!(
        server.stats().revoked_grants,
        0,
        "no rotated token was reused"
    );
    assert_eq!(server.stats().grants.refresh_token, 4);
}

#[tokio::test]
async fn hardening_01_seed_write_failure_keeps_the_adopted_grant() {
    let server = TestServer::start().await;
    let store = Arc::new(FlakyStore::default());
    let (agent, mut events) = agent_on(&server, store.clone()).await;
    let rt0 = server.issue_refresh_token("agent", "read offline_access");
    store.fail(Op::Store, 1);
    agent
        .adopt_grant(grant_with_refresh_token(&rt0))
        .await
        .expect("the grant is kept in memory although the store failed");
    wait_for_event(&mut events, |e| {
        matches!(e, AgentEvent::StoreWriteRecovered { .. })
    })
    .await;
    assert_eq!(
        store.stored_rt(&store.only_key()).await.as_deref(),
        Some(rt0.as_str())
    );
    guard(agent.access_token(None)).await.unwrap();
    assert_eq!(server.stats().revoked_grants, 0);
}

#[tokio::test]
async fn hardening_01_logout_revokes_the_refresh_token_the_store_never_took() {
    let server = TestServer::start().await;
    let store = Arc::new(FlakyStore::default());
    let (agent, mut events) = agent_on(&server, store.clone()).await;
    let rt0 = server.issue_refresh_token("agent", "read offline_access");
    agent
        .adopt_grant(grant_with_refresh_token(&rt0))
        .await
        .unwrap();
    let key = store.only_key();
    store.fail(Op::Store, usize::MAX);
    let t1 = guard(agent.access_token(None))
        .await
        .unwrap()
        .token()
        .clone();
    assert!(t1.refresh_token.is_none());
    let rt1 = RefreshToken::new(store.offered_rt());
    assert_eq!(store.stored_rt(&key).await.as_deref(), Some(rt0.as_str()));
    guard(agent.logout()).await.expect("logout");
    // The in-memory RT1 (the live one) was revoked, not the store's stale RT0.
    let revoked: Vec<String> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            AgentEvent::TokenRevoked { fingerprint } => Some(fingerprint),
            _ => None,
        })
        .collect();
    assert_eq!(revoked, vec![rt1.fingerprint()]);
    assert_eq!(
        server.stats().revoked_grants,
        1,
        "the grant is gone at the server"
    );
    assert_eq!(store.stored_rt(&key).await, None);
}

#[tokio::test]
async fn hardening_01_rejected_token_is_not_presented_again_when_its_removal_fails() {
    let server = TestServer::start().await;
    let store = Arc::new(FlakyStore::default());
    let (agent, _events) = agent_on(&server, store.clone()).await;
    let rt0 = server.issue_refresh_token("agent", "read offline_access");
    agent
        .adopt_grant(grant_with_refresh_token(&rt0))
        .await
        .unwrap();
    let key = store.only_key();
    server.revoke_all();

    // The remove after invalid_grant fails: the dead RT0 stays in the store...
    store.fail(Op::Remove, usize::MAX);
    let e = guard(agent.access_token(None)).await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    assert_eq!(store.stored_rt(&key).await.as_deref(), Some(rt0.as_str()));
    let sent = server.stats().token_requests;

    // ...but is never sent again.
    for _ in 0..3 {
        let e = guard(agent.force_refresh(None)).await.unwrap_err();
        assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    }
    assert_eq!(
        server.stats().token_requests,
        sent,
        "the dead token was sent again"
    );

    // Once the store can remove it, it is gone.
    store.heal();
    let _ = guard(agent.force_refresh(None)).await.unwrap_err();
    assert_eq!(store.stored_rt(&key).await, None);
    assert_eq!(server.stats().token_requests, sent);
}

#[tokio::test]
async fn hardening_01_failed_re_read_after_invalid_grant_does_not_resend_the_dead_token() {
    let server = TestServer::start().await;
    let store = Arc::new(FlakyStore::default());
    let (agent, _events) = agent_on(&server, store.clone()).await;
    let rt0 = server.issue_refresh_token("agent", "read offline_access");
    agent
        .adopt_grant(grant_with_refresh_token(&rt0))
        .await
        .unwrap();
    server.revoke_all();

    // Lock, load-before and refresh succeed; the re-read after invalid_grant fails.
    store.fail_after(Op::Load, 1, 1);
    let e = guard(agent.access_token(None)).await.unwrap_err();
    assert!(
        matches!(&e, Error::Store(m) if m.contains("rejected")),
        "{e:?}"
    );
    let sent = server.stats().token_requests;
    let e = guard(agent.force_refresh(None)).await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    assert_eq!(
        server.stats().token_requests,
        sent,
        "the dead token was sent again"
    );
}

// ---------------------------------------------------------------------------------------------
// 02: a panicking fetch does not wedge its key; expiry maths saturates.

#[tokio::test]
async fn hardening_02_panicking_token_source_does_not_wedge_the_key() {
    let cache = TokenCache::new(CacheConfig::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let source = move |_cur: Option<TokenSet>| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                panic!("user token source bug");
            }
            let mut t = TokenSet::new(
                AccessToken::new("fine"),
                TokenType::Bearer,
                SystemTime::now(),
            );
            t.expires_at = Some(SystemTime::now() + Duration::from_secs(3600));
            Ok(t)
        }
    };
    let h = cache.handle(&TokenKey::new("https://as.example", "c"), move || {
        Arc::new(source) as Arc<dyn TokenSource>
    });
    let e = guard(h.get()).await.unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    // The flight ended: the next call fetches again and succeeds.
    let t = guard(h.get()).await.expect("the key is not wedged");
    assert_eq!(t.token().access_token.secret(), "fine");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A scripted authorization server whose token responses omit `expires_in`, so the client's
/// `default_expires_in` is used.
async fn server_without_expires_in() -> Scripted {
    let s = Scripted::start().await;
    let origin = s.origin();
    s.route(
        "/.well-known/oauth-authorization-server",
        Reply::json(
            200,
            &serde_json::json!({
                "issuer": origin,
                "token_endpoint": format!("{origin}/token"),
                "grant_types_supported": ["client_credentials", "refresh_token"],
            }),
        ),
    );
    s.route(
        "/token",
        Reply::json(
            200,
            &serde_json::json!({"access_token": "at-without-expiry", "token_type": "Bearer"}),
        ),
    );
    s
}

async fn default_expires_in_case(lifetime: Duration) {
    let s = server_without_expires_in().await;
    let agent = Agent::builder()
        .issuer(s.origin())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .default_expires_in(lifetime)
        .build()
        .await
        .expect("agent");
    for _ in 0..3 {
        let t = guard(agent.access_token(None))
            .await
            .expect("no panic, no wedged key");
        assert_eq!(t.token().access_token.secret(), "at-without-expiry");
        let left = t.token().remaining(SystemTime::now()).expect("an expiry");
        assert!(left > Duration::from_secs(365 * 24 * 3600), "{left:?}");
    }
    assert_eq!(s.hits_for("/token"), 1, "the long-lived token is cached");
}

#[tokio::test]
async fn hardening_02_default_expires_in_of_200_years_does_not_panic() {
    default_expires_in_case(Duration::from_secs(200 * 365 * 24 * 3600)).await;
}

#[tokio::test]
async fn hardening_02_default_expires_in_duration_max_does_not_panic() {
    default_expires_in_case(Duration::MAX).await;
}

#[tokio::test]
async fn hardening_02_file_store_expiry_in_milliseconds_does_not_panic() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let files: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path()).unwrap());
    let flaky = Arc::new(FlakyStore::over(files.clone()));
    let (agent, _events) = agent_on(&server, flaky.clone()).await;
    let rt0 = server.issue_refresh_token("agent", "read offline_access");
    agent
        .adopt_grant(grant_with_refresh_token(&rt0))
        .await
        .unwrap();
    // Another tool rewrites the record with milliseconds where seconds belong.
    let key = flaky.only_key();
    let store = files;
    let now = SystemTime::now();
    let millis = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let mut access = TokenSet::new(
        AccessToken::new("at-from-another-tool"),
        TokenType::Bearer,
        UNIX_EPOCH + Duration::from_secs(millis(now)),
    );
    access.expires_at = Some(UNIX_EPOCH + Duration::from_secs(millis(now) + 3_600_000));
    let current = store.load(&key).await.unwrap().map(|v| v.version);
    let mut grant = StoredGrant::new(Some(RefreshToken::new(rt0.clone())), Some(access));
    grant.updated_at = now;
    assert!(store
        .store(&key, &grant, current)
        .await
        .unwrap()
        .written()
        .is_some());

    let (restarted, _ev) = agent_on(&server, store.clone()).await;
    for _ in 0..2 {
        let t = guard(restarted.access_token(None))
            .await
            .expect("no panic, no wedged key");
        assert_ne!(
            t.token().access_token.secret(),
            "at-from-another-tool",
            "an access token with absurd times is not believed"
        );
    }
    assert_eq!(server.stats().grants.refresh_token, 1);
    assert_eq!(server.stats().revoked_grants, 0);
}

#[tokio::test]
async fn hardening_02_absurd_cache_config_does_not_panic() {
    let cache = TokenCache::new({
        let mut c = CacheConfig::default();
        c.refresh_fraction = f64::NAN;
        c.jitter = f64::INFINITY;
        c.refresh_skew = Duration::MAX;
        c.expiry_margin = Duration::MAX;
        c
    });
    let source = |_cur: Option<TokenSet>| async {
        let mut t = TokenSet::new(AccessToken::new("t"), TokenType::Bearer, SystemTime::now());
        t.expires_at = Some(SystemTime::now() + Duration::from_secs(3600));
        Ok(t)
    };
    let h = cache.handle(&TokenKey::new("https://as.example", "c"), move || {
        Arc::new(source) as Arc<dyn TokenSource>
    });
    guard(h.get()).await.unwrap();
    guard(h.get()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 03: a dead refresh token answered without an OAuth body ends.

async fn dead_token_answered_with(reply: Reply, status: u16) {
    let s = server_without_expires_in().await;
    s.route("/token", reply);
    let store = Arc::new(FlakyStore::default());
    let agent = Agent::builder()
        .issuer(s.origin())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .token_store(store.clone())
        .build()
        .await
        .expect("agent");
    agent
        .adopt_grant(grant_with_refresh_token("rt-dead-0123456789"))
        .await
        .unwrap();
    for round in 0..3 {
        let e = guard(agent.access_token(None)).await.unwrap_err();
        match &e {
            // The first answer is reported with its status; later calls know the grant is gone.
            Error::ReauthorizationRequired(m) if round == 0 => {
                assert!(m.contains(&format!("HTTP {status}")), "{m}")
            }
            Error::ReauthorizationRequired(_) => {}
            other => panic!("round {round}: {other:?}"),
        }
        assert!(!e.to_string().contains("rt-dead"), "{e}");
    }
    assert_eq!(
        s.hits_for("/token"),
        1,
        "the dead refresh token was sent again"
    );
    let key = store.only_key();
    assert!(
        store.stored_rt(&key).await.is_none(),
        "the dead grant is removed"
    );
}

#[tokio::test]
async fn hardening_03_bodyless_400_ends_the_refresh_token() {
    dead_token_answered_with(Reply::status(400), 400).await;
}

#[tokio::test]
async fn hardening_03_html_401_ends_the_refresh_token() {
    dead_token_answered_with(
        Reply::status(401)
            .header("content-type", "text/html")
            .body("<html>session expired</html>"),
        401,
    )
    .await;
}

#[tokio::test]
async fn hardening_03_rate_limited_refresh_keeps_the_refresh_token() {
    let s = server_without_expires_in().await;
    s.route("/token", Reply::status(429));
    let agent = Agent::builder()
        .issuer(s.origin())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .build()
        .await
        .expect("agent");
    agent
        .adopt_grant(grant_with_refresh_token("rt-alive-0123456789"))
        .await
        .unwrap();
    let e = guard(agent.access_token(None)).await.unwrap_err();
    assert!(!matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    let hits = s.hits_for("/token");
    // Not dead: the next call may try again.
    let _ = guard(agent.force_refresh(None)).await.unwrap_err();
    assert!(s.hits_for("/token") > hits);
}

// ---------------------------------------------------------------------------------------------
// 04: delegate().lifetime(Duration::MAX).

#[tokio::test]
async fn hardening_04_delegated_lifetime_duration_max_does_not_panic() {
    let server = TestServer::start().await;
    let parent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read write")
        .resource(server.resource_url())
        .build()
        .await
        .expect("parent agent");
    let child = guard(
        parent
            .delegate()
            .scope("read")
            .lifetime(Duration::MAX)
            .spawn(),
    )
    .await
    .expect("a lifetime too long to add caps nothing, and does not panic");
    let token = guard(child.token()).await.unwrap();
    let parent_token = guard(parent.access_token(Some(&server.resource_url())))
        .await
        .unwrap();
    // Still capped by the parent's token.
    assert!(token.expires_at.unwrap() <= parent_token.token().expires_at.unwrap());
}

// ---------------------------------------------------------------------------------------------
// 18: dropping a rejected token and forcing a refresh.

#[tokio::test]
async fn hardening_18_agent_invalidates_and_force_refreshes_without_rebuilding_keys() {
    let server = TestServer::start().await;
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
        .resource(server.resource_url())
        .build()
        .await
        .expect("agent");
    let resource = server.resource_url();
    let t1 = guard(agent.access_token(Some(&resource)))
        .await
        .unwrap()
        .token()
        .clone();
    let entries = agent.cache().len();

    // A rejected token is dropped; the next call obtains a new one.
    assert!(agent.invalidate_token(Some(&resource)).unwrap());
    let t2 = guard(agent.access_token(Some(&resource)))
        .await
        .unwrap()
        .token()
        .clone();
    assert_ne!(t2.access_token.secret(), t1.access_token.secret());

    // Unknown resources (or a wrong spelling) create nothing and drop nothing.
    assert!(!agent
        .invalidate_token(Some("https://elsewhere.example/api"))
        .unwrap());
    assert!(!agent.invalidate_token(None).unwrap());
    assert_eq!(
        agent.cache().len(),
        entries,
        "no placeholder entry was created"
    );
    let unknown = TokenKey::new(server.issuer(), "agent").with_resource("https://nope.example");
    assert!(agent.cache().get(&unknown).is_none());
    assert_eq!(agent.cache().len(), entries);
    assert!(agent.invalidate_token(Some("not a url")).is_err());

    // A forced refresh replaces a still-fresh token.
    let t3 = guard(agent.force_refresh(Some(&resource)))
        .await
        .unwrap()
        .token()
        .clone();
    assert_ne!(t3.access_token.secret(), t2.access_token.secret());
    let t4 = guard(agent.access_token(Some(&resource))).await.unwrap();
    assert_eq!(t4.token().access_token.secret(), t3.access_token.secret());
    assert_eq!(server.stats().grants.client_credentials, 3);
}
