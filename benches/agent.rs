//! What an [`Agent`] costs per call, each figure beside the floor it is judged against.
//!
//! | bench | what it measures | floor |
//! |---|---|---|
//! | `agent/access_token_hit` | `Agent::access_token(Some(resource))` on a cached token | `cache/hit_1_thread` |
//! | `agent/request_noop_signer_via_middleware` | a GET through `AgentMiddleware` to a stub answering 200, the DPoP signature a fixed value | `agent/bare_middleware_chain` |
//! | `agent/bare_middleware_chain` | the same GET through the chain without the agent | |
//! | `agent/request_noop_above_bare` | the no-op agent GET minus the bare one, timed back to back in each iteration (`above ...` line) | the bare GETs of the same iterations |
//! | `agent/request_headers_ring` | what the agent adds to that GET with the real ring signer (the GET minus the bare chain, timed in the same sample) | raw signatures of the same key and input, timed in the same samples (`ratio ...` line) |
//! | `cache/hit_2x64`, `cache/hit_1x64` | `TokenHandle::get` hits, 64 tasks per worker, time per hit per worker thread | each other |
//! | `agent/access_token_hit_2x64`, `agent/access_token_hit_1x64` | the same through `Agent::access_token` | each other |
//! | `control/coarse_clock_2x64`, `control/coarse_clock_1x64` | the same reading the coarse clock: whether the machine's two cores are independent | each other |
//! | `stampede/10k_50ms` | 10,000 tasks on one cold key whose token endpoint answers after 50 ms: time per stampede, and each caller's latency above the delay | one caller's cold call on a new agent, run before each stampede (`latency ...` line); each caller's end after its round's first (`spread ...` line); the agent is built on the runtime, and apart, on the thread that spawns the callers (`latency stampede/10k_50ms_built_on_spawner` line) |
//! | `agent/loopback_get` | `Agent::get(url).send()` to an axum server on 127.0.0.1 | `reqwest/loopback_get` + one signature |
//! | `reqwest/loopback_get` | the same GET with a plain `reqwest::Client` | |
//! | `agent/loopback_get_above_reqwest` | the agent's GET minus the plain one, timed back to back in each iteration, the server on the client's thread | one signature (ring, timed in the same samples: `budget ...` line) + 8 µs |
//! | `transport/loopback_get` | the same GET through the agent's `HttpTransport::execute`, no token | `reqwest/loopback_get` |
//! | `nonce/first_calls_50` | 50 concurrent first calls to the test server's resource, which demands a DPoP nonce: time, and requests the resource received | |
//! | `nonce/first_calls_50_own_origin` | the same to a resource on an origin apart from the token endpoint's | |
//! | `scale/child_spawn` | `agent.delegate().scope(..).resource(..).spawn()` against the test server, one child after the other; bytes allocated per child, and kept per child with 1,000 alive | |
//!
//! The public API has no call that only builds a request's `Authorization` and `DPoP`
//! headers, so `agent/request_headers_ring` measures them through the middleware: its figure
//! includes the middleware's own per-request work (`agent/request_noop_signer_via_middleware`
//! minus `agent/bare_middleware_chain` is that work without the signature).
//!
//! Besides criterion's timings, each bench prints one-line figures to standard error that
//! `benches/report.sh` reads: `allocs <bench>: <n> allocs/op, <n> B/op` (allocations of the
//! client side; in-process servers run on threads that are not counted), `latency ...` /
//! `requests ...` lines for the stampede and the nonce, and a `ratio ...` line for the request
//! headers against the raw signatures timed in the same samples.
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/fixtures.rs"]
mod fixtures;

use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_oauth::cache::{CacheConfig, TokenCache, TokenKey, TokenSource};
use agent_oauth::delegation::ChildAgent;
use agent_oauth::jose::{PublicJwk, RingSigner, Signer};
use agent_oauth::testkit::{TestServer, TestServerConfig};
use agent_oauth::transport::RetryPolicy;
use agent_oauth::{Agent, AgentMiddleware, DpopKey, TokenSet, TokenType};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware, Middleware, Next};
use tokio::runtime::Runtime;

/// Per-sample figures of a bench that times a floor in the same samples as itself: each
/// sample's figure and floor per iteration. Criterion takes its 100 samples after the
/// warm-up, so the last 100 entries are the measured samples.
#[derive(Default)]
struct SameSamples {
    per_iter: Vec<(f64, f64)>,
}

impl SameSamples {
    const MEASURED: usize = 100;

    fn push(&mut self, figure: Duration, floor: Duration, iters: u64) {
        let n = iters.max(1) as f64;
        self.per_iter
            .push((figure.as_secs_f64() / n, floor.as_secs_f64() / n));
    }

    fn measured(&self) -> &[(f64, f64)] {
        let v = &self.per_iter;
        &v[v.len().saturating_sub(Self::MEASURED)..]
    }

    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// Median of the measured samples' figures, in µs.
    fn figure_us(&self) -> f64 {
        Self::median(self.measured().iter().map(|p| p.0 * 1e6).collect())
    }

    /// Median of the measured samples' floors, in µs.
    fn floor_us(&self) -> f64 {
        Self::median(self.measured().iter().map(|p| p.1 * 1e6).collect())
    }

    /// Median of the measured samples' figure / floor.
    fn ratio(&self) -> f64 {
        Self::median(self.measured().iter().map(|p| p.0 / p.1).collect())
    }
}

/// Calls counted per allocation figure.
const COUNTED: u64 = 2_000;

/// Tokens from the test server live an hour: no refresh starts while a bench runs.
fn server_config() -> TestServerConfig {
    TestServerConfig::default().with_access_token_ttl(Duration::from_secs(3600))
}

// ------------------------------------------------------------------ access_token hit

fn access_token_hit(c: &mut Criterion) {
    let server_rt = fixtures::server_runtime();
    let server = server_rt.block_on(TestServer::start_with(server_config()));
    let rt = fixtures::runtime(2);
    let resource = server.resource_url();
    let agent = rt
        .block_on(fixtures::builder(&server, &resource).build())
        .unwrap();
    let hit = || async {
        let t = agent.access_token(Some(&resource)).await.unwrap();
        black_box(t.token().access_token.secret().len())
    };
    rt.block_on(hit());

    let mut ran = false;
    c.bench_function("agent/access_token_hit", |b| {
        ran = true;
        b.to_async(&rt).iter(hit)
    });
    if ran {
        rt.block_on(alloc::per_op_async("agent/access_token_hit", COUNTED, hit));
    }
    drop(agent);
    server_rt.block_on(async move { drop(server) });
}

// ------------------------------------------------------------------ the middleware chain

/// The end of the chain: answers `200` at once, without network. When built with a
/// recorder, it keeps the headers of the last request (to check the setup, not in a bench).
struct CannedOk(Option<Arc<Mutex<http::HeaderMap>>>);

#[async_trait::async_trait]
impl Middleware for CannedOk {
    async fn handle(
        &self,
        req: reqwest::Request,
        _extensions: &mut http::Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        if let Some(seen) = &self.0 {
            *seen.lock().unwrap() = req.headers().clone();
        }
        Ok(reqwest::Response::from(http::Response::new("")))
    }
}

const FIXED_SIGNATURE: [u8; 64] = [0x5a; 64];
/// `FIXED_SIGNATURE` in base64url, as it ends a proof.
const FIXED_SIGNATURE_B64: &str =
    "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWg";

/// An ES256 signer whose signature is a fixed 64-byte value once [`fix`](Self::fix)ed: the
/// agent's work without the signature. It signs for real until then, so that the test
/// server's token endpoint, which verifies proofs, issues the token the bench then uses.
#[derive(Debug)]
struct FixedSigner {
    real: RingSigner,
    fixed: AtomicBool,
}

impl FixedSigner {
    fn fix(&self) {
        self.fixed.store(true, Ordering::Relaxed);
    }
}

impl Signer for FixedSigner {
    fn alg(&self) -> &str {
        "ES256"
    }

    fn public_jwk(&self) -> &PublicJwk {
        self.real.public_jwk()
    }

    fn sign(&self, message: &[u8]) -> agent_oauth::Result<Vec<u8>> {
        if self.fixed.load(Ordering::Relaxed) {
            Ok(FIXED_SIGNATURE.to_vec())
        } else {
            self.real.sign(message)
        }
    }
}

/// The resource the stub answers for; never resolved.
const STUB_RESOURCE: &str = "https://api.bench.example/";
const STUB_URL: &str = "https://api.bench.example/v1/items";

fn chain(agent: Option<&Agent>) -> ClientWithMiddleware {
    let mut b = ClientBuilder::new(reqwest::Client::new());
    if let Some(agent) = agent {
        b = b.with(AgentMiddleware::new(agent.clone()));
    }
    b.with(CannedOk(None)).build()
}

/// The headers `agent` puts on a request through the chain.
async fn headers_sent(agent: &Agent) -> http::HeaderMap {
    let seen = Arc::new(Mutex::new(http::HeaderMap::new()));
    let client = ClientBuilder::new(reqwest::Client::new())
        .with(AgentMiddleware::new(agent.clone()))
        .with(CannedOk(Some(seen.clone())))
        .build();
    get_ok(&client).await;
    let headers = seen.lock().unwrap().clone();
    headers
}

async fn get_ok(client: &ClientWithMiddleware) -> reqwest::StatusCode {
    let resp = client.get(STUB_URL).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.status()
}

fn middleware(c: &mut Criterion) {
    let server_rt = fixtures::server_runtime();
    let server = server_rt.block_on(TestServer::start_with(server_config()));
    let rt = fixtures::runtime(2);

    let fixed = Arc::new(FixedSigner {
        real: RingSigner::generate().unwrap(),
        fixed: AtomicBool::new(false),
    });
    let noop_agent = rt
        .block_on(
            fixtures::builder(&server, STUB_RESOURCE)
                .dpop(DpopKey::from_signer(fixed.clone()).unwrap())
                .build(),
        )
        .unwrap();
    let ring_key = DpopKey::generate();
    let ring_agent = rt
        .block_on(
            fixtures::builder(&server, STUB_RESOURCE)
                .dpop(ring_key.clone())
                .build(),
        )
        .unwrap();
    let bare = chain(None);
    let noop = chain(Some(&noop_agent));
    let ring = chain(Some(&ring_agent));
    // First calls fetch the tokens (signed for real); then the signature is fixed.
    rt.block_on(async {
        get_ok(&noop).await;
        get_ok(&ring).await;
        get_ok(&bare).await;
    });
    fixed.fix();
    // What is measured: `Authorization: DPoP <token>` and a proof, its signature the fixed one.
    // The ring agent's signing input, for the raw signatures timed beside its requests.
    let signing_input = rt.block_on(async {
        let mut input = Vec::new();
        for (agent, fixed_signature) in [(&noop_agent, true), (&ring_agent, false)] {
            let h = headers_sent(agent).await;
            let auth = h[http::header::AUTHORIZATION].to_str().unwrap();
            assert!(auth.starts_with("DPoP "), "{auth}");
            let proof = h["dpop"].to_str().unwrap();
            let (head, signature) = proof.rsplit_once('.').unwrap();
            assert_eq!(signature == FIXED_SIGNATURE_B64, fixed_signature);
            input = head.as_bytes().to_vec();
        }
        input
    });
    // The request headers' time and the raw signatures' time of each sample.
    let mut same = SameSamples::default();

    let mut ran = [false; 3];
    c.bench_function("agent/bare_middleware_chain", |b| {
        ran[0] = true;
        b.to_async(&rt).iter(|| get_ok(&bare))
    });
    c.bench_function("agent/request_noop_signer_via_middleware", |b| {
        ran[1] = true;
        b.to_async(&rt).iter(|| get_ok(&noop))
    });
    // The same difference timed inside each sample, one bare GET and one agent GET back to
    // back in every iteration: drift and noise of the machine fall on both (two runs of the
    // separate benches above differ by as much as the target).
    let mut pairs = SameSamples::default();
    c.bench_function("agent/request_noop_above_bare", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let (mut with_agent, mut without) = (Duration::ZERO, Duration::ZERO);
                for _ in 0..iters {
                    let t0 = Instant::now();
                    black_box(get_ok(&bare).await);
                    let t1 = Instant::now();
                    black_box(get_ok(&noop).await);
                    with_agent += t1.elapsed();
                    without += t1 - t0;
                }
                let above = with_agent.saturating_sub(without);
                pairs.push(above, without, iters);
                above
            })
        })
    });
    if !pairs.per_iter.is_empty() {
        eprintln!(
            "above agent/request_noop_above_bare: {:.3} µs, bare {:.3} µs (medians of the same \
             {} samples)",
            pairs.figure_us(),
            pairs.floor_us(),
            pairs.measured().len(),
        );
    }
    // The difference is taken inside each sample, so both halves see the same machine; each
    // sample also times as many raw signatures of the same key and input, so that the ratio
    // to a signature comes from the same moments (one signature varies by ±10 % from run to
    // run on a shared machine, as much as the target's margin).
    c.bench_function("agent/request_headers_ring", |b| {
        ran[2] = true;
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(get_ok(&ring).await);
                }
                let with_agent = start.elapsed();
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(get_ok(&bare).await);
                }
                let headers = with_agent.saturating_sub(start.elapsed());
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(ring_key.signer().sign(black_box(&signing_input)).unwrap());
                }
                same.push(headers, start.elapsed(), iters);
                headers
            })
        })
    });
    if !same.per_iter.is_empty() {
        eprintln!(
            "ratio agent/request_headers_ring: {:.4}, headers {:.3} µs, raw sign {:.3} µs \
             (medians of the same {} samples: of each sample's ratio, headers, signature)",
            same.ratio(),
            same.figure_us(),
            same.floor_us(),
            same.measured().len(),
        );
    }

    rt.block_on(async {
        let floor = if ran.iter().any(|r| *r) {
            alloc::per_op_async("agent/bare_middleware_chain", COUNTED, || get_ok(&bare)).await
        } else {
            alloc::PerOp::default()
        };
        if ran[1] {
            alloc::per_op_async("agent/request_noop_signer_via_middleware", COUNTED, || {
                get_ok(&noop)
            })
            .await;
        }
        if ran[2] {
            let with = alloc::count_per_op_async(COUNTED, || get_ok(&ring)).await;
            alloc::print("agent/request_headers_ring", with.minus(floor));
        }
    });
    drop((noop, ring, noop_agent, ring_agent));
    server_rt.block_on(async move { drop(server) });
}

// ------------------------------------------------------------------ hits on 1 and 2 threads

/// Tasks per worker thread.
const TASKS_PER_WORKER: u64 = 64;

/// `TASKS_PER_WORKER` tasks per worker of `rt`, each running `task(n)` (which makes `n` calls
/// and returns how long they took), until each worker has made about `iters` calls. Returns
/// the busy time per worker, scaled to exactly `iters` calls. A hit never yields, so the tasks
/// of one worker run one after the other and their times add up to the worker's.
fn hammer<F, Fut>(rt: &Runtime, workers: u64, iters: u64, task: &F) -> Duration
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = Duration> + Send + 'static,
{
    let per_task = iters.div_ceil(TASKS_PER_WORKER).max(1);
    rt.block_on(async {
        let tasks: Vec<_> = (0..workers * TASKS_PER_WORKER)
            .map(|_| tokio::spawn(task(per_task)))
            .collect();
        let mut busy = Duration::ZERO;
        for t in tasks {
            busy += t.await.unwrap();
        }
        let calls = per_task * TASKS_PER_WORKER * workers;
        busy.mul_f64(iters as f64 / calls as f64)
    })
}

fn contended_hits(c: &mut Criterion) {
    let never = || -> Arc<dyn TokenSource> {
        Arc::new(|_: Option<TokenSet>| async {
            Err::<TokenSet, _>(agent_oauth::Error::Config("not used".into()))
        })
    };
    let cache = TokenCache::new(CacheConfig::default());
    let handle = cache.handle(&TokenKey::new("https://as.example", "agent"), never);
    handle.insert(fixtures::fresh_token("hot", TokenType::Dpop));

    let server_rt = fixtures::server_runtime();
    let server = server_rt.block_on(TestServer::start_with(server_config()));
    let resource = server.resource_url();
    let agent = fixtures::runtime(1)
        .block_on(async {
            let agent = fixtures::builder(&server, &resource).build().await?;
            agent.access_token(Some(&resource)).await?;
            Ok::<_, agent_oauth::Error>(agent)
        })
        .unwrap();

    // Each task holds its own clones: what is shared is what callers share.
    let cache_hits = |n: u64| {
        let h = handle.clone();
        async move {
            let start = Instant::now();
            for _ in 0..n {
                let t = h.get().await.unwrap();
                black_box(t.token().access_token.secret().len());
            }
            start.elapsed()
        }
    };
    let agent_hits = |n: u64| {
        let (agent, resource) = (agent.clone(), resource.clone());
        async move {
            let start = Instant::now();
            for _ in 0..n {
                let t = agent.access_token(Some(&resource)).await.unwrap();
                black_box(t.token().access_token.secret().len());
            }
            start.elapsed()
        }
    };
    // A control shared by nothing: the coarse clock a hit reads. If it too is slower on two
    // workers, the two cores are not independent (shared by the host) and neither is a hit.
    let clock_reads = |n: u64| async move {
        let start = Instant::now();
        for _ in 0..n {
            black_box(coarsetime::Instant::now());
        }
        start.elapsed()
    };
    for workers in [1u64, 2] {
        let rt = fixtures::runtime(workers as usize);
        c.bench_function(&format!("control/coarse_clock_{workers}x64"), |b| {
            b.iter_custom(|iters| hammer(&rt, workers, iters, &clock_reads))
        });
        c.bench_function(&format!("cache/hit_{workers}x64"), |b| {
            b.iter_custom(|iters| hammer(&rt, workers, iters, &cache_hits))
        });
        c.bench_function(&format!("agent/access_token_hit_{workers}x64"), |b| {
            b.iter_custom(|iters| hammer(&rt, workers, iters, &agent_hits))
        });
    }
    drop(agent);
    server_rt.block_on(async move { drop(server) });
}

// ------------------------------------------------------------------ cold stampede

const STAMPEDE_TASKS: usize = 10_000;
const TOKEN_DELAY: Duration = Duration::from_millis(50);

fn stampede(c: &mut Criterion) {
    let server_rt = fixtures::server_runtime();
    let server = server_rt.block_on(TestServer::start_with(
        server_config().with_latency(TOKEN_DELAY),
    ));
    let rt = fixtures::runtime(2);
    let resource = server.resource_url();
    let latencies: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
    // Each caller's end after the first end of its round: the wake-up's spread alone, apart
    // from how late the round's token answer came.
    let spread: Mutex<Vec<Duration>> = Mutex::new(Vec::new());
    let mut rounds = 0u64;
    let mut token_requests = 0u64;

    // One stampede on a new agent (a cold key): every caller's latency, from its own call.
    //
    // The agent is built on the runtime (in a task), as a service builds it, and the callers
    // are spawned from this thread. Built here instead, on the thread that then allocates
    // 10,000 tasks back to back, the agent's connection holds memory from this thread's
    // allocator arena, and a worker sending the token request waits for that arena's lock
    // while this thread spawns (traced: a worker asleep 1.6 ms in `futex` on glibc's main
    // arena until the spawning ended), so the token request leaves late: the allocator and
    // the harness, not the flight. That arrangement is measured too, apart (`built_on_spawner`).
    let round = |latencies: &Mutex<Vec<Duration>>, callers: usize, on_runtime: bool| {
        let mut ends = Vec::with_capacity(callers);
        rt.block_on(async {
            let builder = fixtures::builder(&server, &resource);
            let agent = if on_runtime {
                tokio::spawn(builder.build()).await.unwrap().unwrap()
            } else {
                builder.build().await.unwrap()
            };
            let before = server.stats().token_requests;
            let start = Instant::now();
            let tasks: Vec<_> = (0..callers)
                .map(|_| {
                    let (agent, resource) = (agent.clone(), resource.clone());
                    tokio::spawn(async move {
                        let called = Instant::now();
                        let t = agent.access_token(Some(&resource)).await.unwrap();
                        black_box(t.token().access_token.secret().len());
                        (called, Instant::now())
                    })
                })
                .collect();
            let spawned = start.elapsed();
            let mut mine = Vec::with_capacity(callers);
            let (mut first_done, mut last_done) = (None::<Instant>, None::<Instant>);
            let mut last_call = start;
            for t in tasks {
                let (called, done) = t.await.unwrap();
                mine.push(done - called);
                ends.push(done);
                first_done = Some(first_done.map_or(done, |f| f.min(done)));
                last_done = Some(last_done.map_or(done, |l| l.max(done)));
                last_call = last_call.max(called);
            }
            let wall = start.elapsed();
            if std::env::var_os("STAMPEDE_TRACE").is_some() {
                let (f, l) = (first_done.unwrap(), last_done.unwrap());
                eprintln!(
                    "trace: spawned in {:.2} ms, last call at {:.2} ms, first done at {:.2} ms, \
                     last done {:.2} ms after the first",
                    spawned.as_secs_f64() * 1e3,
                    (last_call - start).as_secs_f64() * 1e3,
                    (f - start).as_secs_f64() * 1e3,
                    (l - f).as_secs_f64() * 1e3
                );
            }
            latencies.lock().unwrap().extend(mine);
            if callers > 1 {
                let first = first_done.unwrap();
                spread
                    .lock()
                    .unwrap()
                    .extend(ends.iter().map(|&d| d - first));
            }
            (wall, server.stats().token_requests - before)
        })
    };

    // The floor: one caller's cold call on a new agent, the same token request without the
    // crowd (the server's 50 ms sleep overshoots by its timer's resolution, and its token
    // endpoint and the client's request take time of their own).
    let mut solo = Vec::new();

    let mut group = c.benchmark_group("stampede");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("10k_50ms", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // One lone caller before each stampede: the floor comes from the same minutes.
                let one = Mutex::new(Vec::new());
                round(&one, 1, true);
                solo.extend(one.into_inner().unwrap());
                let (wall, requests) = round(&latencies, STAMPEDE_TASKS, true);
                total += wall;
                rounds += 1;
                token_requests += requests;
            }
            total
        })
    });
    group.finish();

    if rounds > 0 {
        let mut all = latencies.into_inner().unwrap();
        all.sort_unstable();
        let at = |p| fixtures::ms_above(fixtures::percentile(&all, p), TOKEN_DELAY);
        solo.sort_unstable();
        let lone = fixtures::percentile(&solo, 50.0);
        let over_lone = |p| fixtures::ms_above(fixtures::percentile(&all, p), lone);
        eprintln!(
            "latency stampede/10k_50ms: p50 {:+.2} ms, p99 {:+.2} ms, max {:+.2} ms above the \
             50 ms delay, {} callers in {rounds} rounds; lone caller {:+.2} ms above the delay \
             (median of {}); above the lone caller: p50 {:+.2} ms, p99 {:+.2} ms, max {:+.2} ms",
            at(50.0),
            at(99.0),
            at(100.0),
            all.len(),
            fixtures::ms_above(lone, TOKEN_DELAY),
            solo.len(),
            over_lone(50.0),
            over_lone(99.0),
            over_lone(100.0),
        );
        let mut spread = std::mem::take(&mut *spread.lock().unwrap());
        spread.sort_unstable();
        let after_first = |p| fixtures::percentile(&spread, p).as_secs_f64() * 1e3;
        eprintln!(
            "spread stampede/10k_50ms: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms after the \
             round's first caller was served",
            after_first(50.0),
            after_first(99.0),
            after_first(100.0),
        );
        eprintln!(
            "requests stampede/10k_50ms: {:.2} token requests/round, {rounds} rounds",
            token_requests as f64 / rounds as f64
        );
        // The same stampede with the agent built on this thread, the one that spawns the
        // callers (see `round`), each round after a lone caller built the same way.
        let on_spawner = Mutex::new(Vec::new());
        let mut solo_on_spawner = Vec::new();
        let spawner_rounds = rounds.min(20);
        for _ in 0..spawner_rounds {
            let one = Mutex::new(Vec::new());
            round(&one, 1, false);
            solo_on_spawner.extend(one.into_inner().unwrap());
            round(&on_spawner, STAMPEDE_TASKS, false);
        }
        let mut all = on_spawner.into_inner().unwrap();
        all.sort_unstable();
        solo_on_spawner.sort_unstable();
        let lone = fixtures::percentile(&solo_on_spawner, 50.0);
        let over_lone = |p| fixtures::ms_above(fixtures::percentile(&all, p), lone);
        eprintln!(
            "latency stampede/10k_50ms_built_on_spawner: above the lone caller: p50 {:+.2} ms, \
             p99 {:+.2} ms, max {:+.2} ms; {spawner_rounds} rounds, the agent built on the \
             thread that spawns the callers",
            over_lone(50.0),
            over_lone(99.0),
            over_lone(100.0),
        );
        // The machine's floor for waking that many tasks: idle tasks on the same runtime,
        // woken by tokio's own `Notify::notify_waiters`, each timed from the wake-up to its
        // end (no token, no cache: what the scheduler alone takes).
        let mut woken = Vec::new();
        for _ in 0..rounds.min(20) {
            woken.extend(rt.block_on(wake_idle_tasks(STAMPEDE_TASKS)));
        }
        woken.sort_unstable();
        eprintln!(
            "latency control/wake_10k: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms after the \
             wake-up, {} tasks in {} rounds",
            fixtures::percentile(&woken, 50.0).as_secs_f64() * 1e3,
            fixtures::percentile(&woken, 99.0).as_secs_f64() * 1e3,
            fixtures::percentile(&woken, 100.0).as_secs_f64() * 1e3,
            woken.len(),
            rounds.min(20),
        );
        let ((), counted) = alloc::measure(|| {
            round(&Mutex::new(Vec::new()), STAMPEDE_TASKS, true);
        });
        alloc::print(
            "stampede/10k_50ms",
            alloc::PerOp::of(counted, STAMPEDE_TASKS as u64),
        );
    }
    server_rt.block_on(async move { drop(server) });
}

/// `tasks` idle tasks waiting on one `tokio::sync::Notify`, woken at once: how long after the
/// wake-up each one ended.
async fn wake_idle_tasks(tasks: usize) -> Vec<Duration> {
    let notify = Arc::new(tokio::sync::Notify::new());
    let ready = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (notify, ready) = (notify.clone(), ready.clone());
            tokio::spawn(async move {
                let notified = notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                ready.fetch_add(1, Ordering::AcqRel);
                notified.await;
                Instant::now()
            })
        })
        .collect();
    while ready.load(Ordering::Acquire) < tasks as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let woke = Instant::now();
    notify.notify_waiters();
    let mut after = Vec::with_capacity(tasks);
    for h in handles {
        after.push(h.await.unwrap().saturating_duration_since(woke));
    }
    after
}

// ------------------------------------------------------------------ loopback GET

/// `GET url` through the agent, answered 200; the body's length.
async fn agent_get_ok(agent: &Agent, url: &str) -> usize {
    let resp = agent.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    black_box(resp.body().len())
}

/// `GET url` with a plain client, answered 200, body read; its length.
async fn plain_get_ok(client: &reqwest::Client, url: &str) -> usize {
    let resp = client.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    black_box(resp.bytes().await.unwrap().len())
}

fn loopback(c: &mut Criterion) {
    let server_rt = fixtures::server_runtime();
    let server = server_rt.block_on(TestServer::start_with(server_config()));
    let base = server_rt.block_on(fixtures::any_token_server());
    let url = format!("{base}/v1/items");
    let rt = fixtures::current_thread();
    let agent = rt
        .block_on(fixtures::builder(&server, &base).build())
        .unwrap();
    assert!(agent.dpop_key().is_some(), "the agent signs DPoP proofs");
    let plain = reqwest::Client::new();

    let agent_get = || agent_get_ok(&agent, &url);
    let plain_get = || plain_get_ok(&plain, &url);
    let transport = agent.transport().clone();
    let transport_get = || async {
        let resp = transport
            .execute(RetryPolicy::Idempotent, || {
                Ok(http::Request::get(url.as_str()).body(Vec::new()).unwrap())
            })
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        black_box(resp.body().len())
    };
    // Tokens fetched, connections open.
    rt.block_on(async {
        agent_get().await;
        plain_get().await;
        transport_get().await;
    });

    let mut ran = [false; 3];
    c.bench_function("transport/loopback_get", |b| {
        ran[2] = true;
        b.to_async(&rt).iter(transport_get)
    });
    c.bench_function("reqwest/loopback_get", |b| {
        ran[0] = true;
        b.to_async(&rt).iter(plain_get)
    });
    c.bench_function("agent/loopback_get", |b| {
        ran[1] = true;
        b.to_async(&rt).iter(agent_get)
    });
    loopback_same_thread(c, &server);
    rt.block_on(async {
        if ran[0] {
            alloc::per_op_async("reqwest/loopback_get", COUNTED, plain_get).await;
        }
        if ran[1] {
            alloc::per_op_async("agent/loopback_get", COUNTED, agent_get).await;
        }
        if ran[2] {
            alloc::per_op_async("transport/loopback_get", COUNTED, transport_get).await;
        }
    });
    drop(agent);
    server_rt.block_on(async move { drop(server) });
}

/// `agent/loopback_get_above_reqwest`: what the agent adds to a loopback GET, with the noise
/// of the machine taken out. The server runs on the client's own current-thread runtime (a
/// round trip wakes no other thread), and each iteration times one plain GET and one agent GET
/// back to back: the figure is the agent's total minus reqwest's total, from the same
/// iterations, so drift and scheduling noise fall on both.
///
/// The budget's signature is timed the same way: one raw signature in each iteration, before
/// its GETs, as the agent's own signature comes between requests. A signature costs more there
/// than in a loop of signatures alone (ring's tables for the base point, about 150 KB, leave
/// the cache while a request runs: 20-23 µs against 17-18 µs in a profile of the agent's GETs);
/// the loop's figure is printed beside it.
fn loopback_same_thread(c: &mut Criterion, server: &TestServer) {
    let rt = fixtures::current_thread();
    let base = rt.block_on(fixtures::any_token_server());
    let url = format!("{base}/v1/items");
    let agent = rt
        .block_on(fixtures::builder(server, &base).build())
        .unwrap();
    let plain = reqwest::Client::new();
    let agent_get = || agent_get_ok(&agent, &url);
    let plain_get = || plain_get_ok(&plain, &url);
    rt.block_on(async {
        agent_get().await;
        plain_get().await;
    });
    // The budget's signature, timed in the same samples: a ring key signing a proof's signing
    // input for this URL (one signature varies by about 10 % between runs).
    let key = DpopKey::generate();
    let proof = key
        .proof(
            "GET",
            &url::Url::parse(&url).unwrap(),
            1_700_000_000,
            None,
            Some(&agent_oauth::dpop::ath(
                "a-token-of-the-usual-length-0123456789",
            )),
        )
        .unwrap();
    let signing_input = proof.rsplit_once('.').unwrap().0.as_bytes().to_vec();
    let mut same = SameSamples::default();
    let mut in_a_loop = SameSamples::default();
    c.bench_function("agent/loopback_get_above_reqwest", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let (mut agent_total, mut plain_total) = (Duration::ZERO, Duration::ZERO);
                let mut sign_total = Duration::ZERO;
                for _ in 0..iters {
                    let t0 = Instant::now();
                    black_box(key.signer().sign(black_box(&signing_input)).unwrap());
                    let t1 = Instant::now();
                    plain_get().await;
                    let t2 = Instant::now();
                    agent_get().await;
                    agent_total += t2.elapsed();
                    plain_total += t2 - t1;
                    sign_total += t1 - t0;
                }
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(key.signer().sign(black_box(&signing_input)).unwrap());
                }
                let above = agent_total.saturating_sub(plain_total);
                same.push(above, sign_total, iters);
                in_a_loop.push(above, start.elapsed(), iters);
                above
            })
        })
    });
    if !same.per_iter.is_empty() {
        eprintln!(
            "budget agent/loopback_get_above_reqwest: above {:.3} µs, raw sign {:.3} µs \
             between the GETs, {:.3} µs in a loop of signatures (medians of the same {} \
             samples)",
            same.figure_us(),
            same.floor_us(),
            in_a_loop.floor_us(),
            same.measured().len(),
        );
    }
    drop(agent);
}

// ------------------------------------------------------------------ first calls and nonces

const FIRST_CALLS: usize = 50;
const OWN_NONCE: &str = "rs-nonce-1";

/// The `nonce` claim of a request's DPoP proof.
fn proof_nonce(headers: &http::HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let proof = headers.get("dpop")?.to_str().ok()?;
    let payload = proof.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["nonce"].as_str().map(str::to_owned)
}

/// A resource on an origin of its own that accepts only proofs with nonce `OWN_NONCE` and
/// counts the requests it receives; returns its URL. Call inside the runtime that serves it.
async fn own_origin_nonce_resource(hits: Arc<AtomicU64>) -> String {
    use axum::response::IntoResponse as _;
    let app = axum::Router::new().fallback(move |headers: http::HeaderMap| {
        let hits = hits.clone();
        async move {
            hits.fetch_add(1, Ordering::Relaxed);
            if proof_nonce(&headers).as_deref() == Some(OWN_NONCE) {
                return (http::StatusCode::OK, "ok").into_response();
            }
            (
                http::StatusCode::UNAUTHORIZED,
                [
                    ("dpop-nonce", OWN_NONCE),
                    ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
                ],
                "",
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/data")
}

/// `FIRST_CALLS` concurrent first calls of a new agent (its token fetched, no nonce known) to
/// `resource`, as bench `nonce/<name>`: time per round, and requests per round as `requests()`
/// counts those `resource` received.
fn first_calls(
    c: &mut Criterion,
    name: &str,
    rt: &Runtime,
    server: &TestServer,
    resource: &str,
    requests: &dyn Fn() -> u64,
) {
    let mut counts: Vec<u64> = Vec::new();
    let mut group = c.benchmark_group("nonce");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (elapsed, received) = rt.block_on(async {
                    let agent = fixtures::builder(server, resource).build().await.unwrap();
                    agent.access_token(Some(resource)).await.unwrap();
                    let before = requests();
                    let start = Instant::now();
                    let calls: Vec<_> = (0..FIRST_CALLS)
                        .map(|_| {
                            let (agent, resource) = (agent.clone(), resource.to_owned());
                            tokio::spawn(async move { agent.get(&resource).send().await })
                        })
                        .collect();
                    for call in calls {
                        assert_eq!(call.await.unwrap().unwrap().status(), 200);
                    }
                    (start.elapsed(), requests() - before)
                });
                total += elapsed;
                counts.push(received);
            }
            total
        })
    });
    group.finish();

    if !counts.is_empty() {
        let mean = counts.iter().sum::<u64>() as f64 / counts.len() as f64;
        eprintln!(
            "requests nonce/{name}: {mean:.2} requests/round, {} max, {FIRST_CALLS} calls, {} \
             rounds",
            counts.iter().max().unwrap_or(&0),
            counts.len(),
        );
    }
}

fn nonce_first_calls(c: &mut Criterion) {
    let server_rt = fixtures::server_runtime();
    let server = server_rt.block_on(TestServer::start_with(
        server_config().with_resource_require_dpop_nonce(true),
    ));
    let hits = Arc::new(AtomicU64::new(0));
    let own = server_rt.block_on(own_origin_nonce_resource(hits.clone()));
    let rt = fixtures::runtime(2);

    // The test server's resource shares its origin with the token endpoint, which requires no
    // nonce: its answers tell the agent's nonce cache (kept per origin) that the origin needs
    // none, so the first calls do not wait for the first one's nonce.
    let resource = server.resource_url();
    first_calls(c, "first_calls_50", &rt, &server, &resource, &|| {
        server.stats().resource_requests
    });
    // The same against a resource on an origin of its own.
    first_calls(c, "first_calls_50_own_origin", &rt, &server, &own, &|| {
        hits.load(Ordering::Relaxed)
    });
    server_rt.block_on(async move { drop(server) });
}

// ------------------------------------------------------------------ child agents

/// Spawning children of one agent, one after the other (`scale/child_spawn`).
fn child_spawn(c: &mut Criterion) {
    let server_rt = fixtures::server_runtime();
    let server = server_rt.block_on(TestServer::start_with(
        TestServerConfig::default().with_access_token_ttl(Duration::from_secs(3600)),
    ));
    let rt = fixtures::runtime(1);
    let resource = server.resource_url();
    let parent = rt
        .block_on(
            fixtures::builder(&server, &resource)
                .scope("read write")
                .build(),
        )
        .unwrap();
    rt.block_on(parent.access_token(Some(&resource))).unwrap();
    let child_resource = format!("{resource}/reports");
    let spawn = || async {
        parent
            .delegate()
            .scope("read")
            .resource(&child_resource)
            .spawn()
            .await
            .unwrap()
    };

    let mut ran = false;
    let mut group = c.benchmark_group("scale");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("child_spawn", |b| {
        ran = true;
        b.iter_custom(|iters| {
            rt.block_on(async {
                // The children stay alive until the round ends, as a fan-out would hold them.
                let mut children: Vec<ChildAgent> = Vec::with_capacity(iters as usize);
                let start = Instant::now();
                for _ in 0..iters {
                    children.push(spawn().await);
                }
                let elapsed = start.elapsed();
                drop(children);
                elapsed
            })
        })
    });
    group.finish();

    if ran {
        // 1,000 children alive at once: bytes allocated per spawn, and kept per live child.
        const CHILDREN: u64 = 1_000;
        let start = Instant::now();
        let (children, counted) = rt.block_on(alloc::measure_async(async {
            let mut children = Vec::with_capacity(CHILDREN as usize);
            for _ in 0..CHILDREN {
                children.push(spawn().await);
            }
            children
        }));
        let elapsed = start.elapsed();
        alloc::print("scale/child_spawn", alloc::PerOp::of(counted, CHILDREN));
        eprintln!(
            "memory scale/child_spawn: {:.0} B/child kept, {CHILDREN} children alive, \
             {:.2} ms to spawn them",
            counted.net_bytes() as f64 / CHILDREN as f64,
            elapsed.as_secs_f64() * 1e3,
        );
        drop(children);
    }
    drop(parent);
    server_rt.block_on(async move { drop(server) });
}

criterion_group!(
    benches,
    access_token_hit,
    middleware,
    contended_hits,
    stampede,
    loopback,
    nonce_first_calls,
    child_spawn
);
criterion_main!(benches);
