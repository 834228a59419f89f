//! Tiny in-process HTTP servers for integration tests, all on `127.0.0.1:0`.
//!
//! - [`TestHttp`] serves an axum [`Router`](axum::Router): handy when a test needs real
//!   handlers (shared state, forwarding).
//! - [`Scripted`] is a raw HTTP/1.1 responder written on tokio sockets, so a test controls every
//!   byte: status, headers (including a wrong `Content-Length` or `Date`), a delay before the
//!   response, and bodies streamed slowly with chunked encoding. Replies come from fixed
//!   per-path routes first, then from a FIFO queue, then a 404. Every request is captured with
//!   its arrival time, and the last streamed body reports how far it got.
//!
//! Every response carries `Connection: close`, so each request uses a fresh connection and a
//! test can count requests by counting connections. Servers stop when dropped.
#![allow(dead_code, unreachable_pub)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Upper bound for any single awaited operation in a test: a hang guard, not a performance
/// threshold. Tests only ever assert that the operation completed.
pub const HANG_GUARD: Duration = Duration::from_secs(20);

/// Await `f`, panicking if it does not complete within [`HANG_GUARD`].
pub async fn guard<F: Future>(f: F) -> F::Output {
    guard_for(HANG_GUARD, f).await
}

/// Await `f`, panicking if it does not complete within `limit` (a hang guard).
pub async fn guard_for<F: Future>(limit: Duration, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("operation did not complete within {limit:?}"),
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    drop(listener);
    port
}

/// A non-loopback IPv4 address of this machine, if it has one (found by "connecting" a UDP
/// socket, which sends nothing).
pub fn non_loopback_ipv4() -> Option<Ipv4Addr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.255:9").ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

// ------------------------------------------------------------------ axum

/// An axum router served on an ephemeral loopback port; aborted on drop.
#[derive(Debug)]
pub struct TestHttp {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestHttp {
    /// Serve `router` on `127.0.0.1:0`.
    pub async fn start(router: axum::Router) -> TestHttp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(listener, router)
    }

    /// Serve `router` on an already bound listener (to know the URL before the router exists).
    pub fn start_on(listener: TcpListener, router: axum::Router) -> TestHttp {
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        TestHttp { addr, task }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Absolute URL of `path` (starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }
}

impl Drop for TestHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ------------------------------------------------------------------ scripted

/// How a [`Reply`] sends its body.
#[derive(Debug, Clone)]
pub enum ReplyBody {
    /// The whole body at once, with a `Content-Length` (unless the reply sets one itself).
    Full(Vec<u8>),
    /// `total` bytes of `b'x'` with `Transfer-Encoding: chunked`, `chunk` bytes per chunk,
    /// sleeping `interval` after each chunk.
    Stream {
        total: usize,
        chunk: usize,
        interval: Duration,
    },
}

/// One canned response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: ReplyBody,
    /// Wait before sending anything (a slow server).
    pub delay: Duration,
}

impl Reply {
    /// `status` with an empty body.
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Full(Vec::new()),
            delay: Duration::ZERO,
        }
    }

    /// `status` with `value` as `application/json`.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::status(status)
            .header("content-type", "application/json")
            .body(value.to_string())
    }

    /// Add a header (sent as is, in order).
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Set the whole body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = ReplyBody::Full(body.into());
        self
    }

    /// Stream `total` bytes in chunked encoding, `chunk` bytes at a time, pausing `interval`
    /// after each chunk.
    pub fn stream(mut self, total: usize, chunk: usize, interval: Duration) -> Reply {
        self.body = ReplyBody::Stream {
            total,
            chunk,
            interval,
        };
        self
    }

    /// Wait `delay` before answering.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// A request as the scripted server received it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// Header names lower-cased, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request head was fully read.
    pub at: Instant,
}

impl Captured {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Progress of the most recent streamed body.
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Body bytes written to the socket so far.
    pub sent: AtomicUsize,
    /// The whole body and the final chunk were written.
    pub finished: AtomicBool,
    /// A write failed: the client went away before the end.
    pub aborted: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    routes: HashMap<String, Reply>,
    queue: VecDeque<Reply>,
    requests: Vec<Captured>,
}

/// A scripted HTTP/1.1 server; see the module docs.
#[derive(Debug)]
pub struct Scripted {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stream: Arc<Mutex<Arc<StreamStats>>>,
    task: JoinHandle<()>,
}

impl Scripted {
    /// Start on `127.0.0.1:0`.
    pub async fn start() -> Scripted {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// Start on `ip`, ephemeral port.
    pub async fn start_on(ip: IpAddr) -> Scripted {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stream = Arc::new(Mutex::new(Arc::new(StreamStats::default())));
        let task = {
            let state = Arc::clone(&state);
            let stream = Arc::clone(&stream);
            tokio::spawn(async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = Arc::clone(&state);
                    let stream = Arc::clone(&stream);
                    tokio::spawn(async move {
                        let _ = serve_one(socket, state, stream).await;
                    });
                }
            })
        };
        Scripted {
            addr,
            state,
            stream,
            task,
        }
    }

    /// Answer every request for `path` (query ignored) with `reply`, before the queue.
    pub fn route(&self, path: &str, reply: Reply) -> &Self {
        self.lock().routes.insert(path.to_owned(), reply);
        self
    }

    /// Queue `reply` for the next request no route matches.
    pub fn push(&self, reply: Reply) -> &Self {
        self.lock().queue.push_back(reply);
        self
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Captured> {
        self.lock().requests.clone()
    }

    /// How many requests were received.
    pub fn hits(&self) -> usize {
        self.lock().requests.len()
    }

    /// How many requests were received for `path` (query ignored).
    pub fn hits_for(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path() == path)
            .count()
    }

    /// Paths of every request, in arrival order.
    pub fn paths(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.path().to_owned())
            .collect()
    }

    /// Progress of the most recent streamed body.
    pub fn stream_stats(&self) -> Arc<StreamStats> {
        Arc::clone(&self.stream.lock().expect("stream stats lock"))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<ip>:<port>`.
    pub fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Absolute URL of `path` (starting with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("scripted state lock")
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const MAX_HEAD: usize = 64 * 1024;

async fn serve_one(
    socket: TcpStream,
    state: Arc<Mutex<State>>,
    stream: Arc<Mutex<Arc<StreamStats>>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(socket);
    let mut head = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(()); // closed before a full request
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push(line.trim_end().to_owned());
        if head.iter().map(String::len).sum::<usize>() > MAX_HEAD {
            return Ok(());
        }
    }
    let at = Instant::now();
    let Some(request_line) = head.first() else {
        return Ok(());
    };
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = head[1..]
        .iter()
        .filter_map(|h| h.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await?;

    let captured = Captured {
        method,
        target,
        headers,
        body,
        at,
    };
    let reply = {
        let mut st = state.lock().expect("scripted state lock");
        let reply = st
            .routes
            .get(captured.path())
            .cloned()
            .or_else(|| st.queue.pop_front())
            .unwrap_or_else(|| {
                Reply::status(404)
                    .header("content-type", "text/plain")
                    .body("no scripted reply")
            });
        st.requests.push(captured);
        reply
    };

    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut socket = reader.into_inner();
    let reason = http::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown");
    let mut out = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    let has = |name: &str| {
        reply
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    for (n, v) in &reply.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    match &reply.body {
        ReplyBody::Full(b) if !has("content-length") => {
            out.push_str(&format!("content-length: {}\r\n", b.len()));
        }
        ReplyBody::Full(_) => {}
        ReplyBody::Stream { .. } => out.push_str("transfer-encoding: chunked\r\n"),
    }
    out.push_str("connection: close\r\n\r\n");
    socket.write_all(out.as_bytes()).await?;

    match reply.body {
        ReplyBody::Full(b) => {
            socket.write_all(&b).await?;
        }
        ReplyBody::Stream {
            total,
            chunk,
            interval,
        } => {
            let stats = Arc::new(StreamStats::default());
            *stream.lock().expect("stream stats lock") = Arc::clone(&stats);
            let data = vec![b'x'; chunk.max(1)];
            let mut left = total;
            while left > 0 {
                let n = left.min(data.len());
                let mut frame = format!("{n:x}\r\n").into_bytes();
                frame.extend_from_slice(&data[..n]);
                frame.extend_from_slice(b"\r\n");
                if let Err(e) = async {
                    socket.write_all(&frame).await?;
                    socket.flush().await
                }
                .await
                {
                    stats.aborted.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                stats.sent.fetch_add(n, Ordering::SeqCst);
                left -= n;
                tokio::time::sleep(interval).await;
            }
            if let Err(e) = socket.write_all(b"0\r\n\r\n").await {
                stats.aborted.store(true, Ordering::SeqCst);
                return Err(e);
            }
            stats.finished.store(true, Ordering::SeqCst);
        }
    }
    socket.flush().await?;
    let _ = socket.shutdown().await;
    Ok(())
}
