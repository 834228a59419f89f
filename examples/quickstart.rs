//! The whole story in one process, against the embedded authorization server and API:
//! discovery from a 401, a DPoP-bound token with nonce retries, an API call, a user login,
//! refresh ahead of expiry with rotation, and a narrowed child agent (token exchange).
//!
//! Run: `cargo run --example quickstart --features testkit`

use std::sync::Arc;
use std::time::Duration;

use agent_oauth::store::{MemoryStore, TokenStore};
use agent_oauth::testkit::{TestServer, TestServerConfig};
use agent_oauth::{Agent, AgentEvent, ClientAuth};

type Failure = Box<dyn std::error::Error>;

fn check(cond: bool, what: &str) -> Result<(), Failure> {
    if cond {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}

fn print_event(e: &AgentEvent) {
    match e {
        AgentEvent::TokenAcquired {
            fingerprint,
            scope,
            resource,
            ..
        } => println!(
            "   event: token acquired  fp={fingerprint} scope=\"{scope}\" resource={}",
            resource.as_deref().unwrap_or("-")
        ),
        AgentEvent::TokenRefreshed { fingerprint, .. } => {
            println!("   event: token refreshed fp={fingerprint}")
        }
        AgentEvent::TokenRejected { error, .. } => println!("   event: token rejected  ({error})"),
        other => println!("   event: {other:?}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Failure> {
    // 1. An authorization server and a protected API, in this process, on 127.0.0.1.
    //    DPoP nonces are required at both; access tokens live 8 seconds.
    let server = TestServer::start_with(
        TestServerConfig::default()
            .with_require_dpop_nonce(true)
            .with_resource_require_dpop_nonce(true)
            .with_access_token_ttl(Duration::from_secs(8))
            .with_device_interval(Duration::from_secs(1)),
    )
    .await;
    println!("1. embedded authorization server at {}", server.issuer());
    println!("   protected API at {}", server.resource_url());

    // 2. An unattended agent: client credentials, DPoP on because the server supports ES256.
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read")
        .on_event(print_event)
        .build()
        .await?;
    let jkt = agent
        .dpop_key()
        .map(|k| k.thumbprint().to_owned())
        .unwrap_or_default();
    println!("2. agent built; DPoP key thumbprint (jkt) {jkt}");

    // 3. Call the API. The URL is unknown, so the first request goes out without a token, the
    //    401 points to RFC 9728 metadata, and the agent gets a token for that resource.
    let url = format!("{}/invoices/42", server.resource_url());
    let resp = agent.get(&url).send().await?;
    let body: serde_json::Value = serde_json::from_slice(resp.body())?;
    println!("3. GET {url} -> {}", resp.status());
    println!("   discovered resource: {:?}", agent.resources());
    println!(
        "   API saw: sub={} scope={} jkt={}",
        body["sub"], body["scope"], body["jkt"]
    );
    let stats = server.stats();
    println!(
        "   token requests: {}, DPoP nonce challenges answered: {}",
        stats.token_requests, stats.nonce_challenges
    );
    check(resp.status() == 200, "API call succeeds")?;
    check(
        body["jkt"] == jkt.as_str(),
        "token bound to the agent's key",
    )?;

    // 4. A user-delegated agent: device login (approved here by API), refresh token stored.
    let store = Arc::new(MemoryStore::new());
    let user_agent = Agent::builder()
        .issuer(server.issuer())
        .client_id("public-agent")
        .scope("read offline_access")
        .resource(server.resource_url())
        .token_store(store.clone())
        .on_event(print_event)
        .build()
        .await?;
    let login = user_agent
        .login_device(|auth| {
            println!(
                "4. device login: visit {} and enter {}",
                auth.verification_uri, auth.user_code
            );
            let approved = server.approve_device(&auth.user_code);
            println!("   (approved by the embedded server: {approved})");
        })
        .await?;
    let rt1 = login
        .refresh_token
        .as_ref()
        .map(|r| r.fingerprint())
        .unwrap_or_default();
    println!("   logged in; refresh token fp={rt1}");

    let resp = user_agent.get(server.resource_url()).send().await?;
    let body: serde_json::Value = serde_json::from_slice(resp.body())?;
    println!(
        "   GET as the user -> {} (sub={})",
        resp.status(),
        body["sub"]
    );
    check(body["sub"] == "agent-user", "call made for the user")?;
    let first = user_agent
        .access_token(Some(&server.resource_url()))
        .await?
        .token()
        .access_token
        .fingerprint();

    // 5. Refresh ahead of expiry: after half the 8 s lifetime the next call still gets the
    //    valid token at once while one background refresh rotates the refresh token.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let before = server.stats().grants.refresh_token;
    let resp = user_agent.get(server.resource_url()).send().await?;
    println!(
        "5. after 4.5 s: GET -> {} (served from cache, refresh running in background)",
        resp.status()
    );
    let mut second = first.clone();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        second = user_agent
            .access_token(Some(&server.resource_url()))
            .await?
            .token()
            .access_token
            .fingerprint();
        if second != first {
            break;
        }
    }
    let refreshes = server.stats().grants.refresh_token - before;
    let stored = {
        let key = store_key_of(&store);
        store
            .load(&key)
            .await?
            .and_then(|v| v.value.refresh_token.map(|r| (r.fingerprint(), v.version)))
    };
    println!("   access token fp {first} -> {second} ({refreshes} refresh request)");
    if let Some((rt2, version)) = &stored {
        println!("   refresh token rotated: fp {rt1} -> {rt2} (store version {version})");
        check(*rt2 != rt1, "refresh token rotated and stored")?;
    }
    check(
        second != first && refreshes == 1,
        "exactly one background refresh",
    )?;

    // 6. A narrowed child agent: token exchange (RFC 8693) for a sub-task, bound to the
    //    child's own DPoP key, shorter-lived, and never wider than the parent.
    let child = agent
        .delegate()
        .scope("read")
        .resource(server.resource_url())
        .lifetime(Duration::from_secs(60))
        .actor_label("report-writer")
        .spawn()
        .await?;
    let resp = child
        .get(format!("{}/reports", server.resource_url()))
        .send()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(resp.body())?;
    let child_jkt = child
        .dpop_key()
        .map(|k| k.thumbprint().to_owned())
        .unwrap_or_default();
    println!(
        "6. child agent: GET /api/reports -> {} (jkt={})",
        resp.status(),
        body["jkt"]
    );
    if let Some(chain) = child.unverified_chain() {
        println!(
            "   child token: sub={} scope=\"{}\" bound to the child's key: {}",
            chain.sub.as_deref().unwrap_or("-"),
            chain.scope,
            chain.jkt.as_deref() == Some(child_jkt.as_str())
        );
    }
    check(resp.status() == 200, "child call succeeds")?;
    check(
        body["jkt"] == child_jkt.as_str() && child_jkt != jkt,
        "child token bound to the child's key",
    )?;
    let widened = agent.delegate().scope("read admin").spawn().await;
    println!(
        "   widening to \"read admin\" refused locally: {}",
        widened
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    check(widened.is_err(), "widening refused")?;
    child.revoke().await?;

    println!("done: every step succeeded");
    Ok(())
}

/// The store holds one grant: find its key.
fn store_key_of(store: &MemoryStore) -> String {
    store.keys().into_iter().next().unwrap_or_default()
}
