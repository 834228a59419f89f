//! Log a user in with the device flow (RFC 8628), then call their API.
//!
//! With no arguments it runs against the embedded server and approves the code itself:
//! `cargo run --example device_flow --features testkit`. Against a real server:
//! `cargo run --example device_flow --features testkit -- --issuer URL --client-id ID --scope "openid offline_access"`
//! and enter the code it prints.

use agent_oauth::testkit::{TestServer, TestServerConfig};
use agent_oauth::Agent;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let embedded = match arg("--issuer") {
        Some(_) => None,
        None => Some(
            TestServer::start_with(
                TestServerConfig::default().with_device_interval(std::time::Duration::from_secs(1)),
            )
            .await,
        ),
    };
    let issuer = arg("--issuer")
        .or_else(|| embedded.as_ref().map(|s| s.issuer().to_owned()))
        .unwrap_or_default();
    let client_id = arg("--client-id").unwrap_or_else(|| "public-agent".into());
    let mut builder = Agent::builder()
        .issuer(issuer)
        .client_id(client_id)
        .scope(arg("--scope").unwrap_or_else(|| "read offline_access".into()));
    if let Some(s) = &embedded {
        builder = builder.resource(s.resource_url());
    }
    let agent = builder.build().await?;
    let tokens = agent
        .login_device(|auth| {
            println!(
                "Open {} and enter the code {}",
                auth.verification_uri_complete
                    .as_deref()
                    .unwrap_or(&auth.verification_uri),
                auth.user_code
            );
            if let Some(s) = &embedded {
                s.approve_device(&auth.user_code);
                println!("(approved by the embedded server)");
            }
        })
        .await?;
    println!(
        "logged in: scope \"{}\", refresh token kept (fp {})",
        tokens.scope,
        tokens
            .refresh_token
            .as_ref()
            .map(|r| r.fingerprint())
            .unwrap_or_default()
    );
    if let Some(s) = &embedded {
        let resp = agent.get(s.resource_url()).send().await?;
        println!("GET {} -> {}", s.resource_url(), resp.status());
        if !resp.status().is_success() {
            std::process::exit(1);
        }
    }
    Ok(())
}
