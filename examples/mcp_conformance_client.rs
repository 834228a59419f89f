//! The client the official MCP conformance suite (`@modelcontextprotocol/conformance`) drives:
//! `mcp_conformance_client <server-url>`, with the scenario's name in `MCP_CONFORMANCE_SCENARIO`
//! and, for scenarios that give credentials, a JSON object in `MCP_CONFORMANCE_CONTEXT`.
//!
//! Every scenario is the same few lines of agent configuration: the agent starts from the MCP
//! server's URL alone and does what the MCP authorization specification asks (protected
//! resource metadata, authorization server discovery, CIMD or dynamic registration, PKCE,
//! scope selection, step-up). The suite's authorization servers approve every request at once,
//! so the authorization hook follows the redirect itself instead of opening a browser.
//!
//! Run by `tests/conformance/run.sh` (see `.ci/run`).

#[path = "support/mcp.rs"]
mod mcp;

use std::sync::Arc;

use agent_oauth::assertion::AssertionSource;
use agent_oauth::discovery::TrustPolicy;
use agent_oauth::grant::IdJagIssuer;
use agent_oauth::{
    Agent, AgentBuilder, AssertionKey, AuthorizationPrompt, ClientAuth, Error, OAuthClient,
};
use mcp::{Failure, McpSession};
use serde_json::{json, Value};
use url::Url;

/// The Client ID Metadata Document URL the suite expects a CIMD client to use.
const CLIENT_METADATA_URL: &str = "https://conformance-test.local/client-metadata.json";
const REDIRECT_URI: &str = "http://127.0.0.1:8765/callback";

#[tokio::main]
async fn main() {
    let scenario = std::env::var("MCP_CONFORMANCE_SCENARIO").unwrap_or_default();
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: MCP_CONFORMANCE_SCENARIO=<name> mcp_conformance_client <server-url>");
        std::process::exit(2);
    };
    match run(&scenario, &url).await {
        Ok(()) => println!("{scenario}: done"),
        Err(e) => {
            eprintln!("{scenario}: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            std::process::exit(1);
        }
    }
}

/// `MCP_CONFORMANCE_CONTEXT`'s string member `name`.
fn context(name: &str) -> Result<String, Failure> {
    let raw = std::env::var("MCP_CONFORMANCE_CONTEXT")?;
    let v: Value = serde_json::from_str(&raw)?;
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("MCP_CONFORMANCE_CONTEXT has no `{name}`").into())
}

/// An agent that knows nothing but the URL it will call.
fn url_first() -> AgentBuilder {
    Agent::builder()
        // The suite's servers run on localhost over plain HTTP.
        .trust(TrustPolicy::any_https().allow_loopback(true))
        .on_event(|e| eprintln!("event: {e:?}"))
}

/// The suite's authorization servers approve at once: follow the authorization request to its
/// redirect and hand the redirect URL back, as a browser would.
async fn approve(prompt: AuthorizationPrompt) -> agent_oauth::Result<Url> {
    eprintln!(
        "authorizing at {} (scope `{}`, {:?})",
        prompt.issuer, prompt.scope, prompt.reason
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::Config(format!("http client: {e}")))?;
    let resp = http
        .get(prompt.url.as_str())
        .send()
        .await
        .map_err(|e| Error::Config(format!("authorization request: {e}")))?;
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Error::Config(format!(
                "authorization endpoint answered {} without a redirect",
                resp.status()
            ))
        })?;
    Url::parse(location).map_err(|e| Error::Config(format!("redirect is not a URL: {e}")))
}

async fn run(scenario: &str, url: &str) -> Result<(), Failure> {
    let agent = match scenario {
        "auth/client-credentials-basic" => {
            url_first()
                .client_id(context("client_id")?)
                .client_auth(ClientAuth::client_secret_basic(context("client_secret")?))
                .build()
                .await?
        }
        "auth/client-credentials-jwt" => {
            let key = AssertionKey::from_pem("ES256", &context("private_key_pem")?)?;
            url_first()
                .client_id(context("client_id")?)
                .client_auth(ClientAuth::private_key_jwt(key))
                .build()
                .await?
        }
        "auth/pre-registration" => {
            url_first()
                .client_id(context("client_id")?)
                .client_auth(ClientAuth::client_secret(context("client_secret")?))
                .on_authorization(REDIRECT_URI, approve)
                .build()
                .await?
        }
        "auth/cross-app-access-complete-flow" => cross_app_access().await?,
        _ => {
            url_first()
                .client_metadata_url(CLIENT_METADATA_URL)
                .client_name("agent-oauth conformance client")
                .on_authorization(REDIRECT_URI, approve)
                .build()
                .await?
        }
    };
    let mut session = McpSession::connect(agent, url, "agent-oauth-conformance").await?;
    let tools = session.list_tools().await?;
    eprintln!(
        "tools: {:?}",
        tools
            .iter()
            .filter_map(|t| t.get("name").and_then(Value::as_str))
            .collect::<Vec<_>>()
    );
    if scenario == "initialize" {
        return Ok(());
    }
    let Some(tool) = tools
        .first()
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    let args = if tool == "add_numbers" {
        json!({"a": 2, "b": 3})
    } else {
        json!({})
    };
    let result = session.call_tool(tool, args).await?;
    eprintln!("{tool}: {result}");
    Ok(())
}

/// Enterprise-managed authorization (SEP-990): the agent learns the MCP server's authorization
/// server from its 401 like any URL-first agent; its tokens there come from ID-JAGs that the
/// identity provider issues for the user's ID token (RFC 8693), redeemed with the JWT bearer
/// grant (RFC 7523), all done by [`IdJagIssuer`].
async fn cross_app_access() -> Result<Agent, Failure> {
    let idp = OAuthClient::builder(
        agent_oauth::AuthorizationServer::new(
            &context("idp_issuer")?,
            agent_oauth::HttpTransport::new()?,
        )?,
        context("idp_client_id")?,
    )
    .build();
    let issuer = IdJagIssuer::new(idp, AssertionSource::fixed(context("idp_id_token")?));
    Ok(url_first()
        .client_id(context("client_id")?)
        .client_auth(ClientAuth::client_secret_basic(context("client_secret")?))
        .enterprise_authorization(Arc::new(issuer))
        .build()
        .await?)
}
