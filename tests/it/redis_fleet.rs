//! A fleet of OS processes sharing one rotating grant through one `RedisStore`, against
//! oidc-provider, which revokes the whole grant when a rotated refresh token is presented
//! again, and counts every refresh token presented (`GET /test/refresh-stats`).
//!
//! The parent tests re-execute this test binary with `AGENT_OAUTH_FLEET_CHILD` set, selecting
//! only [`redis_fleet_child`]; run normally that test does nothing. `AGENT_OAUTH_FLEET_SECS`
//! sets how long the fleet runs (default 30 s).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{json, Value};
use url::Url;

use crate::support::prelude::{
    AccessToken, CacheConfig, ClientAuth, Error, OAuthClient, RedisStore, RefreshToken,
    RefreshingSource, SealKey, TokenCache, TokenKey, TokenParams, TokenSet, TokenSource,
    TokenStore, TokenType,
};
use crate::support::redis::RedisServer;
use crate::support::servers::{Kind, Knobs, Server, APP, REDIRECT};
use crate::tokens::common::client_at;

const CHILD_ENV: &str = "AGENT_OAUTH_FLEET_CHILD";
const CHILD_TEST: &str = "redis_fleet::redis_fleet_child";
const KEY: &str = "fleet-grant";

fn fleet_secs() -> u64 {
    std::env::var("AGENT_OAUTH_FLEET_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// The fleet's shared pieces: oidc-provider with its resource, Redis, and one grant seeded
/// into the store (refresh token only: its access token already expired).
struct Fleet {
    server: Server,
    redis: RedisServer,
    client: OAuthClient,
    prefix: String,
    seal: SealKey,
}

impl Fleet {
    async fn start() -> Option<Fleet> {
        let redis = RedisServer::start()?;
        let server = Server::start(Kind::OidcProvider, Knobs::default()).await?;
        let client = client_at(server.issuer(), APP.id, APP.auth());
        let pending = client
            .authorization_url(
                REDIRECT,
                &TokenParams::new()
                    .scope("read write")
                    .resource(server.resource()),
            )
            .await
            .unwrap();
        let callback: Url = server.authorize(&pending).await;
        let tokens = client.exchange_code(&pending, &callback).await.unwrap();
        let fleet = Fleet {
            server,
            redis,
            client,
            prefix: format!("fleet{:08x}", rand::random::<u32>()),
            seal: SealKey::generate(),
        };
        let rt = tokens.refresh_token.expect("a refresh token");
        let now = SystemTime::now();
        let mut seed = TokenSet::new(
            AccessToken::new("expired"),
            TokenType::Bearer,
            now - Duration::from_secs(120),
        );
        seed.expires_at = Some(now - Duration::from_secs(60));
        seed.refresh_token = Some(RefreshToken::new(rt.secret()));
        fleet
            .source(Duration::from_secs(10))
            .await
            .seed(&seed)
            .await
            .unwrap();
        Some(fleet)
    }

    async fn store(&self, lease: Duration) -> Arc<RedisStore> {
        Arc::new(
            RedisStore::builder(self.redis.url())
                .prefix(&self.prefix)
                .seal_key(self.seal.clone())
                .lease(lease)
                .response_timeout(Duration::from_millis(500))
                .connect()
                .await
                .unwrap(),
        )
    }

    async fn source(&self, lease: Duration) -> RefreshingSource {
        let store: Arc<dyn TokenStore> = self.store(lease).await;
        RefreshingSource::new(self.client.clone(), store, KEY, self.params())
    }

    fn params(&self) -> TokenParams {
        TokenParams::new().resource(self.server.resource())
    }

    fn spec(&self, mode: &str, tasks: usize, secs: u64, lease: Duration) -> String {
        json!({
            "mode": mode,
            "issuer": self.server.issuer(),
            "secret": APP.secret.unwrap_or_default(),
            "resource": self.server.resource(),
            "redis": self.redis.url(),
            "prefix": self.prefix,
            "seal": self.seal.to_base64().as_str(),
            "tasks": tasks,
            "secs": secs,
            "lease_ms": lease.as_millis() as u64,
        })
        .to_string()
    }

    fn spawn(&self, spec: &str) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The server's refresh-token counts.
    async fn stats(&self) -> Value {
        self.server
            .oidc_provider()
            .expect("oidc-provider")
            .refresh_stats()
            .await
    }

    /// No refresh token was presented twice, the grant was never revoked, and it is alive:
    /// the store's refresh token still refreshes.
    async fn assert_grant_alive_without_reuse(&self) {
        let stats = self.stats().await;
        assert_eq!(
            stats["reused"], 0,
            "a refresh token was presented twice: {stats}"
        );
        assert_eq!(stats["revoked_grants"], 0, "{stats}");
        let stored = self
            .store(Duration::from_secs(10))
            .await
            .load(KEY)
            .await
            .unwrap()
            .expect("the grant is stored");
        let rt = stored.value.refresh_token.expect("a refresh token");
        let t = self.client.refresh(&rt, &self.params()).await.unwrap();
        assert!(t.refresh_token.is_some());
        println!("server: {stats}, store version {}", stored.version);
    }
}

/// What a child reports on its `FLEET` line.
fn report(out: &str) -> Value {
    let line = out
        .lines()
        .find_map(|l| l.find("FLEET {").map(|i| &l[i + "FLEET ".len()..]))
        .unwrap_or_else(|| panic!("no FLEET line:\n{out}"));
    serde_json::from_str(line).unwrap()
}

/// Wait for `child` to say `RUNNING`; its standard output (all of it) comes from the handle.
async fn running(mut child: Child) -> (Child, tokio::task::JoinHandle<String>) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let lines = tokio::task::spawn_blocking(move || {
        let mut tx = Some(tx);
        let mut all = String::new();
        for line in BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
        {
            if line.contains("RUNNING") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    // A child that ends without running drops the sender: its output tells why.
    let _ = tokio::time::timeout(Duration::from_secs(60), rx).await;
    (child, lines)
}

async fn finish(child: Child) -> (Option<i32>, String) {
    let o = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let out = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.code(), out)
}

#[derive(Default)]
struct Counts {
    ok: u64,
    refreshed: u64,
    validated: u64,
    store_errors: u64,
    refreshed_after_store_error: u64,
    failures: Vec<String>,
    seen: std::collections::HashSet<String>,
}

/// Child mode. `run`: `tasks` tasks share one cache handle over a `RefreshingSource` on the
/// shared `RedisStore` for `secs`, each reading the token (a cache hit) and forcing a refresh
/// every fourth round; every distinct token is checked at the resource. `hold`: take the
/// grant's lock, say `HOLDING`, and wait to be killed, as a replica that dies mid-refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fleet_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let spec: Value = serde_json::from_str(&spec).unwrap();
    let s = |k: &str| spec[k].as_str().unwrap().to_owned();
    let n = |k: &str| spec[k].as_u64().unwrap();
    let lease = Duration::from_millis(n("lease_ms"));
    let store = Arc::new(
        RedisStore::builder(s("redis"))
            .prefix(s("prefix"))
            .seal_key(SealKey::from_base64(&s("seal")).unwrap())
            .lease(lease)
            .response_timeout(Duration::from_millis(500))
            .connect()
            .await
            .unwrap(),
    );
    if s("mode") == "hold" {
        let lock = store.lock(KEY, lease).await.unwrap();
        let _ = store.load(KEY).await.unwrap();
        println!("HOLDING");
        tokio::time::sleep(Duration::from_secs(600)).await;
        drop(lock);
        return;
    }
    let client = client_at(&s("issuer"), APP.id, ClientAuth::client_secret(s("secret")));
    client.server().metadata().await.unwrap();
    let resource = s("resource");
    let source = RefreshingSource::new(
        client,
        store,
        KEY,
        TokenParams::new().resource(resource.clone()),
    );
    let cache = TokenCache::new(CacheConfig::default());
    let handle = cache.handle(
        &TokenKey::new(&s("issuer"), APP.id).with_resource(resource.clone()),
        move || Arc::new(source) as Arc<dyn TokenSource>,
    );
    // Ready: the parent times its outage from here, not from the spawn.
    handle.get().await.unwrap();
    println!("RUNNING");
    let http = reqwest::Client::new();
    let counts = Arc::new(Mutex::new(Counts::default()));
    let deadline = Instant::now() + Duration::from_secs(n("secs"));
    let tasks: Vec<_> = (0..n("tasks"))
        .map(|t| {
            let (handle, http, counts, resource) = (
                handle.clone(),
                http.clone(),
                counts.clone(),
                resource.clone(),
            );
            tokio::spawn(async move {
                let mut round = 0u64;
                let mut saw_store_error = false;
                while Instant::now() < deadline {
                    round += 1;
                    let forced = (round + t).is_multiple_of(4);
                    let got = if forced {
                        handle.refresh().await
                    } else {
                        handle.get().await
                    };
                    match got {
                        Ok(tok) => {
                            let at = tok.token().access_token.secret().to_owned();
                            let fresh = counts.lock().unwrap().seen.insert(at.clone());
                            if fresh {
                                let status = http
                                    .get(&resource)
                                    .bearer_auth(&at)
                                    .send()
                                    .await
                                    .map(|r| r.status().as_u16());
                                let mut c = counts.lock().unwrap();
                                c.validated += 1;
                                if status.as_ref().ok() != Some(&200) {
                                    c.failures.push(format!("resource said {status:?}"));
                                }
                            }
                            let mut c = counts.lock().unwrap();
                            c.ok += 1;
                            if forced {
                                c.refreshed += 1;
                                if saw_store_error {
                                    c.refreshed_after_store_error += 1;
                                }
                            }
                        }
                        Err(Error::Store(_)) if forced => {
                            saw_store_error = true;
                            counts.lock().unwrap().store_errors += 1;
                        }
                        Err(e) => counts.lock().unwrap().failures.push(format!("{e}")),
                    }
                    let pause = 5 + u64::from(rand::random::<u8>() % 25);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let c = counts.lock().unwrap();
    println!(
        "FLEET {}",
        json!({
            "pid": std::process::id(),
            "ok": c.ok,
            "refreshed": c.refreshed,
            "validated": c.validated,
            "distinct": c.seen.len(),
            "store_errors": c.store_errors,
            "refreshed_after_store_error": c.refreshed_after_store_error,
            "failures": c.failures.iter().take(5).collect::<Vec<_>>(),
            "failure_count": c.failures.len(),
        })
    );
}

/// 4 processes × 16 tasks force refreshes of one rotating grant: every process gets valid
/// tokens throughout, no refresh token is presented twice (the server's count), and the grant
/// is alive at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fleet_four_processes_share_one_rotating_grant() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    let spec = fleet.spec("run", 16, fleet_secs(), Duration::from_secs(10));
    let children: Vec<_> = (0..4).map(|_| fleet.spawn(&spec)).collect();
    let mut refreshed = 0;
    for child in children {
        let (code, out) = finish(child).await;
        assert_eq!(code, Some(0), "child failed:\n{out}");
        let r = report(&out);
        println!("{r}");
        assert_eq!(r["failure_count"], 0, "{r}");
        assert_eq!(r["store_errors"], 0, "{r}");
        assert!(r["ok"].as_u64().unwrap() > 0, "{r}");
        assert!(r["validated"].as_u64().unwrap() > 0, "{r}");
        refreshed += r["refreshed"].as_u64().unwrap();
    }
    let stats = fleet.stats().await;
    assert!(stats["presentations"].as_u64().unwrap() > 1, "{stats}");
    assert!(refreshed > 0);
    fleet.assert_grant_alive_without_reuse().await;
}

/// `kill -9` of the process holding the grant's lease in the middle of a refresh: the lease
/// runs out and another process completes the next refresh within lease + 1 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fleet_kill_9_of_the_lease_holder_is_taken_over_within_the_lease() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    // Renewed every second: a live holder keeps it even on a loaded machine.
    let lease = Duration::from_secs(3);
    let mut holder = fleet.spawn(&fleet.spec("hold", 1, 0, lease));
    let stdout = holder.stdout.take().unwrap();
    let holding = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(std::result::Result::ok)
            .any(|l| l.contains("HOLDING"))
    });
    assert!(holding.await.unwrap(), "the holder took the lock");
    // Alive, it keeps its lease renewed: nobody else gets the lock.
    let store = fleet.store(lease).await;
    let waited = tokio::time::timeout(lease * 2, store.lock(KEY, lease)).await;
    assert!(waited.is_err(), "the live holder's lease was taken");

    let source = fleet.source(lease).await;
    holder.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    let _ = holder.wait();
    let t = source.refresh_now(None).await.expect("the next refresh");
    let took = killed.elapsed();
    println!("next refresh {took:?} after kill -9 (lease {lease:?})");
    assert!(
        took <= lease + Duration::from_secs(1),
        "taken over after {took:?}"
    );
    assert!(t.refresh_token.is_some());
    fleet.assert_grant_alive_without_reuse().await;
}

/// Redis stopped (frozen) for 10 s while 2 processes × 16 tasks run: access tokens keep being
/// served from memory, refreshes fail with a typed error while it is away, and refreshes work
/// again after, without any refresh token presented twice.
///
/// The one process whose refresh the outage catches between rotation and write keeps the
/// rotated tokens and the store's lock in memory, and goes on refreshing from them (no other
/// process can present them): it sees no store error. Every other process must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fleet_outage_serves_cached_tokens_and_recovers_without_reuse() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let Some(fleet) = Fleet::start().await else {
        return;
    };
    // A lease longer than the outage: a refresh caught by it keeps its lock until the store
    // takes its result.
    let outage = Duration::from_secs(10);
    let spec = fleet.spec("run", 16, 18, Duration::from_secs(15));
    // On a loaded machine a child can take seconds to start: the outage begins once every
    // child runs, so each one sees it.
    let mut children = Vec::new();
    for _ in 0..2 {
        children.push(running(fleet.spawn(&spec)).await);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    fleet.redis.pause();
    tokio::time::sleep(outage).await;
    fleet.redis.resume();
    let mut without_store_errors = 0;
    for (child, stdout) in children {
        let (code, rest) = finish(child).await;
        let out = format!("{}\n{rest}", stdout.await.unwrap());
        assert_eq!(code, Some(0), "child failed:\n{out}");
        let r = report(&out);
        println!("{r}");
        assert_eq!(r["failure_count"], 0, "reads failed during the outage: {r}");
        assert!(r["refreshed"].as_u64().unwrap() > 0, "{r}");
        if r["store_errors"].as_u64().unwrap() == 0 {
            // Refreshed from the tokens it held in memory throughout the outage.
            without_store_errors += 1;
        } else {
            assert!(
                r["refreshed_after_store_error"].as_u64().unwrap() > 0,
                "no recovery: {r}"
            );
        }
    }
    // At most one process can hold the store's lock when the outage begins.
    assert!(
        without_store_errors <= 1,
        "{without_store_errors} processes refreshed without the store"
    );
    fleet.assert_grant_alive_without_reuse().await;
}
