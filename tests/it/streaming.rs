//! `HttpTransport::execute_stream` against an in-process axum server: bodies past the
//! OAuth cap, Server-Sent Events written slowly, the idle timeout, error responses read under
//! the cap, retries, and timeouts that end with the headers.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::support::prelude::{
    BodyStream, Error, HttpRequest, HttpTransport, Result, RetryPolicy, SseEvent, SseParser,
    SseStream, StreamingResponse, TransportConfig,
};
use crate::support::server::{guard, TestHttp};

const MIB: usize = 1024 * 1024;

/// Small timeouts and backoffs; the default 1 MiB body cap.
fn fast_config() -> TransportConfig {
    let mut c = TransportConfig::default();
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(5);
    c.deadline = Duration::from_secs(10);
    c.min_backoff = Duration::from_millis(5);
    c.max_backoff = Duration::from_millis(20);
    c
}

fn transport(config: TransportConfig) -> HttpTransport {
    HttpTransport::with_config(config).expect("transport")
}

fn get_req(url: &str) -> Result<HttpRequest> {
    Ok(http::Request::get(url).body(Vec::new()).expect("request"))
}

async fn stream(t: &HttpTransport, url: &str) -> Result<StreamingResponse> {
    guard(t.execute_stream(RetryPolicy::Idempotent, || get_req(url))).await
}

/// A response body the handler feeds through a channel, sent with chunked encoding.
struct Feed(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Feed {
    type Item = std::result::Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

/// A `200` whose body is written by `write` (given the sender) in a task of its own.
fn fed<F, Fut>(content_type: &'static str, write: F) -> Response
where
    F: FnOnce(mpsc::Sender<Bytes>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(write(tx));
    (
        [("content-type", content_type)],
        Body::from_stream(Feed(rx)),
    )
        .into_response()
}

/// Read the whole body chunk by chunk; the byte count and whether every byte is `x`.
async fn drain(resp: StreamingResponse) -> (usize, bool) {
    let mut body: BodyStream = resp.into_body();
    let (mut total, mut all_x) = (0, true);
    while let Some(chunk) = guard(body.next_chunk()).await.expect("chunk") {
        total += chunk.len();
        all_x &= chunk.iter().all(|&b| b == b'x');
    }
    (total, all_x)
}

/// Every event of `resp`'s body, read as Server-Sent Events through the `Stream` impl.
async fn events(resp: StreamingResponse) -> Vec<SseEvent> {
    let mut sse: SseStream = resp.into_body().sse();
    let mut out = Vec::new();
    while let Some(event) = guard(next(&mut sse)).await {
        out.push(event.expect("event"));
    }
    out
}

/// The next item of `stream` (what `StreamExt::next` does).
async fn next<S: futures_core::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

#[tokio::test]
async fn stream_body_past_the_cap_streams_in_full_while_execute_refuses_it() {
    let router = Router::new()
        .route("/full", get(|| async { vec![b'x'; 3 * MIB] }))
        .route(
            "/chunked",
            get(|| async {
                fed("application/octet-stream", |tx| async move {
                    for _ in 0..48 {
                        let _ = tx.send(Bytes::from(vec![b'x'; 64 * 1024])).await;
                    }
                })
            }),
        );
    let server = TestHttp::start(router).await;
    let t = transport(fast_config());
    assert_eq!(t.config().max_body_bytes, MIB);
    for path in ["/full", "/chunked"] {
        let url = server.url(path);
        let resp = stream(&t, &url).await.expect("streamed response");
        assert_eq!(resp.status(), 200);
        assert_eq!(drain(resp).await, (3 * MIB, true), "{path}");

        let err = guard(t.execute(RetryPolicy::Idempotent, || get_req(&url)))
            .await
            .expect_err("over the cap");
        assert!(
            matches!(err, Error::BodyTooLarge { limit } if limit == MIB),
            "{path}: {err:?}"
        );
    }
}

#[tokio::test]
async fn stream_sse_written_slowly_in_small_pieces_yields_the_events_in_order() {
    let script: String = (0..12)
        .map(|i| format!(": ping\r\nid: {i}\r\nevent: tick\r\ndata: {i}\r\ndata: more\r\n\r\n"))
        .collect();
    let script = Arc::new(script.into_bytes());
    let router = Router::new().route(
        "/mcp",
        get(move || {
            let script = Arc::clone(&script);
            async move {
                fed("text/event-stream", |tx| async move {
                    // Three bytes at a time: line ends, fields and CRLFs are cut everywhere.
                    for piece in script.chunks(3) {
                        if tx.send(Bytes::copy_from_slice(piece)).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            }
        }),
    );
    let server = TestHttp::start(router).await;
    let t = transport(fast_config());
    let resp = stream(&t, &server.url("/mcp")).await.expect("response");
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let got = events(resp).await;
    assert_eq!(got.len(), 12);
    for (i, event) in got.iter().enumerate() {
        assert_eq!(event.event, "tick");
        assert_eq!(event.data, format!("{i}\nmore"));
        assert_eq!(event.id.as_deref(), Some(i.to_string().as_str()));
        assert_eq!(event.retry, None);
    }
}

#[tokio::test]
async fn stream_idle_timeout_ends_a_silent_stream_with_a_timeout_error() {
    let router = Router::new().route(
        "/quiet",
        get(|| async {
            fed("text/event-stream", |tx| async move {
                let _ = tx
                    .send(Bytes::from_static(b"retry: 1500\ndata: hi\n\n"))
                    .await;
                // Then nothing, with the connection kept open.
                tokio::time::sleep(Duration::from_secs(60)).await;
                drop(tx);
            })
        }),
    );
    let server = TestHttp::start(router).await;
    let idle = Duration::from_millis(500);
    let mut config = fast_config();
    config.stream_idle_timeout = Some(idle);
    let t = transport(config);
    let resp = stream(&t, &server.url("/quiet")).await.expect("response");
    let mut sse = resp.into_body().sse();
    let first = guard(sse.next_event())
        .await
        .expect("event")
        .expect("first");
    assert_eq!(first.data, "hi");
    assert_eq!(sse.retry(), Some(Duration::from_millis(1500)));
    let err = guard(sse.next_event()).await.expect_err("idle");
    assert!(matches!(err, Error::Timeout(d) if d == idle), "{err:?}");
    assert!(guard(sse.next_event()).await.expect("ended").is_none());
}

#[tokio::test]
async fn stream_401_body_is_read_under_the_cap_and_converts() {
    let router = Router::new()
        .route(
            "/denied",
            get(|| async {
                (
                    StatusCode::UNAUTHORIZED,
                    [
                        ("www-authenticate", r#"Bearer error="invalid_token""#),
                        ("content-type", "application/json"),
                    ],
                    r#"{"error":"invalid_token"}"#,
                )
            }),
        )
        .route(
            "/denied-big",
            get(|| async {
                // Chunked, so the cap is hit while reading, not on a declared length.
                let body = fed("text/plain", |tx| async move {
                    for _ in 0..32 {
                        let _ = tx.send(Bytes::from(vec![b'x'; 64 * 1024])).await;
                    }
                });
                (StatusCode::UNAUTHORIZED, body)
            }),
        );
    let server = TestHttp::start(router).await;
    let t = transport(fast_config());
    let mut resp = stream(&t, &server.url("/denied")).await.expect("response");
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let body = guard(resp.body_mut().next_chunk())
        .await
        .expect("chunk")
        .expect("the body, read whole");
    assert_eq!(body, r#"{"error":"invalid_token"}"#);
    assert!(guard(resp.body_mut().next_chunk())
        .await
        .expect("end")
        .is_none());

    // An error body is bounded by max_body_bytes even on the streaming path.
    let err = stream(&t, &server.url("/denied-big"))
        .await
        .expect_err("over the cap");
    assert!(
        matches!(err, Error::BodyTooLarge { limit } if limit == MIB),
        "{err:?}"
    );
}

/// A route answering 503 (`Retry-After: 0`) to its first request and `ok` to the others.
fn flaky(hits: Arc<AtomicUsize>, ok: fn() -> Response) -> Router {
    Router::new().route(
        "/flaky",
        get(move || async move {
            if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "0")],
                    "busy",
                )
                    .into_response()
            } else {
                ok()
            }
        }),
    )
}

#[tokio::test]
async fn stream_503_then_200_is_retried_as_on_the_normal_path() {
    let sse = || {
        fed("text/event-stream", |tx| async move {
            let _ = tx.send(Bytes::from_static(b"data: after retry\n\n")).await;
        })
    };
    let streamed_hits = Arc::new(AtomicUsize::new(0));
    let server = TestHttp::start(flaky(Arc::clone(&streamed_hits), sse)).await;
    let t = transport(fast_config());
    let resp = stream(&t, &server.url("/flaky")).await.expect("response");
    assert_eq!(resp.status(), 200);
    let got = events(resp).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, "after retry");
    assert_eq!(streamed_hits.load(Ordering::SeqCst), 2);

    let plain_hits = Arc::new(AtomicUsize::new(0));
    let server = TestHttp::start(flaky(Arc::clone(&plain_hits), || "ok".into_response())).await;
    let url = server.url("/flaky");
    let resp = guard(t.execute(RetryPolicy::Idempotent, || get_req(&url)))
        .await
        .expect("response");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        plain_hits.load(Ordering::SeqCst),
        2,
        "same retries both ways"
    );

    // A policy that does not retry 503 keeps it on the streaming path too.
    let never_hits = Arc::new(AtomicUsize::new(0));
    let server = TestHttp::start(flaky(Arc::clone(&never_hits), sse)).await;
    let url = server.url("/flaky");
    let mut resp = guard(t.execute_stream(RetryPolicy::ConnectOnly, || get_req(&url)))
        .await
        .expect("response");
    assert_eq!(resp.status(), 503);
    let body = guard(resp.body_mut().next_chunk()).await.expect("chunk");
    assert_eq!(body.as_deref(), Some(&b"busy"[..]));
    assert_eq!(never_hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn stream_deadline_and_request_timeout_end_with_the_headers() {
    // About 2 s of body, well past both the attempt timeout and the deadline.
    let slow = || {
        fed("text/event-stream", |tx| async move {
            for i in 0..10 {
                let event = format!("data: {i}\n\n");
                if tx.send(Bytes::from(event)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let server =
        TestHttp::start(Router::new().route("/slow", get(move || async move { slow() }))).await;
    let mut config = fast_config();
    config.request_timeout = Duration::from_millis(500);
    config.deadline = Duration::from_millis(700);
    config.max_attempts = 1;
    let t = transport(config);
    let url = server.url("/slow");
    let resp = stream(&t, &url).await.expect("headers in time");
    let got = events(resp).await;
    let data: Vec<&str> = got.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);

    // Read whole, the same body does not fit in the same limits.
    let err = guard(t.execute(RetryPolicy::Never, || get_req(&url)))
        .await
        .expect_err("too slow");
    assert!(
        matches!(err, Error::Timeout(_) | Error::Transport { .. }),
        "{err:?}"
    );
}

#[test]
fn stream_sse_parser_is_reachable_from_the_public_api() {
    let mut parser = SseParser::with_max_event_bytes(64);
    let got = parser.push(b"data: a\n\n").expect("push");
    assert_eq!(got[0].data, "a");
    parser.finish();
}

/// Through the agent: a protected response past the 1 MiB cap is refused by `send` and read in
/// full by `send_stream`, which carries the token like `send`; an MCP server's event-stream
/// answer is read event by event.
#[tokio::test]
async fn stream_agent_send_stream_reads_a_protected_body_past_the_cap() {
    use crate::support::prelude::{Agent, ClientAuth, TestServer};
    use crate::support::server::{Reply, Scripted};

    let server = TestServer::start().await;
    let api = Scripted::start().await;
    let total = 3 * 1024 * 1024;
    api.push(Reply::status(200).stream(total, 64 * 1024, Duration::ZERO));
    api.push(Reply::status(200).stream(total, 64 * 1024, Duration::ZERO));
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .resource(api.url("/data"))
        .discover_resources(false)
        .build()
        .await
        .expect("agent");
    let err = guard(agent.get(api.url("/data/big")).send())
        .await
        .expect_err("capped");
    assert!(matches!(err, Error::BodyTooLarge { .. }), "{err:?}");
    let resp = guard(agent.get(api.url("/data/big")).send_stream())
        .await
        .expect("streamed");
    assert_eq!(resp.status(), 200);
    let body = guard(resp.into_body().collect_capped(usize::MAX))
        .await
        .expect("body");
    assert_eq!(body.len(), total);
    let sent = api.requests();
    assert!(sent
        .iter()
        .all(|r| r.header("authorization").is_some_and(|a| !a.is_empty())));

    // The embedded MCP resource answers `text/event-stream` when asked.
    let mcp = server.mcp_url();
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .build()
        .await
        .expect("agent");
    let resp = guard(
        agent
            .post(&mcp)
            .header("accept", "application/json, text/event-stream")
            .json(&serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}))
            .send_stream(),
    )
    .await
    .expect("mcp");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/event-stream"));
    let mut events = resp.into_body().sse();
    let event = guard(events.next_event())
        .await
        .expect("event")
        .expect("one event");
    assert_eq!(event.event, "message");
    let v: serde_json::Value = serde_json::from_str(&event.data).expect("json-rpc");
    assert_eq!(v["id"], 7);
    assert!(v["result"]["tools"].is_array(), "{v}");
}
