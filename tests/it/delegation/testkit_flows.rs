use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::support::prelude::{
    unverified_delegation_chain, Agent, AgentEvent, ClientAuth, DpopMode, Error, TokenType,
};
use crate::support::prelude::{TestClient, TestClientAuth, TestServer, TestServerConfig};

use super::json;

fn config() -> TestServerConfig {
    TestServerConfig::default()
        .with_client(TestClient::new(
            "child-agent",
            TestClientAuth::SecretBasic("child-secret".into()),
        ))
        .with_client(TestClient::new(
            "grandchild-agent",
            TestClientAuth::SecretBasic("grandchild-secret".into()),
        ))
}

async fn server() -> TestServer {
    TestServer::start_with(config()).await
}

async fn parent(server: &TestServer) -> Agent {
    Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read write")
        .resource(server.resource_url())
        .build()
        .await
        .expect("parent agent")
}

fn exchanges(server: &TestServer) -> u64 {
    server.stats().grants.token_exchange
}

#[tokio::test]
async fn delegation_lifetime_capped() {
    let server =
        TestServer::start_with(config().with_access_token_ttl(Duration::from_secs(60))).await;
    let parent = parent(&server).await;
    let parent_exp = parent
        .access_token(Some(&server.resource_url()))
        .await
        .unwrap()
        .token()
        .expires_at
        .unwrap();

    // Longer than the parent's token: capped by it.
    let long = parent
        .delegate()
        .lifetime(Duration::from_secs(3600))
        .spawn()
        .await
        .unwrap();
    assert!(long.expires_at().unwrap() <= parent_exp);

    // Shorter: capped locally and by the server.
    let start = SystemTime::now();
    let short = parent
        .delegate()
        .lifetime(Duration::from_secs(20))
        .spawn()
        .await
        .unwrap();
    let exp = short.expires_at().unwrap();
    assert!(exp <= parent_exp);
    assert!(exp <= SystemTime::now() + Duration::from_secs(20));
    assert!(exp >= start + Duration::from_secs(18));
    let chain = short.unverified_chain().unwrap();
    let unix_now = start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(chain.exp.unwrap() <= unix_now + 21, "{chain:?}");

    let err = parent
        .delegate()
        .lifetime(Duration::from_millis(10))
        .spawn()
        .await
        .expect_err("too short");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");
}

#[tokio::test]
async fn delegation_reexchange_on_expiry_keeps_scope() {
    let server = server().await;
    let parent = parent(&server).await;
    let child = parent
        .delegate()
        .scope("read")
        .lifetime(Duration::from_secs(2))
        .spawn()
        .await
        .unwrap();
    let first = child.token().await.unwrap();
    let first_exp = child.expires_at().unwrap();
    let before = exchanges(&server);
    tokio::time::sleep(Duration::from_millis(2300)).await;

    let resp = child.get(server.resource_url()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp)["scope"], "read");
    let second = child.token().await.unwrap();
    assert_ne!(
        first.access_token.fingerprint(),
        second.access_token.fingerprint()
    );
    assert_eq!(second.scope.to_string(), "read");
    assert_eq!(
        unverified_delegation_chain(&second.access_token)
            .unwrap()
            .scope
            .to_string(),
        "read"
    );
    assert!(child.expires_at().unwrap() > first_exp);
    assert!(exchanges(&server) > before);
}

#[tokio::test]
async fn delegation_parent_revoked_child_cannot_renew() {
    let server = server().await;
    let parent = parent(&server).await;
    let child = parent.delegate().scope("read").spawn().await.unwrap();
    let grandchild = child.delegate().spawn().await.unwrap();
    assert_eq!(
        grandchild
            .get(server.resource_url())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // The parent's grant is revoked at the server: the parent's cached token is dead.
    server.revoke_all();
    let err = child.renew().await.expect_err("no valid parent token");
    match &err {
        Error::Delegation(m) => assert!(m.contains("through its parent `agent`"), "{m}"),
        e => panic!("expected a delegation error, got {e:?}"),
    }
    let err = child
        .get(server.resource_url())
        .send()
        .await
        .expect_err("revoked child token, renewal refused");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");

    // A revoked child cannot renew its grandchild either.
    let server = self::server().await;
    let parent = self::parent(&server).await;
    let child = parent.delegate().scope("read").spawn().await.unwrap();
    let grandchild = child.delegate().spawn().await.unwrap();
    child.revoke().await.unwrap();
    let err = grandchild.renew().await.expect_err("parent child revoked");
    match &err {
        Error::Delegation(m) => assert!(m.contains("revoked"), "{m}"),
        e => panic!("expected a delegation error, got {e:?}"),
    }
}

#[tokio::test]
async fn delegation_audit_event_has_fingerprints_not_tokens() {
    let server = server().await;
    let events: Arc<Mutex<Vec<AgentEvent>>> = Arc::default();
    let sink = events.clone();
    let parent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read write")
        .resource(server.resource_url())
        .on_event(move |e| sink.lock().unwrap().push(e.clone()))
        .build()
        .await
        .unwrap();
    let child = parent
        .delegate()
        .scope("read")
        .actor_label("summarizer")
        .lifetime(Duration::from_secs(60))
        .spawn()
        .await
        .unwrap();
    let parent_token = parent
        .access_token(Some(&server.resource_url()))
        .await
        .unwrap()
        .token()
        .access_token
        .clone();
    let child_token = child.token().await.unwrap().access_token;

    let log = events.lock().unwrap().clone();
    let exchanged: Vec<_> = log
        .iter()
        .filter(|e| matches!(e, AgentEvent::TokenExchanged { .. }))
        .collect();
    assert_eq!(exchanged.len(), 1, "{log:?}");
    let AgentEvent::TokenExchanged {
        parent_client_id,
        child: label,
        scope,
        resources,
        lifetime_secs,
        parent_fingerprint,
        child_fingerprint,
        child_jkt,
        verified_sub,
        verified_actors,
    } = exchanged[0]
    else {
        unreachable!()
    };
    // Nothing is verified unless the delegation asks for it.
    assert_eq!((verified_sub, verified_actors), (&None, &None));
    assert_eq!(parent_client_id, "agent");
    assert_eq!(label, "summarizer");
    assert_eq!(scope, "read");
    assert_eq!(resources, &vec![server.resource_url()]);
    assert!(lifetime_secs.is_some_and(|l| l <= 60), "{lifetime_secs:?}");
    assert_eq!(parent_fingerprint, &parent_token.fingerprint());
    assert_eq!(child_fingerprint, &child_token.fingerprint());
    assert_eq!(
        child_jkt.as_deref(),
        Some(child.dpop_key().unwrap().thumbprint())
    );
    let text = format!("{log:?}");
    assert!(!text.contains(parent_token.secret()));
    assert!(!text.contains(child_token.secret()));
    assert!(!format!("{child:?}").contains(child_token.secret()));
}

#[tokio::test]
async fn delegation_revoke_on_finish_and_on_drop() {
    let server = server().await;
    let parent = parent(&server).await;
    let active = |t: String| {
        let parent = parent.clone();
        async move {
            parent
                .client()
                .expect("configured issuer")
                .introspect(&t, Some("access_token"))
                .await
                .unwrap()
                .active
        }
    };

    let child = parent.delegate().scope("read").spawn().await.unwrap();
    let token = child
        .token()
        .await
        .unwrap()
        .access_token
        .secret()
        .to_owned();
    assert!(active(token.clone()).await);
    child.revoke().await.unwrap();
    assert!(!active(token).await, "revoked when the task ends");

    let child = parent
        .delegate()
        .scope("read")
        .revoke_on_drop(true)
        .spawn()
        .await
        .unwrap();
    let token = child
        .token()
        .await
        .unwrap()
        .access_token
        .secret()
        .to_owned();
    let clone = child.clone();
    drop(child);
    assert!(active(token.clone()).await, "a clone is still alive");
    drop(clone);
    let mut revoked = false;
    for _ in 0..50 {
        if !active(token.clone()).await {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(revoked, "revoked on drop");

    // The parent is unaffected.
    assert_eq!(
        parent
            .get(server.resource_url())
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn delegation_bearer_parent_gives_bearer_child() {
    let server = server().await;
    let parent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read write")
        .resource(server.resource_url())
        .dpop_mode(DpopMode::Off)
        .build()
        .await
        .unwrap();
    let child = parent.delegate().scope("write").spawn().await.unwrap();
    assert!(child.dpop_key().is_none());
    let token = child.token().await.unwrap();
    assert_eq!(token.token_type, TokenType::Bearer);
    // Child requests can run on other tasks.
    let url = server.resource_url();
    let resp = tokio::spawn(async move { child.post(url).body("x").send().await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp)["scope"], "write");
}

#[tokio::test]
async fn delegation_renews_through_a_refreshed_parent() {
    let server =
        TestServer::start_with(config().with_access_token_ttl(Duration::from_secs(2))).await;
    let parent = parent(&server).await;
    let url = server.resource_url();
    let parent_first = parent.access_token(Some(&url)).await.unwrap();
    let parent_first = parent_first.token().clone();
    // No lifetime asked: the child's token ends with the parent's.
    let child = parent.delegate().scope("read").spawn().await.unwrap();
    assert!(child.expires_at().unwrap() <= parent_first.expires_at.unwrap());
    let child_first = child.token().await.unwrap().access_token.fingerprint();

    tokio::time::sleep(Duration::from_millis(2300)).await;
    let resp = child
        .get(&url)
        .send()
        .await
        .expect("renewed through the parent");
    assert_eq!(resp.status(), 200);
    assert_eq!(json(&resp)["scope"], "read");
    let parent_now = parent.access_token(Some(&url)).await.unwrap();
    assert_ne!(
        parent_now.token().access_token.fingerprint(),
        parent_first.access_token.fingerprint(),
        "the parent got a new token"
    );
    assert_ne!(
        child.token().await.unwrap().access_token.fingerprint(),
        child_first
    );
}
