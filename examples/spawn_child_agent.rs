//! Delegate to a child agent and a grandchild with token exchange (RFC 8693), against the
//! embedded test server: each level gets a narrower scope and its own DPoP key, calls the
//! protected resource, and the delegation chain of each token is verified against the
//! server's JWKS and printed.
//!
//! ```text
//! cargo run --example spawn_child_agent --features testkit
//! ```

use std::process::ExitCode;
use std::time::Duration;

use agent_oauth::delegation::verify_delegation_chain;
use agent_oauth::discovery::Jwks;
use agent_oauth::testkit::{TestClient, TestClientAuth, TestServer, TestServerConfig};
use agent_oauth::{Agent, ClientAuth, TokenSet};

type BoxError = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn print_level(name: &str, token: &TokenSet, jwks: &Jwks) -> Result<(), BoxError> {
    // Signature, issuer and expiry checked against the server's published keys.
    let chain = verify_delegation_chain(&token.access_token, jwks, jwks.issuer()).await?;
    let act = if chain.actors.is_empty() {
        "-".to_owned()
    } else {
        chain.actor_names().join(" <- ")
    };
    println!(
        "{name:<11} sub={:<7} act={act:<30} depth={} scope={:<11} jkt={}",
        chain.sub.as_deref().unwrap_or("-"),
        chain.depth(),
        chain.scope.to_string(),
        chain.jkt.as_deref().unwrap_or("-"),
    );
    Ok(())
}

fn check(what: &str, status: http::StatusCode) -> Result<(), BoxError> {
    println!("{what:<11} GET /api/reports -> {status}");
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{what}: the resource answered {status}").into())
    }
}

async fn run() -> Result<(), BoxError> {
    let config = TestServerConfig::default()
        .with_client(TestClient::new(
            "researcher",
            TestClientAuth::SecretBasic("researcher-secret".into()),
        ))
        .with_client(TestClient::new(
            "summarizer",
            TestClientAuth::SecretBasic("summarizer-secret".into()),
        ));
    let server = TestServer::start_with(config).await;
    let api = server.resource_url();
    let reports = format!("{api}/reports");

    let parent = Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .scope("read write")
        .resource(&api)
        .on_event(|e| println!("  audit: {e:?}"))
        .build()
        .await?;
    // The sub-agents' own clients: their tokens are the actor tokens of the exchanges.
    let researcher = Agent::builder()
        .issuer(server.issuer())
        .client_id("researcher")
        .client_auth(ClientAuth::client_secret("researcher-secret"))
        .build()
        .await?;
    let summarizer = Agent::builder()
        .issuer(server.issuer())
        .client_id("summarizer")
        .client_auth(ClientAuth::client_secret("summarizer-secret"))
        .build()
        .await?;

    check("parent", parent.get(&reports).send().await?.status())?;

    let child = parent
        .delegate()
        .scope("read write")
        .actor_agent(&researcher)
        .lifetime(Duration::from_secs(120))
        .param("task_id", "task-7")
        .spawn()
        .await?;
    check("child", child.get(&reports).send().await?.status())?;

    let grandchild = child
        .delegate()
        .scope("read")
        .actor_agent(&summarizer)
        .lifetime(Duration::from_secs(60))
        .spawn()
        .await?;
    check(
        "grandchild",
        grandchild.get(&reports).send().await?.status(),
    )?;

    // A widening request is refused before anything is sent.
    match grandchild.delegate().scope("write").spawn().await {
        Err(e) => println!("widening    refused: {e}"),
        Ok(_) => return Err("a widening delegation was accepted".into()),
    }

    println!();
    let parent_token = parent.access_token(Some(&api)).await?.token().clone();
    let jwks = Jwks::new(parent.client().ok_or("no issuer")?.server().clone());
    print_level("parent", &parent_token, &jwks).await?;
    print_level("child", &child.token().await?, &jwks).await?;
    print_level("grandchild", &grandchild.token().await?, &jwks).await?;

    grandchild.revoke().await?;
    child.revoke().await?;
    println!("\nchild and grandchild tokens revoked");
    Ok(())
}
