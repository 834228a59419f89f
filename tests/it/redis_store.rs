//! `RedisStore` against a real `redis-server` (`support::redis`): the store conformance suite,
//! its keys, untrusted stored bytes, and outages (typed errors while Redis is away, cached
//! access tokens still served, recovery once it is back).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::support::prelude::{
    conformance, AccessToken, Agent, ClientAuth, DpopMode, Error, RedisStore, RefreshToken,
    SealKey, StoredGrant, TestServer, TokenSet, TokenStore, TokenType,
};
use crate::support::redis::RedisServer;

fn unique_prefix() -> String {
    format!("t{:016x}", rand::random::<u64>())
}

/// One key for every store of these tests, as replicas share one.
fn seal_key() -> SealKey {
    static KEY: std::sync::OnceLock<SealKey> = std::sync::OnceLock::new();
    KEY.get_or_init(SealKey::generate).clone()
}

async fn store_at(server: &RedisServer, prefix: &str) -> RedisStore {
    RedisStore::builder(server.url())
        .prefix(prefix)
        .seal_key(seal_key())
        .response_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connect")
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_passes_the_conformance_suite() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // One store per check, each under its own prefix (a fresh keyspace).
    let mut stores = Vec::new();
    for _ in 0..16 {
        stores.push(Arc::new(store_at(&server, &unique_prefix()).await));
    }
    let next = std::sync::Mutex::new(stores);
    conformance::run_all(
        || next.lock().unwrap().pop().expect("enough stores"),
        conformance::LeaseKind::Timed,
    )
    .await;
}

#[tokio::test]
async fn redis_store_keys_live_under_the_prefix_in_one_hash_slot() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = store_at(&server, "fleet-a").await;
    let _ = s
        .store("grant-1", &conformance::sample(conformance::RT), None)
        .await
        .unwrap();
    assert!(s.store_record("grant-1", Some(b"reg")).await.unwrap());
    let lock = s.lock("grant-1", Duration::from_secs(5)).await.unwrap();
    let mut conn = raw(&server).await;
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    keys.sort();
    assert_eq!(keys.len(), 3, "{keys:?}");
    let tag = |k: &str| k[k.find('{').unwrap()..=k.find('}').unwrap()].to_owned();
    for (k, what) in keys.iter().zip(["grant", "lock", "record"]) {
        assert!(k.starts_with("fleet-a:{"), "{k}");
        assert!(k.ends_with(&format!("}}:{what}")), "{k}");
        assert_eq!(tag(k), tag(&keys[0]), "one hash tag per grant");
    }
    // Nothing secret in a key name.
    assert!(keys.iter().all(|k| !k.contains("grant-1")));
    drop(lock);
    // Another prefix is another keyspace.
    let other = store_at(&server, "fleet-b").await;
    assert!(other.load("grant-1").await.unwrap().is_none());
    // Braces would break the hash tag: refused.
    let e = RedisStore::builder(server.url())
        .prefix("a{b}")
        .store_unsealed()
        .connect()
        .await
        .expect_err("braces in the prefix");
    assert!(matches!(e, Error::Config(_)), "{e:?}");
}

#[tokio::test]
async fn redis_store_corrupt_stored_values_are_typed_errors_quoting_nothing() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = store_at(&server, "corrupt").await;
    let _ = s
        .store("k", &conformance::sample(conformance::RT), None)
        .await
        .unwrap();
    let mut conn = raw(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("corrupt:*:grant")
        .query_async(&mut conn)
        .await
        .unwrap();
    let key = &keys[0];
    for bad in [
        format!("{{\"refresh_token\":\"{}\"", conformance::RT),
        "not json".to_owned(),
        String::new(),
    ] {
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg("d")
            .arg(&bad)
            .query_async(&mut conn)
            .await
            .unwrap();
        let e = s.load("k").await.expect_err("corrupt value");
        let shown = format!("{e} {e:?}");
        assert!(matches!(e, Error::Store(_)), "{shown}");
        assert!(!shown.contains(conformance::RT), "{shown}");
    }
    // A value written under another key's name (tampering) is refused too.
    let _ = s.store("other", &StoredGrant::new(None, None), None).await;
    let theirs: Vec<u8> = redis::cmd("HGET")
        .arg(
            redis::cmd("KEYS")
                .arg("corrupt:*:grant")
                .query_async::<Vec<String>>(&mut conn)
                .await
                .unwrap()
                .into_iter()
                .find(|k| k != key)
                .unwrap(),
        )
        .arg("d")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(key)
        .arg("d")
        .arg(theirs)
        .query_async(&mut conn)
        .await
        .unwrap();
    let e = s.load("k").await.expect_err("another key's value");
    assert!(e.to_string().contains("another key"), "{e}");
    // A bad version is refused.
    let _: () = redis::cmd("HSET")
        .arg(key)
        .arg("v")
        .arg("x")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(matches!(s.load("k").await, Err(Error::Store(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_down_gives_typed_errors_and_reconnects() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let s = store_at(&server, "outage").await;
    let _ = s
        .store("k", &conformance::sample("rt-1"), None)
        .await
        .unwrap();
    // Stopped: every call fails fast with a typed error.
    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let e = s.load("k").await.expect_err("Redis is down");
        assert!(matches!(e, Error::Store(_)), "{e:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let e = s
            .lock("k", Duration::from_secs(1))
            .await
            .expect_err("no lock while down");
        assert!(matches!(e, Error::Store(_)), "{e:?}");
    }
    // Frozen (a hang, not a refusal): the response timeout bounds each call.
    server.restart();
    let _ = wait_until_up(&s).await;
    let _ = s
        .store("k", &conformance::sample("rt-2"), None)
        .await
        .unwrap();
    server.pause();
    let started = Instant::now();
    let e = s.load("k").await.expect_err("Redis hangs");
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    server.resume();
    let v = wait_until_up(&s).await.expect("data kept across the pause");
    assert_eq!(v.value.refresh_token.unwrap().secret(), "rt-2");
}

/// Load `k` until the store answers again (the connection manager reconnects on its own).
async fn wait_until_up(s: &RedisStore) -> Option<crate::support::prelude::Versioned<StoredGrant>> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match s.load("k").await {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("Redis did not come back: {e}"),
        }
    }
}

/// An agent on a `RedisStore` keeps serving the access token it has while Redis is away;
/// a refresh needs the lock and fails with a typed error, sending nothing; once Redis is back
/// the next refresh rotates the stored refresh token without reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_agent_serves_cached_tokens_while_redis_is_down() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let auth = TestServer::start().await;
    let store = Arc::new(store_at(&server, "agent").await);
    let agent = Agent::builder()
        .issuer(auth.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .token_store(store.clone())
        .dpop_mode(DpopMode::Off)
        .build()
        .await
        .unwrap();
    let rt = auth.issue_refresh_token("agent", "read offline_access");
    let now = SystemTime::now();
    let mut seed = TokenSet::new(
        AccessToken::new("expired"),
        TokenType::Bearer,
        now - Duration::from_secs(120),
    );
    seed.expires_at = Some(now - Duration::from_secs(60));
    seed.refresh_token = Some(RefreshToken::new(rt));
    agent.adopt_grant(seed).await.unwrap();
    let first = agent.access_token(None).await.unwrap().token().clone();
    let refreshes = auth.stats().grants.refresh_token;

    server.pause();
    for _ in 0..20 {
        let t = agent.access_token(None).await.expect("served from memory");
        assert!(t.token().access_token.ct_eq(&first.access_token));
    }
    let e = agent
        .force_refresh(None)
        .await
        .expect_err("no refresh without the store's lock");
    assert!(matches!(e, Error::Store(_)), "{e:?}");
    assert_eq!(auth.stats().grants.refresh_token, refreshes, "nothing sent");
    // Still served after the failed refresh.
    let t = agent.access_token(None).await.expect("served from memory");
    assert!(t.token().access_token.ct_eq(&first.access_token));

    server.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    let t = loop {
        match agent.force_refresh(None).await {
            Ok(t) => break t.token().clone(),
            Err(Error::Store(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no recovery: {e:?}"),
        }
    };
    assert!(!t.access_token.ct_eq(&first.access_token));
    assert_eq!(auth.stats().grants.refresh_token, refreshes + 1);
    assert_eq!(
        auth.stats().revoked_grants,
        0,
        "no refresh token was reused"
    );
}

#[tokio::test]
async fn redis_store_seals_tokens_at_rest_unless_told_not_to() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    // No choice made: refused, nothing connects.
    let e = RedisStore::builder(server.url())
        .connect()
        .await
        .expect_err("sealing must be chosen");
    assert!(e.to_string().contains("store_unsealed"), "{e}");

    let s = store_at(&server, "sealed").await;
    let _ = s
        .store("k", &conformance::sample(conformance::RT), None)
        .await
        .unwrap();
    assert!(s
        .store_record("r", Some(b"client-secret-xyz"))
        .await
        .unwrap());
    let mut conn = raw(&server).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("sealed:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut raw_bytes = Vec::new();
    for k in &keys {
        let v: redis::Value = redis::cmd("DUMP")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        raw_bytes.push(format!("{v:?}"));
    }
    let all = raw_bytes.join(" ");
    for secret in [conformance::RT, conformance::AT, "client-secret-xyz"] {
        assert!(!all.contains(secret), "{secret} stored in clear");
    }
    let got = s.load("k").await.unwrap().unwrap();
    assert_eq!(got.value.refresh_token.unwrap().secret(), conformance::RT);
    assert_eq!(
        s.load_record("r").await.unwrap().as_deref(),
        Some(&b"client-secret-xyz"[..])
    );
    // A replica with another key gets a typed error naming the key ids, not the token.
    let other = RedisStore::builder(server.url())
        .prefix("sealed")
        .seal_key(SealKey::generate())
        .connect()
        .await
        .unwrap();
    let e = other.load("k").await.expect_err("another key");
    assert!(e.to_string().contains("another key"), "{e}");
    assert!(!format!("{e:?}").contains(conformance::RT));
    // Opting out stores in clear, and cannot read sealed values.
    let clear = RedisStore::builder(server.url())
        .prefix("sealed")
        .store_unsealed()
        .connect()
        .await
        .unwrap();
    assert!(matches!(clear.load("k").await, Err(Error::Store(_))));
    let _ = clear
        .store("plain", &conformance::sample(conformance::RT), None)
        .await
        .unwrap();
    // A sealed store reads values written before sealing was turned on.
    let got = s.load("plain").await.unwrap().unwrap();
    assert_eq!(got.value.refresh_token.unwrap().secret(), conformance::RT);
}
