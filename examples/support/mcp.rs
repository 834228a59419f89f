//! A minimal MCP client over Streamable HTTP (MCP 2025-11-25 transport), on an [`Agent`]: every
//! request goes through the agent, which finds the server's authorization server, registers,
//! authorizes and steps up as needed. JSON and `text/event-stream` answers are both read; the
//! latter as a stream, event by event, until the answer to the request arrives.
//!
//! Only what the examples need: `initialize`, `notifications/initialized`, `tools/list`,
//! `tools/call`.

use agent_oauth::transport::SseEvent;
use agent_oauth::Agent;
use serde_json::{json, Value};

/// The protocol version this client speaks.
pub(crate) const PROTOCOL_VERSION: &str = "2025-11-25";

pub(crate) type Failure = Box<dyn std::error::Error + Send + Sync>;

/// One MCP session with one server.
pub(crate) struct McpSession {
    agent: Agent,
    url: String,
    session_id: Option<String>,
    protocol_version: Option<String>,
    next_id: u64,
}

impl McpSession {
    /// Connect: `initialize`, then `notifications/initialized`.
    pub(crate) async fn connect(
        agent: Agent,
        url: &str,
        client_name: &str,
    ) -> Result<Self, Failure> {
        let mut s = McpSession {
            agent,
            url: url.to_owned(),
            session_id: None,
            protocol_version: None,
            next_id: 1,
        };
        let init = s
            .request(
                "initialize",
                json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": client_name, "version": env!("CARGO_PKG_VERSION")},
                }),
            )
            .await?;
        s.protocol_version = init
            .get("protocolVersion")
            .and_then(Value::as_str)
            .map(str::to_owned);
        s.notify("notifications/initialized").await?;
        Ok(s)
    }

    /// The server's tools.
    pub(crate) async fn list_tools(&mut self) -> Result<Vec<Value>, Failure> {
        let r = self.request("tools/list", json!({})).await?;
        Ok(r.get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// Call a tool.
    pub(crate) async fn call_tool(
        &mut self,
        name: &str,
        arguments: Value,
    ) -> Result<Value, Failure> {
        self.request("tools/call", json!({"name": name, "arguments": arguments}))
            .await
    }

    /// A JSON-RPC request; its `result`, or its `error` as an error.
    pub(crate) async fn request(&mut self, method: &str, params: Value) -> Result<Value, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let answer = self
            .post(&body, Some(id))
            .await?
            .ok_or_else(|| format!("{method}: the server sent no answer"))?;
        if let Some(err) = answer.get("error") {
            return Err(format!("{method}: JSON-RPC error {err}").into());
        }
        Ok(answer.get("result").cloned().unwrap_or(Value::Null))
    }

    /// A JSON-RPC notification (no answer expected).
    pub(crate) async fn notify(&mut self, method: &str) -> Result<(), Failure> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        self.post(&body, None).await.map(|_| ())
    }

    async fn post(&mut self, body: &Value, id: Option<u64>) -> Result<Option<Value>, Failure> {
        let mut req = self
            .agent
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .json(body);
        if let Some(sid) = &self.session_id {
            req = req.header("mcp-session-id", sid.as_str());
        }
        if let Some(v) = &self.protocol_version {
            req = req.header("mcp-protocol-version", v.as_str());
        }
        let resp = req.send_stream().await?;
        let status = resp.status();
        if let Some(sid) = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session_id = Some(sid.to_owned());
        }
        if status == http::StatusCode::ACCEPTED || id.is_none() {
            return Ok(None);
        }
        let is_sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("text/event-stream"));
        if !status.is_success() {
            let text = resp.into_body().collect_capped(64 * 1024).await?;
            return Err(format!(
                "MCP server answered {status}: {}",
                String::from_utf8_lossy(&text)
            )
            .into());
        }
        if !is_sse {
            let bytes = resp.into_body().collect_capped(16 * 1024 * 1024).await?;
            return Ok(Some(serde_json::from_slice(&bytes)?));
        }
        // Read events until the answer to `id` arrives (requests and notifications the server
        // sends first are skipped: this client offers no capabilities).
        let mut events = resp.into_body().sse();
        while let Some(event) = events.next_event().await? {
            if let Some(answer) = answer_to(&event, id) {
                return Ok(Some(answer));
            }
        }
        Err("the event stream ended before the answer arrived".into())
    }
}

/// The JSON-RPC answer to `id` carried by `event`, if it is one.
fn answer_to(event: &SseEvent, id: Option<u64>) -> Option<Value> {
    if event.event != "message" || event.data.is_empty() {
        return None;
    }
    let v: Value = serde_json::from_str(&event.data).ok()?;
    let is_answer = v.get("result").is_some() || v.get("error").is_some();
    (is_answer && v.get("id").and_then(Value::as_u64) == id).then_some(v)
}
