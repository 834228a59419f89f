//! Agents built without an issuer: each resource's authorization server is learnt from its
//! 401 (RFC 9728, or the resource's origin for MCP 2025-03-26 servers), checked against the
//! trust policy, and gets its own client; a token from one server never goes to another's
//! resource.

use base64::Engine as _;
use serde_json::Value;

use std::sync::{Arc, Mutex};

use crate::support::prelude::{Agent, AgentEvent, ClientAuth, Error, TestServer, TrustPolicy};
use crate::support::server::{guard, Reply, Scripted};

/// The unverified JWT payload of `token`.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

/// An agent without an issuer that accepts any HTTPS (and loopback) issuer, with the embedded
/// server's `agent` client at each.
async fn open_agent() -> Agent {
    Agent::builder()
        .trust(TrustPolicy::any_https().allow_loopback(true))
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .build()
        .await
        .expect("agent")
}

async fn two_server_agent(a: &TestServer, b: &TestServer, rejected: Rejections) -> Agent {
    Agent::builder()
        .on_event(move |e| {
            if let AgentEvent::TokenRejected { error, origin, .. } = e {
                rejected
                    .lock()
                    .expect("events")
                    .push((origin.clone(), error.clone()));
            }
        })
        .trust(TrustPolicy::issuers([a.issuer(), b.issuer()]))
        .client_for_issuer(
            a.issuer(),
            "agent",
            ClientAuth::client_secret("agent-secret"),
        )
        .client_for_issuer(
            b.issuer(),
            "agent-post",
            ClientAuth::client_secret_post("agent-post-secret"),
        )
        .build()
        .await
        .expect("agent")
}

type Rejections = Arc<Mutex<Vec<(String, String)>>>;

#[tokio::test]
async fn url_first_agent_calls_resources_of_two_authorization_servers() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let rejected = Rejections::default();
    let agent = two_server_agent(&a, &b, rejected.clone()).await;
    assert_eq!(agent.issuer(), None);
    assert!(agent.issuers().is_empty());

    for (server, path) in [(&a, "x"), (&b, "y"), (&a, "z")] {
        let resp = guard(
            agent
                .get(format!("{}/{path}", server.resource_url()))
                .send(),
        )
        .await
        .expect("call");
        assert_eq!(resp.status(), 200, "{}", server.issuer());
    }
    assert_eq!(
        agent.issuers(),
        vec![a.issuer().to_owned(), b.issuer().to_owned()]
    );
    // Each resource's token comes from its own server, with its own client.
    let ta = agent
        .access_token(Some(&a.resource_url()))
        .await
        .expect("a");
    let tb = agent
        .access_token(Some(&b.resource_url()))
        .await
        .expect("b");
    // (`access_token` hands out the token the calls used: no further token request.)
    let (ca, cb) = (
        claims(ta.token().access_token.secret()),
        claims(tb.token().access_token.secret()),
    );
    assert_eq!(ca["iss"], a.issuer());
    assert_eq!(ca["client_id"], "agent");
    assert_eq!(cb["iss"], b.issuer());
    assert_eq!(cb["client_id"], "agent-post");
    assert_eq!(a.stats().grants.client_credentials, 1);
    assert_eq!(b.stats().grants.client_credentials, 1);
    assert_eq!(
        agent
            .client_for(&b.resource_url())
            .expect("b client")
            .client_id(),
        "agent-post"
    );
    // Neither resource ever refused a token as invalid: each saw only tokens of its own
    // server (a resource refuses another server's token: wrong issuer and audience).
    let rejected = rejected.lock().expect("events").clone();
    assert!(
        rejected.iter().all(|(_, e)| e == "use_dpop_nonce"),
        "{rejected:?}"
    );
}

#[tokio::test]
async fn url_first_untrusted_issuer_is_refused_before_any_token_request() {
    let (a, b) = (TestServer::start().await, TestServer::start().await);
    let agent = Agent::builder()
        .trust(TrustPolicy::issuers([a.issuer()]))
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .build()
        .await
        .expect("agent");
    let err = guard(agent.get(format!("{}/x", b.resource_url())).send())
        .await
        .expect_err("b is not trusted");
    let Error::ResourceDiscovery { reason, .. } = &err else {
        panic!("expected ResourceDiscovery, got {err:?}");
    };
    assert!(reason.to_string().contains("trusted"), "{reason}");
    assert_eq!(b.stats().token_requests, 0);
    // The default policy trusts nothing an agent without an issuer did not name.
    let agent = Agent::builder()
        .client_id("agent")
        .build()
        .await
        .expect("agent");
    let err = guard(agent.get(format!("{}/x", a.resource_url())).send())
        .await
        .expect_err("nothing trusted");
    assert!(err.to_string().contains("discovery"), "{err}");
    assert_eq!(a.stats().token_requests, 0);
}

#[tokio::test]
async fn url_first_concurrent_first_calls_share_one_discovery_and_one_token() {
    let a = TestServer::start().await;
    let agent = open_agent().await;
    let calls = (0..16).map(|i| {
        let agent = agent.clone();
        let url = format!("{}/item/{i}", a.resource_url());
        tokio::spawn(async move { agent.get(url).send().await.map(|r| r.status()) })
    });
    for c in calls {
        assert_eq!(guard(c).await.expect("join").expect("call"), 200);
    }
    let stats = a.stats();
    assert_eq!(stats.grants.client_credentials, 1);
    // One unauthenticated probe (and the resource's DPoP nonce challenge, if it sent one).
    assert_eq!(stats.resource_rejections, 1 + stats.nonce_challenges);
    assert_eq!(stats.resource_requests, 16 + stats.resource_rejections);
}

/// A resource whose metadata is only at the root well-known URL.
#[tokio::test]
async fn url_first_resource_metadata_falls_back_to_the_root_well_known_url() {
    let a = TestServer::start().await;
    let api = Scripted::start().await;
    api.route(
        "/.well-known/oauth-protected-resource/mcp",
        Reply::status(404),
    );
    api.route(
        "/.well-known/oauth-protected-resource",
        Reply::json(
            200,
            &serde_json::json!({"resource": api.origin(), "authorization_servers": [a.issuer()]}),
        ),
    );
    api.push(Reply::status(401).header("www-authenticate", "Bearer"));
    api.push(Reply::json(200, &serde_json::json!({"ok": true})));
    let agent = open_agent().await;
    let resp = guard(agent.post(api.url("/mcp")).body("{}").send())
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    let paths: Vec<String> = api.requests().iter().map(|r| r.path().to_owned()).collect();
    assert_eq!(
        paths,
        [
            "/mcp",
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
            "/mcp"
        ]
    );
    let last = api.requests().pop().expect("request");
    let auth = last.header("authorization").unwrap_or_default();
    assert!(
        auth.starts_with("DPoP ") || auth.starts_with("Bearer "),
        "{auth}"
    );
    assert_eq!(agent.resources(), vec![format!("{}/", api.origin())]);
}

/// MCP 2025-03-26: no protected resource metadata; the server's origin is the authorization
/// server, here without metadata either (default endpoints).
#[tokio::test]
async fn url_first_legacy_server_without_metadata_uses_default_endpoints() {
    let api = Scripted::start().await;
    for p in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-authorization-server",
    ] {
        api.route(p, Reply::status(404));
    }
    api.route(
        "/token",
        Reply::json(
            200,
            &serde_json::json!({"access_token": "legacy-token", "token_type": "Bearer", "expires_in": 300}),
        ),
    );
    api.push(Reply::status(401).header("www-authenticate", "Bearer"));
    api.push(Reply::json(200, &serde_json::json!({"ok": true})));
    let agent = Agent::builder()
        .trust(TrustPolicy::any_https().allow_loopback(true))
        .client_id("cc")
        .client_auth(ClientAuth::client_secret_post("cc-secret"))
        .build()
        .await
        .expect("agent");
    let resp = guard(agent.post(api.url("/mcp")).body("{}").send())
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(agent.issuers(), vec![api.origin()]);
    let reqs = api.requests();
    let token = reqs
        .iter()
        .find(|r| r.path() == "/token")
        .expect("token request");
    let form = String::from_utf8_lossy(&token.body).into_owned();
    assert!(form.contains("grant_type=client_credentials"), "{form}");
    let resource =
        url::form_urlencoded::byte_serialize(api.url("/mcp").as_bytes()).collect::<String>();
    assert!(form.contains(&format!("resource={resource}")), "{form}");
    let last = reqs.last().expect("request");
    assert_eq!(last.header("authorization"), Some("Bearer legacy-token"));
}

#[tokio::test]
async fn url_first_resource_metadata_for_another_resource_is_refused() {
    let a = TestServer::start().await;
    let api = Scripted::start().await;
    api.route(
        "/.well-known/oauth-protected-resource/mcp",
        Reply::json(
            200,
            &serde_json::json!({"resource": "https://evil.example.com/mcp", "authorization_servers": [a.issuer()]}),
        ),
    );
    api.push(Reply::status(401).header("www-authenticate", "Bearer"));
    let agent = open_agent().await;
    let err = guard(agent.post(api.url("/mcp")).body("{}").send())
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::ResourceDiscovery { .. }), "{err:?}");
    assert_eq!(a.stats().token_requests, 0);
}

/// An authorization server accepted as "any HTTPS" cannot point the agent into a private
/// network through the endpoints its metadata names.
#[tokio::test]
async fn url_first_endpoints_on_internal_addresses_are_refused() {
    let api = Scripted::start().await;
    let issuer = api.origin();
    api.route(
        "/.well-known/oauth-protected-resource/mcp",
        Reply::json(
            200,
            &serde_json::json!({"resource": api.url("/mcp"), "authorization_servers": [issuer]}),
        ),
    );
    api.route(
        "/.well-known/oauth-authorization-server",
        Reply::json(
            200,
            &serde_json::json!({
                "issuer": issuer,
                "token_endpoint": "https://169.254.169.254/latest/meta-data",
                "authorization_endpoint": format!("{issuer}/authorize"),
            }),
        ),
    );
    api.push(Reply::status(401).header("www-authenticate", "Bearer"));
    let agent = open_agent().await;
    let err = guard(agent.post(api.url("/mcp")).body("{}").send())
        .await
        .expect_err("internal endpoint");
    let Error::ResourceDiscovery { reason, .. } = &err else {
        panic!("expected ResourceDiscovery, got {err:?}");
    };
    assert!(
        reason.to_string().contains("trust policy refuses"),
        "{reason}"
    );
}
