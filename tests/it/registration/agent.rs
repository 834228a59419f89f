//! Agents that register themselves on first use of an authorization server: dynamic
//! registration kept in the token store and reused by the next run, registered again when the
//! server forgets the client, a Client ID Metadata Document where the server supports one, and
//! the PKCE metadata check of the code flow.

use std::sync::{Arc, Mutex};

use url::Url;

use super::http;
use crate::support::prelude::{
    validate_client_id_metadata_document, Agent, AgentEvent, AuthorizationPrompt, ClientAuth,
    ClientMetadata, Error, FileStore, Result, TestServer, TestServerConfig, TokenStore,
    TrustPolicy,
};

const REDIRECT: &str = "http://127.0.0.1:8765/cb";

async fn approve(prompt: AuthorizationPrompt) -> Result<Url> {
    let resp = http()
        .get(prompt.url.as_str())
        .send()
        .await
        .expect("authorize");
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok());
    match location {
        Some(l) => Ok(Url::parse(l).expect("redirect")),
        None => panic!("authorization refused: {}", resp.status()),
    }
}

type Registered = Arc<Mutex<Vec<String>>>;

async fn registering_agent(store: Arc<dyn TokenStore>, registered: &Registered) -> Agent {
    let seen = registered.clone();
    Agent::builder()
        .trust(TrustPolicy::any_https().allow_loopback(true))
        .client_name("registration test agent")
        .token_store(store)
        .on_authorization(REDIRECT, approve)
        .on_event(move |e| {
            if let AgentEvent::ClientRegistered { client_id, .. } = e {
                seen.lock().expect("events").push(client_id.clone());
            }
        })
        .build()
        .await
        .expect("agent")
}

fn dcr_server_config() -> TestServerConfig {
    TestServerConfig::default().with_dynamic_registration(true)
}

#[tokio::test]
async fn registration_agent_registers_once_and_reuses_it_after_a_restart() {
    let server = TestServer::start_with(dcr_server_config()).await;
    let dir = tempfile::tempdir().expect("dir");
    let registered = Registered::default();
    let url = format!("{}/things", server.resource_url());
    {
        let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path()).expect("store"));
        let agent = registering_agent(store, &registered).await;
        let resp = agent.get(&url).send().await.expect("first run");
        assert_eq!(resp.status(), 200);
    }
    let clients = server.registered_clients();
    assert_eq!(clients.len(), 1, "{clients:?}");
    assert_eq!(registered.lock().expect("events").len(), 1);
    let client_id = registered.lock().expect("events")[0].clone();
    // The registration asked for what the agent uses: its redirect URI, code + refresh.
    assert_eq!(clients[0].client_id, client_id);
    assert!(
        clients[0].redirect_uris.iter().any(|r| r == REDIRECT),
        "{clients:?}"
    );

    // A new agent on the same store (a restart) uses the stored registration: no new client.
    let store: Arc<dyn TokenStore> = Arc::new(FileStore::new(dir.path()).expect("store"));
    let agent = registering_agent(store, &registered).await;
    let resp = agent.get(&url).send().await.expect("second run");
    assert_eq!(resp.status(), 200);
    assert_eq!(server.registered_clients().len(), 1);
    assert_eq!(registered.lock().expect("events").len(), 1);
    assert_eq!(
        agent
            .client_for(&server.resource_url())
            .expect("client")
            .client_id(),
        client_id
    );
}

#[tokio::test]
async fn registration_agent_registers_again_when_the_server_forgot_the_client() {
    let server = TestServer::start_with(dcr_server_config()).await;
    let registered = Registered::default();
    let seen = registered.clone();
    // Client credentials (no hook): every token is a token request with the client's secret.
    let agent = Agent::builder()
        .trust(TrustPolicy::any_https().allow_loopback(true))
        .client_name("service agent")
        .on_event(move |e| {
            if let AgentEvent::ClientRegistered { client_id, .. } = e {
                seen.lock().expect("events").push(client_id.clone());
            }
        })
        .build()
        .await
        .expect("agent");
    let url = format!("{}/things", server.resource_url());
    assert_eq!(agent.get(&url).send().await.expect("first").status(), 200);
    let first = server.registered_clients();
    assert_eq!(first.len(), 1);

    server.forget_registered_clients();
    agent
        .invalidate_token(Some(&server.resource_url()))
        .expect("invalidate");
    // The token request fails with invalid_client; the agent registers again and goes on.
    assert_eq!(
        agent
            .get(&url)
            .send()
            .await
            .expect("after forgetting")
            .status(),
        200
    );
    let ids = registered.lock().expect("events").clone();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    assert_eq!(
        agent
            .client_for(&server.resource_url())
            .expect("client")
            .client_id(),
        ids[1]
    );
}

#[tokio::test]
async fn registration_agent_renders_and_uses_its_client_id_metadata_document() {
    let server = TestServer::start_with(
        TestServerConfig::default()
            .with_dynamic_registration(true)
            .with_client_id_metadata_documents(true),
    )
    .await;
    let url = "https://agent.example.com/oauth-client.json";
    let agent = Agent::builder()
        .trust(TrustPolicy::any_https().allow_loopback(true))
        .client_metadata_url(url)
        .client_metadata(ClientMetadata::new("cimd agent").client_uri("https://agent.example.com"))
        .on_authorization(REDIRECT, approve)
        .build()
        .await
        .expect("agent");
    // The document the agent's owner hosts at that URL, rendered from the agent's
    // configuration: it validates as a server checks it, with the hook's redirect URI.
    let doc = agent
        .client_id_metadata_document()
        .expect("renders")
        .expect("a metadata URL is configured");
    let checked =
        validate_client_id_metadata_document(&serde_json::to_vec(&doc).expect("json"), url)
            .expect("the rendered document validates");
    assert_eq!(checked.redirect_uris, [REDIRECT]);
    assert_eq!(checked.client_name.as_deref(), Some("cimd agent"));
    assert_eq!(checked.token_endpoint_auth_method.as_deref(), Some("none"));
    assert!(checked
        .grant_types
        .iter()
        .any(|g| g == "authorization_code"));
    server.add_client_id_metadata_document(url, doc);
    let resp = agent
        .get(format!("{}/x", server.resource_url()))
        .send()
        .await
        .expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        agent
            .client_for(&server.resource_url())
            .expect("client")
            .client_id(),
        url
    );
    // No dynamic registration happened although the server offers it.
    assert!(server.registered_clients().is_empty());
}

#[tokio::test]
async fn registration_agent_refuses_the_code_flow_without_advertised_pkce() {
    let server = TestServer::start().await;
    let build = |strict: bool| {
        Agent::builder()
            .issuer(server.issuer())
            .client_id("public-agent")
            .client_auth(ClientAuth::none())
            .resource(server.resource_url())
            .patch_metadata(|md| md.code_challenge_methods_supported = None)
            .require_pkce_metadata(strict)
            .on_authorization(REDIRECT, approve)
            .build()
    };
    let agent = build(true).await.expect("agent");
    let err = agent
        .get(format!("{}/x", server.resource_url()))
        .send()
        .await
        .expect_err("no PKCE in metadata");
    assert!(
        matches!(&err, Error::Discovery(m) if m.contains("PKCE")),
        "{err:?}"
    );
    assert_eq!(server.stats().grants.authorization_code, 0);
    // With the check off, the agent still uses PKCE (the embedded server requires it).
    let agent = build(false).await.expect("agent");
    let resp = agent
        .get(format!("{}/x", server.resource_url()))
        .send()
        .await
        .expect("lenient");
    assert_eq!(resp.status(), 200);
    assert_eq!(server.stats().grants.authorization_code, 1);
}
