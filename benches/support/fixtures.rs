//! Runtimes, agents and servers shared by the benches (`#[path = "support/fixtures.rs"]`).
#![allow(dead_code)]

use std::time::{Duration, SystemTime};

use agent_oauth::testkit::TestServer;
use agent_oauth::{AccessToken, Agent, AgentBuilder, ClientAuth, TokenSet, TokenType};

/// A multi-thread runtime with `workers` worker threads (the machine has two cores).
pub fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A current-thread runtime: a request and its connection's task run on the one thread,
/// so a loopback round trip has no wake-up between client threads.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The runtime in-process servers run on: one worker, whose allocations are not counted
/// (a figure is the client's work alone).
pub fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-server")
        .on_thread_start(super::alloc::exclude_this_thread)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// An agent of the test server's `agent` client (scope `read`), sending tokens to `resource`.
pub fn builder(server: &TestServer, resource: &str) -> AgentBuilder {
    Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
        .resource(resource)
}

/// A token valid for an hour, never in its refresh window while a bench runs.
pub fn fresh_token(secret: impl Into<String>, token_type: TokenType) -> TokenSet {
    let now = SystemTime::now();
    let mut t = TokenSet::new(AccessToken::new(secret.into()), token_type, now);
    t.expires_at = Some(now + Duration::from_secs(3600));
    t
}

/// An HTTP server on 127.0.0.1 answering `200 ok` to every request, whatever its
/// `Authorization` and `DPoP` headers; returns its base URL (`http://127.0.0.1:<port>`).
/// Call inside the runtime that serves it.
pub async fn any_token_server() -> String {
    let app = axum::Router::new().fallback(|| async { "ok" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

/// The `p`-th percentile (0..=100) of sorted `values`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Milliseconds, signed, for "above the delay" figures.
pub fn ms_above(d: Duration, delay: Duration) -> f64 {
    (d.as_secs_f64() - delay.as_secs_f64()) * 1e3
}
