//! One agent serving many principals: each principal's tokens come from its own grant only,
//! under concurrency, after a restart from the store and through child agents; a principal
//! without a grant gets `ConsentRequired`, never another principal's token.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;

use crate::support::prelude::{
    AccessToken, Agent, AgentEvent, ClientAuth, ConsentRequest, DpopMode, Error, FileStore,
    MemoryStore, RefreshToken, TestServer, TokenSet, TokenStore, TokenType,
};
use crate::support::server::guard;
use crate::tokens::common::claims;

const ALICE: &str = "user:alice";
const BOB: &str = "user:bob";

/// A platform agent of the test server's `agent` client, acting for many users, on `store`.
async fn platform(
    server: &TestServer,
    store: Arc<dyn TokenStore>,
) -> (Agent, mpsc::UnboundedReceiver<AgentEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
        .resource(server.resource_url())
        .token_store(store)
        // One binding across restarts (a new DPoP key would be another grant).
        .dpop_mode(DpopMode::Off)
        .on_event(move |e| {
            let _ = tx.send(e.clone());
        })
        .build()
        .await
        .expect("agent");
    (agent, rx)
}

/// A grant obtained elsewhere for `sub`: its refresh token, and an access token already
/// expired, so the first call refreshes.
fn grant_for(server: &TestServer, sub: &str) -> TokenSet {
    let resource = server.resource_url();
    let rt = server.issue_refresh_token_for("agent", "read offline_access", sub, &[&resource]);
    let now = SystemTime::now();
    let mut t = TokenSet::new(
        AccessToken::new(format!("expired-placeholder-{sub}")),
        TokenType::Bearer,
        now - Duration::from_secs(120),
    );
    t.expires_at = Some(now - Duration::from_secs(60));
    t.refresh_token = Some(RefreshToken::new(rt));
    t
}

fn sub(token: &TokenSet) -> String {
    claims(token.access_token.secret())["sub"]
        .as_str()
        .expect("sub")
        .to_owned()
}

/// `principal`'s token for the resource, and the subject the resource saw with it.
async fn token_and_seen_sub(agent: &Agent, server: &TestServer) -> (String, String) {
    let token = guard(agent.access_token(Some(&server.resource_url())))
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", agent.principal()));
    let resp = guard(
        agent
            .get(format!("{}/things", server.resource_url()))
            .send(),
    )
    .await
    .expect("protected call");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    (
        sub(token.token()),
        body["sub"].as_str().expect("sub").to_owned(),
    )
}

fn consent(e: &Error) -> &ConsentRequest {
    match e {
        Error::ConsentRequired(r) => r,
        other => panic!("expected ConsentRequired, got {other:?}"),
    }
}

#[tokio::test]
async fn principal_tokens_stay_with_their_principal_under_concurrency() {
    let server = TestServer::start().await;
    let (agent, mut events) = platform(&server, Arc::new(MemoryStore::new())).await;
    let alice = agent.for_principal(ALICE);
    let bob = agent.for_principal(BOB);
    alice
        .adopt_grant(grant_for(&server, "alice"))
        .await
        .unwrap();
    bob.adopt_grant(grant_for(&server, "bob")).await.unwrap();

    // Cold: both principals' first calls at once, same resource and scope, many tasks each.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (who, expected) = if i % 2 == 0 {
            (agent.for_principal(ALICE), "alice")
        } else {
            (agent.for_principal(BOB), "bob")
        };
        let server_url = server.resource_url();
        tasks.push(tokio::spawn(async move {
            for round in 0..10 {
                let t = who.access_token(Some(&server_url)).await.expect("token");
                assert_eq!(sub(t.token()), expected, "task {i} round {round}");
                if round == 5 && i < 4 {
                    // Refreshes under load stay with their principal too.
                    let t = who.force_refresh(Some(&server_url)).await.expect("refresh");
                    assert_eq!(sub(t.token()), expected, "task {i} refresh");
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for t in tasks {
        guard(t).await.expect("task");
    }
    // Protected calls: the resource sees each principal's own subject.
    assert_eq!(
        token_and_seen_sub(&alice, &server).await,
        ("alice".into(), "alice".into())
    );
    assert_eq!(
        token_and_seen_sub(&bob, &server).await,
        ("bob".into(), "bob".into())
    );
    // The agent itself keeps its own client-credentials token.
    let own = agent
        .access_token(Some(&server.resource_url()))
        .await
        .unwrap();
    assert_eq!(sub(own.token()), "agent");

    // A principal without a grant: typed error and event, nothing sent for it, and neither
    // another principal's token nor the agent's.
    while events.try_recv().is_ok() {}
    let before = server.stats().token_requests;
    let carol = agent.for_principal("user:carol");
    let e = carol
        .access_token(Some(&server.resource_url()))
        .await
        .expect_err("no grant for carol");
    let r = consent(&e);
    assert_eq!(r.principal, "user:carol");
    assert_eq!(r.issuer, server.issuer());
    assert_eq!(r.client_id, "agent");
    assert_eq!(r.resource.as_deref(), Some(server.resource_url().as_str()));
    assert_eq!(r.scope, "read");
    assert_eq!(r.reason, "first_use");
    assert_eq!(
        r.authorization_endpoint.as_deref(),
        Some(format!("{}/authorize", server.issuer()).as_str())
    );
    let e = carol
        .get(format!("{}/things", server.resource_url()))
        .send()
        .await
        .expect_err("no grant for carol");
    assert_eq!(consent(&e).principal, "user:carol");
    assert_eq!(
        server.stats().token_requests,
        before,
        "nothing sent for carol"
    );
    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        seen.iter().any(|e| matches!(e,
            AgentEvent::ConsentRequired { request } if request.principal == "user:carol")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn principal_grants_stay_apart_after_a_restart_from_the_file_store() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let store = || Arc::new(FileStore::new(dir.path().join("tokens")).unwrap()) as Arc<_>;
    {
        let (agent, _events) = platform(&server, store()).await;
        for (id, user) in [(ALICE, "alice"), (BOB, "bob")] {
            let p = agent.for_principal(id);
            p.adopt_grant(grant_for(&server, user)).await.unwrap();
            assert_eq!(token_and_seen_sub(&p, &server).await.1, user);
        }
    }
    let refreshes = server.stats().grants.refresh_token;

    // A new process: the grants are found in the store, each under its principal.
    let (agent, _events) = platform(&server, store()).await;
    let (bob, alice) = (agent.for_principal(BOB), agent.for_principal(ALICE));
    for _ in 0..3 {
        for (p, user) in [(&bob, "bob"), (&alice, "alice")] {
            assert_eq!(
                token_and_seen_sub(p, &server).await,
                (user.into(), user.into())
            );
        }
    }
    // The stored access tokens were reused, or each grant refreshed once: never more.
    assert!(server.stats().grants.refresh_token <= refreshes + 2);
    let e = agent
        .for_principal("user:carol")
        .access_token(Some(&server.resource_url()))
        .await
        .expect_err("carol never logged in");
    assert_eq!(consent(&e).reason, "first_use");

    // Logging one principal out ends only its grant.
    alice.logout().await.unwrap();
    let e = alice
        .access_token(Some(&server.resource_url()))
        .await
        .expect_err("alice logged out");
    assert_eq!(consent(&e).principal, ALICE);
    assert_eq!(token_and_seen_sub(&bob, &server).await.1, "bob");
}

#[tokio::test]
async fn principal_child_agents_narrow_their_own_principals_token() {
    let server = TestServer::start().await;
    let (agent, _events) = platform(&server, Arc::new(MemoryStore::new())).await;
    let alice = agent.for_principal(ALICE);
    let bob = agent.for_principal(BOB);
    alice
        .adopt_grant(grant_for(&server, "alice"))
        .await
        .unwrap();
    bob.adopt_grant(grant_for(&server, "bob")).await.unwrap();

    let (a_child, b_child) = tokio::join!(
        alice.delegate().scope("read").spawn(),
        bob.delegate().scope("read").spawn()
    );
    let (a_child, b_child) = (
        a_child.expect("alice's child"),
        b_child.expect("bob's child"),
    );
    for (child, user) in [(&a_child, "alice"), (&b_child, "bob")] {
        let t = child.token().await.unwrap();
        assert_eq!(sub(&t), user);
        let resp = child
            .get(format!("{}/things", server.resource_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(body["sub"], user);
    }
    // A principal without a grant cannot spawn a child from someone else's token.
    let e = agent
        .for_principal("user:carol")
        .delegate()
        .scope("read")
        .spawn()
        .await
        .expect_err("carol has no grant");
    assert_eq!(consent(&e).principal, "user:carol");
}
