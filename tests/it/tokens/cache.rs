//! The token cache in front of a real token endpoint: one request per key however many callers,
//! and refresh-ahead that nobody waits for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::support::prelude::TestServer;
use crate::support::prelude::{
    AccessToken, CacheConfig, MemoryStore, OAuthClient, RefreshToken, RefreshingSource, TokenCache,
    TokenKey, TokenParams, TokenSet, TokenSource, TokenStore, TokenType,
};

use super::common::{agent, eventually, grant_with_refresh_token, secret_of};

fn client_credentials_source(client: OAuthClient, params: TokenParams) -> Arc<dyn TokenSource> {
    Arc::new(move |_current: Option<TokenSet>| {
        let (client, params) = (client.clone(), params.clone());
        async move { client.client_credentials(&params).await }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stampede_10000_callers_one_token_request() {
    let server = TestServer::start().await;
    // Slow responses, so the callers really pile up on the cold key.
    server.set_latency(Duration::from_millis(200));
    let cache = TokenCache::default();
    let params = TokenParams::new()
        .scope("read")
        .resource(server.resource_url());
    let key = TokenKey::new(server.issuer(), "agent")
        .with_scope("read".into())
        .with_resource(server.resource_url());
    let client = agent(&server);
    let before = server.stats().token_requests;
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let cache = cache.clone();
            let key = key.clone();
            let (client, params) = (client.clone(), params.clone());
            tokio::spawn(async move {
                let h = cache.handle(&key, || client_credentials_source(client, params));
                h.get().await.map(|t| secret_of(t.token()))
            })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.unwrap().unwrap());
    }
    let delta = server.stats().token_requests - before;
    println!("10000 callers on a cold key: {delta} token request(s)");
    assert_eq!(delta, 1);
    assert_eq!(tokens.len(), 1, "everybody got the same token");
    assert_eq!(cache.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_refresh_ahead_one_refresh_while_callers_keep_the_old_token() {
    // A token only enters its refresh window after half its lifetime at the earliest (the lead
    // is max(30 s, 20 %) capped at half the lifetime), so a fresh server token is given local
    // times that put it inside the window: lifetime 120 s, 20 s left, lead 30 s, expiry margin
    // 5 s. The server still considers it valid.
    let server = TestServer::start().await;
    let store = Arc::new(MemoryStore::new());
    let rt = server.issue_refresh_token("agent", "read offline_access");
    let source = RefreshingSource::new(agent(&server), store.clone(), "grant", TokenParams::new());
    source.seed(&grant_with_refresh_token(&rt)).await.unwrap();
    let cache = TokenCache::new(CacheConfig::default());
    let handle = cache.handle(&TokenKey::new(server.issuer(), "agent"), {
        let source = source.clone();
        move || Arc::new(source) as Arc<dyn TokenSource>
    });
    let mut old = handle.get().await.unwrap().token().clone();
    let now = SystemTime::now();
    old.issued_at = now - Duration::from_secs(100);
    old.expires_at = Some(now + Duration::from_secs(20));
    handle.insert(old.clone());
    let old_secret = secret_of(&old);

    // The refresh will take 2 s to answer.
    server.set_latency(Duration::from_secs(2));
    let before = server.stats();
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let h = handle.clone();
            tokio::spawn(async move { h.get().await.map(|t| secret_of(t.token())) })
        })
        .collect();
    for c in callers {
        assert_eq!(c.await.unwrap().unwrap(), old_secret);
    }
    // Every caller has returned with the old token while the refresh is still unanswered
    // (the server holds it for 2 s): nobody waited for it.
    let mid = server.stats();
    assert_eq!(
        mid.grants.refresh_token, before.grants.refresh_token,
        "the callers returned before the refresh was answered"
    );
    assert!(mid.token_requests - before.token_requests <= 1);
    assert!(
        eventually(Duration::from_secs(10), || handle
            .peek()
            .is_some_and(|t| secret_of(t.token()) != old_secret))
        .await,
        "the refreshed token replaces the old one"
    );
    let after = server.stats();
    println!(
        "refresh-ahead: {} refresh request(s) for 100 callers",
        after.grants.refresh_token - before.grants.refresh_token
    );
    assert_eq!(after.token_requests - before.token_requests, 1);
    assert_eq!(after.grants.refresh_token - before.grants.refresh_token, 1);
    assert_eq!(after.revoked_grants, 0);
    // The store holds the new refresh token.
    let stored = store
        .load("grant")
        .await
        .unwrap()
        .unwrap()
        .value
        .refresh_token;
    assert!(!stored.unwrap().ct_eq(&RefreshToken::new(rt)), "rotated");
    assert!(handle.peek().unwrap().token().refresh_token.is_none());
}

#[tokio::test]
async fn cache_keys_separate_scope_and_resource() {
    let server = TestServer::start().await;
    let cache = TokenCache::default();
    let client = agent(&server);
    let base = TokenKey::new(server.issuer(), "agent");
    let variants = [
        (
            base.clone().with_scope("read".into()),
            TokenParams::new().scope("read"),
        ),
        (
            base.clone().with_scope("read write".into()),
            TokenParams::new().scope("write read"),
        ),
        (
            base.clone()
                .with_scope("read".into())
                .with_resource(server.resource_url()),
            TokenParams::new()
                .scope("read")
                .resource(server.resource_url()),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        for (key, params) in &variants {
            let h = cache.handle(key, || {
                client_credentials_source(client.clone(), params.clone())
            });
            let t = h.get().await.unwrap();
            let c = super::common::claims(t.token().access_token.secret());
            assert_eq!(
                crate::support::prelude::Scope::parse(c["scope"].as_str().unwrap()),
                *key.scope()
            );
            seen.insert(secret_of(t.token()));
        }
    }
    assert_eq!(seen.len(), 3);
    assert_eq!(server.stats().token_requests, 3, "one request per key");
}

#[tokio::test]
async fn cache_invalidate_hands_the_dropped_token_to_the_source() {
    // `TokenHandle::invalidate` promises the source gets the dropped token (so it can use its
    // refresh token).
    let received: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let cache = TokenCache::default();
    let handle = cache.handle(&TokenKey::new("https://as.example", "c"), {
        let (received, calls) = (received.clone(), calls.clone());
        move || {
            Arc::new(move |current: Option<TokenSet>| {
                let (received, calls) = (received.clone(), calls.clone());
                async move {
                    received
                        .lock()
                        .unwrap()
                        .push(current.map(|c| secret_of(&c)));
                    let n = calls.fetch_add(1, Ordering::SeqCst);
                    let now = SystemTime::now();
                    let mut t =
                        TokenSet::new(AccessToken::new(format!("at-{n}")), TokenType::Bearer, now);
                    t.expires_at = Some(now + Duration::from_secs(3600));
                    t.refresh_token = Some(RefreshToken::new(format!("rt-{n}")));
                    Ok(t)
                }
            }) as Arc<dyn TokenSource>
        }
    });
    assert_eq!(secret_of(handle.get().await.unwrap().token()), "at-0");
    handle.invalidate();
    assert!(handle.peek().is_none());
    assert_eq!(secret_of(handle.get().await.unwrap().token()), "at-1");
    assert_eq!(
        *received.lock().unwrap(),
        vec![None, Some("at-0".to_owned())]
    );
}
