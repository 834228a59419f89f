//! Secrets never reach the logs: every `agent_oauth` tracing event and span of a whole flow
//! (token request, nonce retry, resource call, refresh) is captured and searched.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::support::prelude::{Agent, ClientAuth};
use crate::support::prelude::{TestServer, TestServerConfig};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn agent_logs_carry_fingerprints_never_secrets() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Global, not thread-scoped: the cache fetches in spawned tasks, and a scoped subscriber
    // races with callsite interest registered by tests running beside this one. Only this test
    // in the binary installs a subscriber.
    tracing::subscriber::set_global_default(subscriber).expect("first subscriber");

    let server = TestServer::start_with(
        TestServerConfig::default()
            .with_require_dpop_nonce(true)
            .with_resource_require_dpop_nonce(true),
    )
    .await;
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
        .build()
        .await
        .expect("agent");
    let resp = agent.get(server.resource_url()).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let token = agent
        .access_token(Some(&server.resource_url()))
        .await
        .expect("token")
        .token()
        .clone();
    server.revoke_all();
    agent
        .get(server.resource_url())
        .send()
        .await
        .expect("after refresh");

    let logs = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf8");
    assert!(logs.contains("agent.send"), "spans are recorded");
    assert!(
        logs.contains(&token.access_token.fingerprint()),
        "fingerprints are logged"
    );
    for secret in ["agent-secret", token.access_token.secret()] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    // Nor the base64 of the Basic credentials.
    assert!(!logs.contains("YWdlbnQ6YWdlbnQtc2VjcmV0"));
}
