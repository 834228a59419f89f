//! The reqwest-middleware adapter over `Agent` (feature `middleware`) against the embedded
//! server.

use crate::support::prelude::{Agent, AgentMiddleware, ClientAuth};
use crate::support::prelude::{TestServer, TestServerConfig};

/// A server whose token endpoint and resource both demand DPoP nonces.
async fn nonce_demanding_server() -> TestServer {
    TestServer::start_with(
        TestServerConfig::default()
            .with_require_dpop_nonce(true)
            .with_resource_require_dpop_nonce(true),
    )
    .await
}

/// The agent of these tests at `server`, asking for `read`.
fn reader(server: &TestServer) -> agent_oauth::AgentBuilder {
    Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
}

/// A client whose requests go through `agent`'s middleware.
fn through(agent: Agent) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AgentMiddleware::new(agent))
        .build()
}

#[tokio::test]
async fn middleware_adds_tokens_dpop_and_discovers_from_401() {
    let server = nonce_demanding_server().await;
    let agent = reader(&server).build().await.expect("agent");
    let jkt = agent.dpop_key().expect("dpop").thumbprint().to_owned();
    let client = through(agent.clone());
    let resp = client
        .get(format!("{}/reports", server.resource_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
    assert_eq!(body["jkt"], jkt.as_str());
    assert_eq!(agent.resources(), vec![server.resource_url()]);

    // invalid_token → one refresh and retry through the middleware too.
    server.revoke_all();
    let resp = client
        .post(server.resource_url())
        .body("x")
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn middleware_unknown_origin_without_discovery_is_refused() {
    let server = TestServer::start().await;
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .resource(server.resource_url())
        .discover_resources(false)
        .build()
        .await
        .expect("agent");
    let client = through(agent);
    let other = TestServer::start().await;
    let err = client
        .get(other.resource_url())
        .send()
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("no configured resource"), "{err}");
    assert_eq!(other.stats().resource_requests, 0);
}

#[tokio::test]
async fn middleware_later_calls_carry_the_resources_nonce_on_their_first_try() {
    // The nonce a resource sent is read, for the next call's proof, under the key its resource
    // entry keeps: once the resource has asked for one, no call through the middleware is
    // refused for a missing nonce again.
    let server = nonce_demanding_server().await;
    let agent = reader(&server)
        .resource(server.resource_url())
        .build()
        .await
        .expect("agent");
    let client = through(agent);
    let get = || async {
        let resp = client
            .get(format!("{}/reports", server.resource_url()))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
    };
    get().await;
    let first = server.stats();
    assert!(first.nonce_challenges >= 1, "{first:?}");
    for _ in 0..5 {
        get().await;
    }
    let after = server.stats();
    assert_eq!(after.nonce_challenges, first.nonce_challenges, "{after:?}");
    assert_eq!(after.resource_requests, first.resource_requests + 5);
    assert_eq!(after.resource_rejections, first.resource_rejections);
}
