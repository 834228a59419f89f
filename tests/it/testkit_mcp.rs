//! The embedded server's MCP resource at `/mcp`, driven with plain reqwest and tokens from
//! the embedded server's token endpoint (client credentials through `OAuthClient`).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::prelude::{
    ath, challenges_from_headers, fetch_resource_metadata, Agent, AuthorizationServer, ClientAuth,
    DpopKey, HttpTransport, OAuthClient, TestServer, TestServerConfig, TokenParams,
};
use crate::support::server::guard;
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

const BOTH: &str = "application/json, text/event-stream";
const JSON: &str = "application/json";

/// An MCP server whose `tools/call` needs `write`, advertising `read`.
async fn step_up_server() -> TestServer {
    TestServer::start_with(
        TestServerConfig::default()
            .with_mcp_scopes(["read"])
            .with_mcp_tool_scope("write"),
    )
    .await
}

fn client(server: &TestServer) -> OAuthClient {
    let transport = HttpTransport::new().unwrap();
    let issuer = AuthorizationServer::new(server.issuer(), transport).unwrap();
    OAuthClient::builder(issuer, "agent")
        .auth(ClientAuth::client_secret_basic("agent-secret"))
        .build()
}

/// A Bearer access token for `<issuer>/mcp` with `scope`.
async fn token(server: &TestServer, scope: &str) -> String {
    let params = TokenParams::new().scope(scope).resource(server.mcp_url());
    let tokens = guard(client(server).client_credentials(&params))
        .await
        .unwrap();
    tokens.access_token.secret().to_owned()
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

fn initialize(version: &str) -> Value {
    request(
        1,
        "initialize",
        json!({
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "testkit_mcp", "version": "0"},
        }),
    )
}

/// POST `body` to `/mcp`, with `Authorization: Bearer <token>` and `Accept: <accept>` when
/// given.
async fn post(
    server: &TestServer,
    token: Option<&str>,
    accept: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(server.mcp_url())
        .header(CONTENT_TYPE, "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(a) = accept {
        req = req.header(ACCEPT, a);
    }
    guard(req.send()).await.unwrap()
}

/// The JSON body of a JSON answer.
async fn json_body(resp: reqwest::Response) -> Value {
    assert_eq!(resp.headers()[CONTENT_TYPE], "application/json");
    value(resp).await
}

/// Any JSON body.
async fn value(resp: reqwest::Response) -> Value {
    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
}

/// The one `message` event of an event-stream answer, and how many chunks it came in.
async fn sse_body(mut resp: reqwest::Response) -> (Value, usize) {
    assert_eq!(resp.headers()[CONTENT_TYPE], "text/event-stream");
    let mut text = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = guard(resp.chunk()).await.unwrap() {
        chunks += 1;
        text.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(text).unwrap();
    assert!(text.ends_with("\n\n"), "{text:?}");
    let mut lines = text.trim_end().lines();
    assert_eq!(lines.next(), Some("event: message"), "{text:?}");
    let data = lines.next().and_then(|l| l.strip_prefix("data: "));
    assert_eq!(lines.next(), None, "one event with one data line: {text:?}");
    (serde_json::from_str(data.unwrap()).unwrap(), chunks)
}

fn only_challenge(headers: &HeaderMap) -> String {
    let all: Vec<_> = headers.get_all(WWW_AUTHENTICATE).iter().collect();
    assert_eq!(all.len(), 1, "{all:?}");
    all[0].to_str().unwrap().to_owned()
}

fn text_of(result: &Value) -> &str {
    assert_eq!(result["content"][0]["type"], "text", "{result}");
    result["content"][0]["text"].as_str().unwrap()
}

#[tokio::test]
async fn testkit_mcp_401_challenge_names_the_metadata_and_the_scope() {
    let server = step_up_server().await;
    let metadata_url = format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        server.issuer()
    );
    let resp = post(&server, None, Some(BOTH), &initialize("2025-11-25")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = only_challenge(resp.headers());
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let parsed = challenges_from_headers(resp.headers()).unwrap();
    assert_eq!(parsed.len(), 1);
    assert!(parsed[0].is_scheme("Bearer"));
    assert_eq!(parsed[0].resource_metadata(), Some(metadata_url.as_str()));
    assert_eq!(parsed[0].scope(), Some("read"));
    assert_eq!(parsed[0].error(), None);

    // The metadata names the embedded issuer, the MCP scopes and the tool scope; the crate's
    // own RFC 9728 discovery accepts it for the MCP URL.
    let mcp_url = url::Url::parse(&server.mcp_url()).unwrap();
    let md = guard(fetch_resource_metadata(
        &HttpTransport::new().unwrap(),
        &mcp_url,
        None,
    ))
    .await
    .unwrap();
    assert_eq!(md.resource, server.mcp_url());
    assert_eq!(
        md.authorization_servers,
        Some(vec![server.issuer().to_owned()])
    );
    assert_eq!(
        md.scopes_supported,
        Some(vec!["read".to_owned(), "write".to_owned()])
    );

    // A token for another resource (the default audience is the issuer) is an invalid_token.
    let params = TokenParams::new().scope("read");
    let other = guard(client(&server).client_credentials(&params))
        .await
        .unwrap();
    let resp = post(
        &server,
        Some(other.access_token.secret()),
        Some(BOTH),
        &initialize("2025-11-25"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let parsed = challenges_from_headers(resp.headers()).unwrap();
    assert_eq!(parsed[0].error(), Some("invalid_token"));
    assert_eq!(parsed[0].resource_metadata(), Some(metadata_url.as_str()));

    let stats = server.stats().mcp;
    assert_eq!((stats.initialize, stats.rejections), (2, 2));
}

#[tokio::test]
async fn testkit_mcp_401_without_configured_scopes_names_no_scope() {
    let server = TestServer::start().await;
    let resp = post(
        &server,
        None,
        Some(JSON),
        &request(1, "tools/list", json!({})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let challenge = only_challenge(resp.headers());
    assert_eq!(
        challenge,
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            server.issuer()
        )
    );
    let md = value(
        guard(reqwest::get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            server.issuer()
        )))
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        md["scopes_supported"],
        json!(["read", "write", "admin", "offline_access", "openid"])
    );
}

#[tokio::test]
async fn testkit_mcp_initialize_list_and_call_over_json() {
    let server = step_up_server().await;
    let token = token(&server, "read write").await;
    let t = Some(token.as_str());

    let resp = post(&server, t, Some(JSON), &initialize("2025-06-18")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!session.is_empty());
    let init = json_body(resp).await;
    assert_eq!(init["jsonrpc"], "2.0");
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2025-06-18");
    assert!(
        init["result"]["capabilities"]["tools"].is_object(),
        "{init}"
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "agent-oauth-testkit");

    // An unknown revision gets the latest one.
    let resp = post(&server, t, Some(JSON), &initialize("2024-11-05")).await;
    let init = json_body(resp).await;
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let resp = post(&server, t, Some(JSON), &initialized).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(resp.bytes().await.unwrap().is_empty());

    let list =
        json_body(post(&server, t, Some(JSON), &request(2, "tools/list", json!({}))).await).await;
    assert_eq!(list["id"], 2);
    let tools = list["result"]["tools"].as_array().unwrap();
    let names: Vec<_> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["echo", "add"]);
    assert_eq!(
        tools[0]["inputSchema"]["properties"]["text"]["type"],
        "string"
    );
    assert_eq!(tools[1]["inputSchema"]["required"], json!(["a", "b"]));

    let echo = request(
        3,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hello"}}),
    );
    let answer = json_body(post(&server, t, Some(JSON), &echo).await).await;
    assert_eq!(text_of(&answer["result"]), "hello");
    let add = request(
        4,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 2, "b": 40}}),
    );
    let answer = json_body(post(&server, t, Some(JSON), &add).await).await;
    assert_eq!(text_of(&answer["result"]), "42");

    let unknown = json_body(
        post(
            &server,
            t,
            Some(JSON),
            &request(5, "resources/list", json!({})),
        )
        .await,
    )
    .await;
    assert_eq!(unknown["id"], 5);
    assert_eq!(unknown["error"]["code"], -32601);

    let stats = server.stats().mcp;
    assert_eq!(
        (
            stats.initialize,
            stats.notifications,
            stats.tools_list,
            stats.tools_call,
            stats.other,
            stats.rejections
        ),
        (2, 1, 1, 2, 1, 0)
    );
}

#[tokio::test]
async fn testkit_mcp_initialize_list_and_call_over_sse() {
    let server = step_up_server().await;
    let token = token(&server, "read write").await;
    let t = Some(token.as_str());

    let resp = post(&server, t, Some(BOTH), &initialize("2025-11-25")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("mcp-session-id"));
    let (init, chunks) = sse_body(resp).await;
    assert!(chunks >= 2, "the event came in {chunks} chunk(s)");
    assert_eq!(init["id"], 1);
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");

    let (list, _) = sse_body(
        post(
            &server,
            t,
            Some("text/event-stream"),
            &request(2, "tools/list", json!({})),
        )
        .await,
    )
    .await;
    assert_eq!(list["result"]["tools"].as_array().unwrap().len(), 2);

    let add = request(
        3,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1.5, "b": 2}}),
    );
    let (answer, chunks) = sse_body(post(&server, t, Some(BOTH), &add).await).await;
    assert!(chunks >= 2, "the event came in {chunks} chunk(s)");
    assert_eq!(answer["id"], 3);
    assert_eq!(text_of(&answer["result"]), "3.5");

    // A notification is a 202 with no body, not an event stream.
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let resp = post(&server, t, Some(BOTH), &initialized).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn testkit_mcp_tools_call_without_the_tool_scope_is_insufficient_scope() {
    let server = step_up_server().await;
    let read = token(&server, "read").await;
    let call = request(
        7,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "x"}}),
    );

    // The token is good for the other methods ...
    let list = post(
        &server,
        Some(&read),
        Some(JSON),
        &request(1, "tools/list", json!({})),
    )
    .await;
    assert_eq!(list.status(), StatusCode::OK);

    // ... but tools/call needs `write`.
    let resp = post(&server, Some(&read), Some(BOTH), &call).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let challenge = only_challenge(resp.headers());
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    let parsed = challenges_from_headers(resp.headers()).unwrap();
    assert_eq!(parsed[0].error(), Some("insufficient_scope"));
    assert_eq!(parsed[0].scope(), Some("write"));
    assert_eq!(
        parsed[0].resource_metadata(),
        Some(
            format!(
                "{}/.well-known/oauth-protected-resource/mcp",
                server.issuer()
            )
            .as_str()
        )
    );
    let body = value(resp).await;
    assert_eq!(body["error"], "insufficient_scope");

    // A token with the tool scope calls the tool.
    let write = token(&server, "read write").await;
    let answer = json_body(post(&server, Some(&write), Some(JSON), &call).await).await;
    assert_eq!(text_of(&answer["result"]), "x");

    let stats = server.stats().mcp;
    assert_eq!((stats.tools_call, stats.rejections), (2, 1));
}

#[tokio::test]
async fn testkit_mcp_requests_accepting_neither_json_nor_event_stream_get_406() {
    let server = TestServer::start().await;
    let token = token(&server, "read").await;
    for accept in [None, Some("*/*"), Some("text/html")] {
        let resp = post(&server, Some(&token), accept, &initialize("2025-11-25")).await;
        assert_eq!(
            resp.status(),
            StatusCode::NOT_ACCEPTABLE,
            "Accept: {accept:?}"
        );
        let body = value(resp).await;
        assert_eq!(body["jsonrpc"], "2.0");
        assert!(body["error"]["code"].is_i64(), "{body}");
    }
    // The token is checked first: without one the answer is a 401 whatever `Accept` says.
    let resp = post(&server, None, Some("text/html"), &initialize("2025-11-25")).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn testkit_mcp_malformed_messages_and_get_are_refused() {
    let server = TestServer::start().await;
    let token = token(&server, "read").await;
    let resp = guard(
        reqwest::Client::new()
            .post(server.mcp_url())
            .bearer_auth(&token)
            .header(ACCEPT, BOTH)
            .body("{not json")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body = value(resp).await;
    assert_eq!(body["error"]["code"], -32700);

    let batch = json!([request(1, "ping", json!({}))]);
    let resp = post(&server, Some(&token), Some(BOTH), &batch).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);

    let resp = guard(
        reqwest::Client::new()
            .get(server.mcp_url())
            .bearer_auth(&token)
            .header(ACCEPT, "text/event-stream")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn testkit_mcp_accepts_dpop_bound_tokens_with_a_proof() {
    let server = TestServer::start().await;
    let key = DpopKey::generate();
    let transport = HttpTransport::new().unwrap();
    let issuer = AuthorizationServer::new(server.issuer(), transport).unwrap();
    let client = OAuthClient::builder(issuer, "agent")
        .auth(ClientAuth::client_secret_basic("agent-secret"))
        .dpop(key.clone())
        .build();
    let params = TokenParams::new().scope("read").resource(server.mcp_url());
    let tokens = guard(client.client_credentials(&params)).await.unwrap();
    let token = tokens.access_token.secret();
    let url = url::Url::parse(&server.mcp_url()).unwrap();
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let proof = key
        .proof("POST", &url, iat, None, Some(&ath(token)))
        .unwrap();
    let resp = guard(
        reqwest::Client::new()
            .post(server.mcp_url())
            .header(AUTHORIZATION, format!("DPoP {token}"))
            .header("dpop", proof)
            .header(ACCEPT, JSON)
            .body(request(1, "tools/list", json!({})).to_string())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(json_body(resp).await["result"]["tools"][1]["name"], "add");

    // The same token as a Bearer token is refused.
    let resp = post(
        &server,
        Some(token),
        Some(JSON),
        &request(2, "tools/list", json!({})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let parsed = challenges_from_headers(resp.headers()).unwrap();
    assert!(parsed.iter().all(|c| c.error() == Some("invalid_token")));
}

/// The crate's `Agent` finds the MCP resource from its 401, and steps up to the tool scope on
/// the 403.
#[tokio::test]
async fn testkit_mcp_agent_discovers_the_resource_and_steps_up_for_tools_call() {
    let server = step_up_server().await;
    let agent = guard(
        Agent::builder()
            .issuer(server.issuer())
            .client_id("agent")
            .client_auth(ClientAuth::client_secret("agent-secret"))
            .scope("read")
            .allow_scope_upgrade(true)
            .build(),
    )
    .await
    .unwrap();
    let list = guard(
        agent
            .post(server.mcp_url())
            .header("accept", BOTH)
            .json(&request(1, "tools/list", json!({})))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(list.status(), 200);
    assert_eq!(agent.resources(), vec![server.mcp_url()]);

    let call = guard(
        agent
            .post(server.mcp_url())
            .header("accept", JSON)
            .json(&request(
                2,
                "tools/call",
                json!({"name": "echo", "arguments": {"text": "up"}}),
            ))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(call.status(), 200);
    let answer: Value = serde_json::from_slice(call.body()).unwrap();
    assert_eq!(text_of(&answer["result"]), "up");

    // One token for the first call and one with the tool scope for the upgrade. Each method
    // succeeded once; every other request was refused: the 401 without a token, the 403, and
    // the `use_dpop_nonce` answers to proofs that carried the token endpoint's nonce (the
    // authorization server and the resource share an origin but not their nonces).
    let stats = server.stats();
    assert_eq!(stats.grants.client_credentials, 2);
    let mcp = stats.mcp;
    assert!(mcp.tools_call >= 2, "{mcp:?}");
    assert_eq!(
        mcp.rejections,
        mcp.tools_list - 1 + mcp.tools_call - 1,
        "{mcp:?}"
    );
}
