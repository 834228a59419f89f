use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::dpop::testing::{self, fast_transport};
use crate::event::AgentEvent;
use crate::ClientAuth;

async fn agent(s: &testing::Scripted, upgrade: bool, rejected: Arc<AtomicUsize>) -> Agent {
    Agent::builder()
        .issuer(&s.base)
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("secret"))
        .scope("read")
        .resource(format!("{}/scoped", s.base))
        .allow_scope_upgrade(upgrade)
        .transport_config(fast_transport())
        .on_event(move |e| {
            if matches!(e, AgentEvent::TokenRejected { error, .. } if error == "insufficient_scope")
            {
                rejected.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .await
        .expect("agent")
}

#[tokio::test]
async fn middleware_insufficient_scope_is_handled_like_the_agent() {
    for upgrade in [true, false] {
        let s = testing::start().await;
        let rejected = Arc::new(AtomicUsize::new(0));
        let agent = agent(&s, upgrade, rejected.clone()).await;
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AgentMiddleware::new(agent))
            .build();
        let resp = client
            .get(format!("{}/scoped", s.base))
            .send()
            .await
            .expect("send");
        // The rejection is an audit event, as for the agent's own requests.
        assert_eq!(rejected.load(Ordering::SeqCst), 1, "{upgrade}");
        if upgrade {
            // One more token, with the union of the scopes, and one replay.
            assert_eq!(resp.status(), 200);
            assert_eq!(s.nonces("/scoped").len(), 2);
            assert_eq!(s.nonces("/token").len(), 3);
        } else {
            assert_eq!(resp.status(), 403);
            assert_eq!(s.nonces("/scoped").len(), 1);
        }
    }
}
