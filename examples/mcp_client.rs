//! An MCP client that is given a server URL and nothing else: it initializes, lists the tools
//! and calls one. The agent does the MCP authorization flow on the first request: the 401
//! names the server's protected resource metadata, that names the authorization server, the
//! agent registers there (a Client ID Metadata Document where the server supports it, else
//! dynamic registration), asks the user to authorize (here: the embedded server approves at
//! once), and steps up when a tool needs more scope.
//!
//! Run against the embedded server (started in this process):
//! `cargo run --example mcp_client --features testkit`
//!
//! Or against any MCP server (the authorization URL is printed; the browser's redirect comes
//! back to a loopback listener): `cargo run --example mcp_client --features testkit -- <url>`

#[path = "support/mcp.rs"]
mod mcp;

use std::sync::{Arc, Mutex};

use agent_oauth::discovery::TrustPolicy;
use agent_oauth::grant::LoopbackRedirect;
use agent_oauth::testkit::{TestServer, TestServerConfig};
use agent_oauth::{Agent, AgentEvent, AuthorizationPrompt, Error};
use mcp::{Failure, McpSession};
use serde_json::{json, Value};
use url::Url;

fn print_event(e: &AgentEvent) {
    match e {
        AgentEvent::ClientRegistered { issuer, client_id } => {
            println!("   event: registered as `{client_id}` at {issuer}")
        }
        AgentEvent::AuthorizationRequired {
            issuer,
            scope,
            reason,
            ..
        } => println!("   event: authorization required at {issuer} ({reason}, scope \"{scope}\")"),
        AgentEvent::TokenAcquired { scope, .. } => {
            println!("   event: token acquired (scope \"{scope}\")")
        }
        AgentEvent::TokenRejected { error, .. } => println!("   event: token rejected ({error})"),
        _ => {}
    }
}

/// The embedded server approves every authorization request at once: follow its redirect as
/// a browser would.
async fn approve_embedded(prompt: AuthorizationPrompt) -> agent_oauth::Result<Url> {
    println!("   authorize: {}", prompt.url);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;
    let resp = http
        .get(prompt.url.as_str())
        .send()
        .await
        .map_err(|e| Error::Config(e.to_string()))?;
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::Config("the authorization endpoint did not redirect".into()))?;
    Url::parse(location).map_err(|e| Error::Config(e.to_string()))
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    let given = std::env::args().nth(1);
    let mut embedded = None;
    let url = match &given {
        Some(u) => u.clone(),
        None => {
            let server = TestServer::start_with(
                TestServerConfig::default()
                    .with_scopes(["mcp:read", "mcp:tools", "offline_access"])
                    .with_dynamic_registration(true)
                    .with_mcp_scopes(["mcp:read"])
                    .with_mcp_tool_scope("mcp:tools"),
            )
            .await;
            println!("embedded MCP server at {}", server.mcp_url());
            let url = server.mcp_url();
            embedded = Some(server);
            url
        }
    };

    let builder = Agent::builder()
        .trust(TrustPolicy::any_https().allow_loopback(true))
        .client_name("agent-oauth MCP example")
        .on_event(print_event);
    let agent = if embedded.is_some() {
        builder
            .on_authorization("http://127.0.0.1:8765/callback", approve_embedded)
            .build()
            .await?
    } else {
        // A real server: the user opens the URL; the redirect comes back to this listener.
        let listener = LoopbackRedirect::bind().await?;
        let redirect_uri = listener.redirect_uri().to_owned();
        let listener = Arc::new(Mutex::new(Some(listener)));
        builder
            .on_authorization(redirect_uri, move |prompt: AuthorizationPrompt| {
                let listener = listener.lock().ok().and_then(|mut l| l.take());
                async move {
                    println!("open this URL to authorize the agent:\n  {}", prompt.url);
                    match listener {
                        Some(l) => l.wait().await,
                        None => Err(Error::Config("only one authorization per run".into())),
                    }
                }
            })
            .build()
            .await?
    };

    println!("1. initialize {url}");
    let mut session = McpSession::connect(agent.clone(), &url, "agent-oauth-mcp-example").await?;
    println!("   authorization servers: {:?}", agent.issuers());

    println!("2. tools/list");
    let tools = session.list_tools().await?;
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .collect();
    println!("   tools: {names:?}");

    let Some(tool) = names.first().copied() else {
        println!("   the server offers no tools");
        return Ok(());
    };
    println!("3. tools/call {tool}");
    let args = match tool {
        "echo" => json!({"text": "hello from agent-oauth"}),
        "add" | "add_numbers" => json!({"a": 2, "b": 3}),
        _ => json!({}),
    };
    let result = session.call_tool(tool, args).await?;
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    println!("   result: {text}");
    if embedded.is_some() && !text.contains("hello from agent-oauth") {
        return Err(format!("unexpected tool result: {result}").into());
    }
    println!("done");
    Ok(())
}
