//! A minimal MCP server at `/mcp`, protected like `/api`.
//!
//! It speaks JSON-RPC 2.0 over MCP Streamable HTTP (revision 2025-11-25, "Transports"):
//! `initialize`, `ping`, `tools/list` and `tools/call` with two tools, `echo` and `add`;
//! notifications and client responses get 202. A request whose `Accept` lists
//! `text/event-stream` is answered with one SSE `message` event, sent in two chunks; otherwise
//! with `application/json`. A request that accepts neither gets 406.
//!
//! Every request needs an access token for the resource `<issuer>/mcp`, checked by
//! [`Shared::check_access`] (Bearer or DPoP, as at `/api`). The challenges name the RFC 9728
//! metadata at `/.well-known/oauth-protected-resource/mcp` and offer Bearer only (MCP
//! authorization, revision 2025-11-25, uses Bearer), or DPoP only when the server requires it.
//! `tools/call` can be made to need a scope ([`TestServerConfig::with_mcp_tool_scope`]) so
//! that step-up authorization can be tested. The resource settings `resource_dpop_required`
//! and `resource_require_dpop_nonce` apply here as at `/api`.
//!
//! Not implemented: the GET stream (GET answers 405), session termination, resumption, and
//! checking `Mcp-Session-Id` (one is issued by `initialize` and never required).
//!
//! [`TestServerConfig::with_mcp_tool_scope`]: super::TestServerConfig::with_mcp_tool_scope

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body::Frame;
use serde_json::{json, Value};

use super::http_util::add_nonce;
use super::jose::random_token;
use super::resource::Protected;
use super::state::{bump, Shared};

/// The MCP endpoint.
const PATH: &str = "/mcp";
/// Its RFC 9728 metadata (RFC 9728 §3.1: the resource's path after the well-known prefix).
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";
/// Protocol revisions `initialize` agrees to when the client asks for one of them.
const PROTOCOL_VERSIONS: [&str; 3] = ["2025-03-26", "2025-06-18", "2025-11-25"];
/// The revision `initialize` answers with otherwise.
const LATEST_PROTOCOL_VERSION: &str = "2025-11-25";
/// The pause between the chunks of an event stream, so that each leaves in its own write.
const CHUNK_PAUSE: Duration = Duration::from_millis(10);

/// Requests to the MCP resource at `/mcp`, by JSON-RPC method
/// ([`Stats::mcp`](super::Stats::mcp)). Each POST is counted once, before its access token is
/// checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct McpStats {
    /// `initialize` requests.
    pub initialize: u64,
    /// `tools/list` requests.
    pub tools_list: u64,
    /// `tools/call` requests.
    pub tools_call: u64,
    /// Notifications and responses from the client (nothing to answer but 202).
    pub notifications: u64,
    /// Requests for other methods, and bodies that are not a JSON-RPC 2.0 message.
    pub other: u64,
    /// Requests refused by the access token check (400, 401 or 403).
    pub rejections: u64,
}

#[derive(Debug, Default)]
pub(crate) struct McpCounters {
    initialize: AtomicU64,
    tools_list: AtomicU64,
    tools_call: AtomicU64,
    notifications: AtomicU64,
    other: AtomicU64,
    rejections: AtomicU64,
}

impl McpCounters {
    pub(crate) fn snapshot(&self) -> McpStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        McpStats {
            initialize: g(&self.initialize),
            tools_list: g(&self.tools_list),
            tools_call: g(&self.tools_call),
            notifications: g(&self.notifications),
            other: g(&self.other),
            rejections: g(&self.rejections),
        }
    }

    fn count(&self, message: &Message) {
        bump(match message {
            Message::Request { method, .. } => match method.as_str() {
                "initialize" => &self.initialize,
                "tools/list" => &self.tools_list,
                "tools/call" => &self.tools_call,
                _ => &self.other,
            },
            Message::Notification => &self.notifications,
            Message::Invalid { .. } => &self.other,
        });
    }
}

/// The routes of the MCP resource, to merge into the server's router.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(PATH, post(handle))
        .route(METADATA_PATH, get(metadata))
}

impl Shared {
    /// The MCP resource, `<issuer>/mcp`.
    pub(crate) fn mcp(&self) -> Protected {
        let scopes = &self.config.mcp_scopes;
        Protected {
            resource: self.endpoint(PATH),
            metadata_url: self.endpoint(METADATA_PATH),
            offer_dpop: false,
            dpop_required: self.config.resource_dpop_required,
            challenge_scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
        }
    }

    /// `scopes_supported` of the MCP resource: the configured MCP scopes (else every scope the
    /// server knows) and the `tools/call` scope.
    fn mcp_scopes_supported(&self) -> Vec<String> {
        let mut scopes = if self.config.mcp_scopes.is_empty() {
            self.config.scopes.clone()
        } else {
            self.config.mcp_scopes.clone()
        };
        if let Some(tool) = &self.config.mcp_tool_scope {
            if !scopes.contains(tool) {
                scopes.push(tool.clone());
            }
        }
        scopes
    }
}

async fn metadata(State(s): State<Arc<Shared>>) -> Response {
    let scopes = s.mcp_scopes_supported();
    Json(s.protected_metadata(&s.mcp(), &scopes, "agent-oauth testkit MCP server")).into_response()
}

/// A JSON-RPC 2.0 message from the client.
#[derive(Debug)]
enum Message {
    /// A request: a method call with an id to answer.
    Request {
        id: Value,
        method: String,
        params: Value,
    },
    /// A notification or a response: nothing to answer.
    Notification,
    /// Not a JSON-RPC 2.0 message: the error code and message to answer with.
    Invalid { code: i64, message: &'static str },
}

impl Message {
    fn parse(body: &[u8]) -> Message {
        let invalid = Message::Invalid {
            code: -32600,
            message: "Invalid Request",
        };
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Message::Invalid {
                code: -32700,
                message: "Parse error",
            };
        };
        let Some(o) = value.as_object() else {
            return invalid;
        };
        if o.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return invalid;
        }
        // MCP request ids are strings or integers, never null.
        let id = o
            .get("id")
            .filter(|id| id.is_string() || id.is_i64() || id.is_u64());
        match (o.get("method").and_then(Value::as_str), id) {
            (Some(method), Some(id)) => Message::Request {
                id: id.clone(),
                method: method.to_owned(),
                params: o.get("params").cloned().unwrap_or_else(|| json!({})),
            },
            (Some(_), None) if !o.contains_key("id") => Message::Notification,
            (None, Some(_)) if o.contains_key("result") || o.contains_key("error") => {
                Message::Notification
            }
            _ => invalid,
        }
    }
}

/// How the client accepts answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    EventStream,
}

/// The answer format from `Accept`: an event stream when listed, else JSON when listed.
fn format(headers: &HeaderMap) -> Option<Format> {
    let types: Vec<String> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    if types.iter().any(|t| t == "text/event-stream") {
        Some(Format::EventStream)
    } else if types.iter().any(|t| t == "application/json") {
        Some(Format::Json)
    } else {
        None
    }
}

/// A JSON-RPC error response without a request to answer, with `status`.
fn error_response(status: StatusCode, code: i64, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, Json(body)).into_response()
}

async fn handle(
    State(s): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let message = Message::parse(&body);
    s.counters.mcp.count(&message);
    let required_scope = match &message {
        Message::Request { method, .. } if method == "tools/call" => {
            s.config.mcp_tool_scope.as_deref()
        }
        _ => None,
    };
    let accepted = match s.check_access(&s.mcp(), &method, PATH, &headers, required_scope) {
        Ok(accepted) => accepted,
        Err(refusal) => {
            bump(&s.counters.mcp.rejections);
            return refusal.response();
        }
    };
    let mut response = answer(message, &headers);
    add_nonce(response.headers_mut(), accepted.nonce.as_deref());
    response
}

/// The answer to an authorized message.
fn answer(message: Message, headers: &HeaderMap) -> Response {
    let Some(format) = format(headers) else {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            -32000,
            "Not Acceptable: Accept must list application/json or text/event-stream",
        );
    };
    if let Some(version) = headers.get("mcp-protocol-version") {
        let known = version
            .to_str()
            .is_ok_and(|v| PROTOCOL_VERSIONS.contains(&v.trim()));
        if !known {
            return error_response(
                StatusCode::BAD_REQUEST,
                -32000,
                "Bad Request: unsupported MCP-Protocol-Version",
            );
        }
    }
    let (id, method, params) = match message {
        Message::Request { id, method, params } => (id, method, params),
        Message::Notification => return StatusCode::ACCEPTED.into_response(),
        Message::Invalid { code, message } => {
            return error_response(StatusCode::BAD_REQUEST, code, message)
        }
    };
    let body = match call(&method, &params) {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
        }
    };
    let mut response = match format {
        Format::Json => Json(body).into_response(),
        Format::EventStream => event_stream(&body),
    };
    if method == "initialize" {
        if let Ok(v) = HeaderValue::from_str(&random_token()) {
            response.headers_mut().insert("mcp-session-id", v);
        }
    }
    response
}

/// The result of a method call, or a JSON-RPC error code and message.
fn call(method: &str, params: &Value) -> Result<Value, (i64, String)> {
    match method {
        "initialize" => {
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| PROTOCOL_VERSIONS.contains(v))
                .unwrap_or(LATEST_PROTOCOL_VERSION);
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "agent-oauth-testkit", "version": env!("CARGO_PKG_VERSION")},
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": [
            {
                "name": "echo",
                "description": "Returns its text argument.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
            },
            {
                "name": "add",
                "description": "Adds two numbers.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                    "required": ["a", "b"],
                },
            },
        ]})),
        "tools/call" => call_tool(params),
        _ => Err((-32601, format!("Method not found: {method}"))),
    }
}

/// `tools/call`: an unknown tool is a protocol error; bad arguments are a tool error
/// (`isError`), as MCP's "Tools" section asks.
fn call_tool(params: &Value) -> Result<Value, (i64, String)> {
    let text = |text: &str, is_error: bool| {
        let mut result = json!({"content": [{"type": "text", "text": text}]});
        if is_error {
            result["isError"] = json!(true);
        }
        result
    };
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let args = params.get("arguments").unwrap_or(&Value::Null);
    match name {
        "echo" => Ok(match args.get("text").and_then(Value::as_str) {
            Some(t) => text(t, false),
            None => text("echo needs a string argument `text`", true),
        }),
        "add" => {
            let (a, b) = (args.get("a"), args.get("b"));
            let integers = a
                .and_then(Value::as_i64)
                .zip(b.and_then(Value::as_i64))
                .and_then(|(a, b)| a.checked_add(b));
            let sum = match integers {
                Some(sum) => Some(sum.to_string()),
                None => a
                    .and_then(Value::as_f64)
                    .zip(b.and_then(Value::as_f64))
                    .map(|(a, b)| (a + b).to_string()),
            };
            Ok(match sum {
                Some(sum) => text(&sum, false),
                None => text("add needs number arguments `a` and `b`", true),
            })
        }
        _ => Err((-32602, format!("Unknown tool: {name}"))),
    }
}

/// `body` as one SSE `message` event, split into two chunks inside its `data` line.
fn event_stream(body: &Value) -> Response {
    let data = body.to_string();
    let mut cut = data.len() / 2;
    while !data.is_char_boundary(cut) {
        cut -= 1;
    }
    let (head, tail) = data.split_at(cut);
    let chunks = Chunks {
        frames: VecDeque::from([
            Bytes::from(format!("event: message\ndata: {head}")),
            Bytes::from(format!("{tail}\n\n")),
        ]),
        pause: None,
    };
    let mut response = Body::new(chunks).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A body sent frame by frame, with [`CHUNK_PAUSE`] between frames.
struct Chunks {
    frames: VecDeque<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(pause) = this.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let Some(frame) = this.frames.pop_front() else {
            return Poll::Ready(None);
        };
        if !this.frames.is_empty() {
            this.pause = Some(Box::pin(tokio::time::sleep(CHUNK_PAUSE)));
        }
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified() {
        let request = Message::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        assert!(matches!(request, Message::Request { ref method, .. } if method == "tools/list"));
        let notification = Message::parse(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#);
        assert!(matches!(notification, Message::Notification));
        let response = Message::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#);
        assert!(matches!(response, Message::Notification));
        for (body, code) in [
            (&b"{"[..], -32700),
            (br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, -32600),
            (br#"{"id":1,"method":"ping"}"#, -32600),
            (br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, -32600),
        ] {
            assert!(
                matches!(Message::parse(body), Message::Invalid { code: c, .. } if c == code),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn accept_selects_the_format() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, HeaderValue::from_static(v));
            format(&h)
        };
        assert_eq!(
            with("application/json, text/event-stream"),
            Some(Format::EventStream)
        );
        assert_eq!(with("Application/JSON; q=0.9"), Some(Format::Json));
        assert_eq!(with("*/*"), None);
        assert_eq!(format(&HeaderMap::new()), None);
    }

    #[test]
    fn tools_answer_text() {
        let text = |v: Value| v["content"][0]["text"].as_str().map(str::to_owned);
        let add = |a: Value, b: Value| {
            call_tool(&json!({"name": "add", "arguments": {"a": a, "b": b}})).ok()
        };
        assert_eq!(add(json!(2), json!(3)).and_then(text), Some("5".to_owned()));
        assert_eq!(
            add(json!(0.5), json!(2)).and_then(text),
            Some("2.5".to_owned())
        );
        let bad = add(json!("x"), json!(1));
        assert_eq!(bad.map(|v| v["isError"].clone()), Some(json!(true)));
        let echo = call_tool(&json!({"name": "echo", "arguments": {"text": "hi"}})).ok();
        assert_eq!(echo.and_then(text), Some("hi".to_owned()));
        assert_eq!(
            call_tool(&json!({"name": "nope"})).err().map(|e| e.0),
            Some(-32602)
        );
    }
}
