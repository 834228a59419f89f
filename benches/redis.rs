//! The store's side of one refresh through `RedisStore` on loopback: take the grant's lease
//! (`SET NX PX`), read it (`HMGET`), compare-and-swap the rotated grant (a script), release
//! the lease (a compare-and-delete script, sent in the background when the guard drops).
//!
//! - `redis/refresh_round_trips`: lock + load + CAS + release of one refresh, sealed;
//! - `redis/refresh_round_trips_unsealed`: the same without sealing (the AEAD's cost);
//! - `redis/ping`: one round trip to the same server, the floor (the refresh makes four).
//!
//! Starts its own `redis-server` on a free loopback port with persistence off, and stops it
//! at the end; prints why and measures nothing when `redis-server` is not installed.
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_oauth::store::{RedisStore, SealKey, StoredGrant, TokenStore};
use agent_oauth::RefreshToken;
use criterion::{criterion_group, criterion_main, Criterion};

struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> Option<Server> {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server(child, port);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

async fn store(url: &str, sealed: bool) -> Arc<RedisStore> {
    let b = RedisStore::builder(url).prefix("bench");
    let b = if sealed {
        b.seal_key(SealKey::generate())
    } else {
        b.store_unsealed()
    };
    Arc::new(b.connect().await.unwrap())
}

/// One refresh's store traffic: lease, read, compare-and-swap, release.
async fn refresh_once(s: &RedisStore, key: &str, n: u64) {
    let lock = s.lock(key, Duration::from_secs(10)).await.unwrap();
    let current = s.load(key).await.unwrap().map(|v| v.version);
    let next = StoredGrant::new(Some(RefreshToken::new(format!("rt-{n:08}-rotated"))), None);
    let o = s.store(key, &next, current).await.unwrap();
    assert!(!o.is_conflict());
    drop(lock);
}

fn bench(c: &mut Criterion) {
    let Some(server) = start() else {
        eprintln!("redis bench: `redis-server` is not installed; nothing measured");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", server.1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("redis");
    for (name, sealed) in [
        ("refresh_round_trips", true),
        ("refresh_round_trips_unsealed", false),
    ] {
        let s = rt.block_on(store(&url, sealed));
        let mut n = 0u64;
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                n += 1;
                // A key per refresh: the previous one's release (sent in the background when
                // its guard dropped) never holds this one up.
                let (s, key) = (s.clone(), format!("grant-{name}-{n}"));
                async move { refresh_once(&s, &key, n).await }
            })
        });
    }
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = rt
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    g.bench_function("ping", |b| {
        b.to_async(&rt).iter(|| {
            let mut conn = conn.clone();
            async move {
                let _: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
            }
        })
    });
    g.finish();
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
