use std::sync::{Arc, Mutex};

use crate::support::prelude::{Agent, AgentEvent, ClientAuth, Error, OAuthErrorCode};
use crate::support::prelude::{TestServer, TestServerConfig};

async fn agent(server: &TestServer) -> Agent {
    Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
        .build()
        .await
        .expect("agent")
}

fn json(resp: &crate::support::prelude::HttpResponse) -> serde_json::Value {
    serde_json::from_slice(resp.body()).expect("json body")
}

#[tokio::test]
async fn agent_discovers_resource_from_401_and_calls_it() {
    let server = TestServer::start().await;
    let agent = agent(&server).await;
    assert!(agent.resources().is_empty());
    let url = format!("{}/invoices/42", server.resource_url());
    let resp = agent.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let body = json(&resp);
    assert_eq!(body["ok"], true);
    assert_eq!(body["path"], "/api/invoices/42");
    assert_eq!(agent.resources(), vec![server.resource_url()]);
    // Discovery happened once: the second call goes straight out with the cached token.
    let before = server.stats();
    let resp = agent
        .get(format!("{}/other", server.resource_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let after = server.stats();
    assert_eq!(after.token_requests, before.token_requests);
    assert_eq!(after.resource_requests, before.resource_requests + 1);
}

#[tokio::test]
async fn agent_refreshes_once_on_invalid_token() {
    let server = TestServer::start().await;
    let agent = agent(&server).await;
    let url = server.resource_url();
    agent.get(&url).send().await.expect("first");
    let t1 = agent
        .access_token(Some(&url))
        .await
        .expect("token")
        .token()
        .access_token
        .fingerprint();
    server.revoke_all();
    let resp = agent.get(&url).send().await.expect("after revoke");
    assert_eq!(resp.status(), 200);
    let t2 = agent
        .access_token(Some(&url))
        .await
        .expect("token")
        .token()
        .access_token
        .fingerprint();
    assert_ne!(t1, t2, "a new token replaced the rejected one");
}

#[tokio::test]
async fn agent_insufficient_scope_is_typed_error_or_upgraded() {
    let server = TestServer::start().await;
    let agent = agent(&server).await;
    let admin = format!("{}/admin/users", server.resource_url());
    let err = agent.get(&admin).send().await.expect_err("no admin scope");
    let o = err.oauth_error().expect("oauth error");
    assert_eq!(o.error, OAuthErrorCode::InsufficientScope);
    assert_eq!(o.status, 403);

    let upgrading = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
        .allow_scope_upgrade(true)
        .build()
        .await
        .expect("agent");
    let resp = upgrading.get(&admin).send().await.expect("upgraded");
    assert_eq!(resp.status(), 200);
    let scope = json(&resp)["scope"].as_str().unwrap_or_default().to_owned();
    assert!(scope.contains("admin") && scope.contains("read"), "{scope}");
}

#[tokio::test]
async fn access_token_after_a_step_up_is_the_upgraded_token_not_the_kept_one() {
    let server = TestServer::start().await;
    let resource = server.resource_url();
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
        .resource(&resource)
        .allow_scope_upgrade(true)
        .build()
        .await
        .expect("agent");
    let scope_of = |t: &agent_oauth::cache::TokenRef| t.token().scope.to_string();
    // Kept for the next call: a hit after the step-up would serve this handle's token.
    let before = agent.access_token(Some(&resource)).await.expect("token");
    let (before_scope, before_id) = (scope_of(&before), before.token().access_token.fingerprint());
    assert!(!before_scope.contains("admin"), "{before_scope}");
    drop(before);
    let hit = agent.access_token(Some(&resource)).await.expect("hit");
    assert_eq!(
        hit.token().access_token.fingerprint(),
        before_id,
        "served from the cache"
    );
    drop(hit);

    let admin = format!("{resource}/admin/users");
    let resp = agent.get(&admin).send().await.expect("upgraded");
    assert_eq!(resp.status(), 200);

    let after = agent.access_token(Some(&resource)).await.expect("token");
    let after_scope = scope_of(&after);
    assert!(
        after_scope.contains("admin") && after_scope.contains("read"),
        "the resource's token after its step-up: {after_scope}"
    );
    assert_ne!(after.token().access_token.fingerprint(), before_id);
}

#[tokio::test]
async fn agent_never_sends_a_token_to_another_origin() {
    let server = TestServer::start().await;
    let other = TestServer::start().await; // another origin, another AS
    let agent = agent(&server).await;
    agent
        .get(server.resource_url())
        .send()
        .await
        .expect("own resource");
    let before = other.stats();
    // The other resource's metadata names another authorization server: refused, and no
    // token was ever sent there (only the unauthenticated probe).
    let err = agent
        .get(other.resource_url())
        .send()
        .await
        .expect_err("foreign AS");
    assert!(
        matches!(&err, Error::ResourceDiscovery { reason, .. } if matches!(**reason, Error::Discovery(_))),
        "{err:?}"
    );
    let after = other.stats();
    assert_eq!(after.token_requests, before.token_requests);
    assert_eq!(after.resource_requests, before.resource_requests + 1);
    // With discovery off, an unknown URL is refused before anything is sent.
    let strict = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .resource(server.resource_url())
        .discover_resources(false)
        .build()
        .await
        .expect("agent");
    let err = strict
        .get(other.resource_url())
        .send()
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::Config(_)));
    assert_eq!(other.stats().resource_requests, after.resource_requests);
}

#[tokio::test]
async fn agent_events_carry_fingerprints_not_tokens() {
    let server = TestServer::start().await;
    let seen: Arc<Mutex<Vec<AgentEvent>>> = Arc::default();
    let s = seen.clone();
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .resource(server.resource_url())
        .on_event(move |e| s.lock().unwrap().push(e.clone()))
        .build()
        .await
        .expect("agent");
    agent.get(server.resource_url()).send().await.expect("send");
    let token = agent
        .access_token(Some(&server.resource_url()))
        .await
        .expect("token")
        .token()
        .access_token
        .secret()
        .to_owned();
    let events = seen.lock().unwrap().clone();
    assert!(
        matches!(events.first(), Some(AgentEvent::TokenAcquired { .. })),
        "{events:?}"
    );
    let dbg = format!("{events:?}");
    assert!(!dbg.contains(&token));
    assert!(!format!("{agent:?}").contains(&token));
}

#[tokio::test]
async fn agent_device_login_then_refreshes_from_the_grant() {
    let server = TestServer::start_with(
        TestServerConfig::default().with_device_interval(std::time::Duration::from_secs(1)),
    )
    .await;
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("public-agent")
        .scope("read offline_access")
        .resource(server.resource_url())
        .build()
        .await
        .expect("agent");
    let srv = &server;
    let tokens = agent
        .login_device(|auth| {
            assert!(srv.approve_device(&auth.user_code));
        })
        .await
        .expect("device login");
    assert!(tokens.refresh_token.is_some());
    let resp = agent.get(server.resource_url()).send().await.expect("call");
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp)["sub"], "agent-user");
    // The login asked for the agent's resource, so its token is used as is.
    let used = agent
        .access_token(Some(&server.resource_url()))
        .await
        .expect("token")
        .token()
        .access_token
        .fingerprint();
    assert_eq!(used, tokens.access_token.fingerprint());
    assert_eq!(server.stats().grants.client_credentials, 0);
    // A rejected token is replaced by refreshing the grant, not by client credentials.
    let before = server.stats().grants.refresh_token;
    agent
        .client()
        .expect("configured issuer")
        .revoke(tokens.access_token.secret(), Some("access_token"))
        .await
        .expect("revoke the access token only");
    let resp = agent.get(server.resource_url()).send().await.expect("call");
    assert_eq!(resp.status(), 200);
    let fresh = agent
        .access_token(Some(&server.resource_url()))
        .await
        .expect("token");
    assert_ne!(fresh.token().access_token.fingerprint(), used);
    assert_eq!(server.stats().grants.refresh_token, before + 1);
}

#[tokio::test]
async fn agent_logout_revokes_the_grant() {
    let server = TestServer::start_with(
        TestServerConfig::default().with_device_interval(std::time::Duration::from_secs(1)),
    )
    .await;
    let seen: Arc<Mutex<Vec<AgentEvent>>> = Arc::default();
    let s = seen.clone();
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("public-agent")
        .scope("read offline_access")
        .resource(server.resource_url())
        .on_event(move |e| s.lock().unwrap().push(e.clone()))
        .build()
        .await
        .expect("agent");
    let srv = &server;
    let tokens = agent
        .login_device(|auth| assert!(srv.approve_device(&auth.user_code)))
        .await
        .expect("login");
    let rt = tokens.refresh_token.clone().expect("refresh token");
    agent.logout().await.expect("logout");
    let events = seen.lock().unwrap().clone();
    assert!(events.iter().any(|e| matches!(e,
        AgentEvent::TokenRevoked { fingerprint } if *fingerprint == rt.fingerprint())));
    // The refresh token is dead at the server, and the agent no longer holds a grant.
    let err = agent
        .client()
        .expect("configured issuer")
        .refresh(&rt, &crate::support::prelude::TokenParams::new())
        .await
        .expect_err("revoked");
    assert!(matches!(err, Error::ReauthorizationRequired(_)), "{err:?}");
    assert!(agent.get(server.resource_url()).send().await.is_err());
}
