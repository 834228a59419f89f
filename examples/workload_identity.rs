//! An agent with no secret of its own: its identity is a token the platform rotates in a file
//! (a Kubernetes projected service-account token, a SPIFFE JWT-SVID), exchanged for access tokens
//! with the JWT bearer grant (RFC 7523). Then enterprise-managed authorization: the same agent
//! acting for a signed-in user through an ID-JAG from the enterprise identity provider.
//!
//! `cargo run --example workload_identity --features testkit` runs everything against embedded
//! servers, playing the platform itself. Against a real authorization server:
//! `cargo run --example workload_identity --features testkit -- --issuer URL --token-file PATH --resource URL`.

use std::sync::Arc;
use std::time::Duration;

use agent_oauth::assertion::AssertionSource;
use agent_oauth::grant::IdJagIssuer;
use agent_oauth::testkit::{TestIdentityIssuer, TestServer, TestServerConfig};
use agent_oauth::{Agent, AuthorizationServer, ClientAuth, HttpTransport, OAuthClient};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if let (Some(issuer), Some(file), Some(resource)) =
        (arg("--issuer"), arg("--token-file"), arg("--resource"))
    {
        return call(&issuer, AssertionSource::file(file), &resource).await;
    }

    // The platform: an issuer of workload identities, trusted by the authorization server.
    let platform = TestIdentityIssuer::new("https://kubernetes.default.svc");
    let server = TestServer::start_with(
        TestServerConfig::default().with_trusted_issuer(platform.issuer(), platform.public_jwk()),
    )
    .await;
    let dir = std::env::temp_dir().join(format!("agent-oauth-wif-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("token");
    let rotate = |sub: &str| -> std::io::Result<()> {
        let tmp = dir.join("token.tmp");
        std::fs::write(
            &tmp,
            platform.mint(sub, server.issuer(), Duration::from_secs(600)),
        )?;
        std::fs::rename(&tmp, &token_file)
    };
    rotate("system:serviceaccount:agents:indexer")?;
    let agent = Agent::builder()
        .issuer(server.issuer())
        .client_auth(ClientAuth::omitted())
        .jwt_bearer(AssertionSource::file(&token_file))
        .resource(server.resource_url())
        .scope("read")
        .build()
        .await?;
    let body = get(&agent, &server.resource_url()).await?;
    println!("workload identity: called the API as {}", body["sub"]);

    // The platform rotates the token in place; the next token request carries the new one.
    rotate("system:serviceaccount:agents:indexer-v2")?;
    server.revoke_all();
    let body = get(&agent, &server.resource_url()).await?;
    println!("after rotation: called the API as {}", body["sub"]);
    assert_eq!(body["sub"], "system:serviceaccount:agents:indexer-v2");

    // Enterprise-managed authorization: the user's single sign-on ID token becomes an ID-JAG at
    // the identity provider, which the MCP server's authorization server takes as a grant.
    let sso = TestIdentityIssuer::new("https://sso.acme.example");
    let idp = TestServer::start_with(
        TestServerConfig::default()
            .with_id_jag_issuance(true)
            .with_trusted_issuer(sso.issuer(), sso.public_jwk()),
    )
    .await;
    let mcp_as = TestServer::start_with(
        TestServerConfig::default().with_trusted_issuer(idp.issuer(), idp.public_jwk()),
    )
    .await;
    let id_token = sso.mint("alice@acme.example", "agent", Duration::from_secs(3600));
    let idp_client = OAuthClient::builder(
        AuthorizationServer::new(idp.issuer(), HttpTransport::new()?)?,
        "agent",
    )
    .auth(ClientAuth::client_secret_basic("agent-secret"))
    .build();
    let jags = Arc::new(IdJagIssuer::new(
        idp_client,
        AssertionSource::fixed(id_token),
    ));
    let for_alice = Agent::builder()
        .issuer(mcp_as.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .enterprise_authorization(jags.clone())
        .resource(mcp_as.resource_url())
        .scope("read")
        .build()
        .await?;
    let body = get(&for_alice, &mcp_as.resource_url()).await?;
    println!(
        "enterprise-managed: called the MCP server for {} ({} ID-JAG issued)",
        body["sub"],
        jags.issued()
    );
    assert_eq!(body["sub"], "alice@acme.example");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

async fn call(
    issuer: &str,
    source: AssertionSource,
    resource: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let agent = Agent::builder()
        .issuer(issuer)
        .client_auth(ClientAuth::omitted())
        .jwt_bearer(source)
        .resource(resource)
        .build()
        .await?;
    let body = get(&agent, resource).await?;
    println!("{body}");
    Ok(())
}

async fn get(agent: &Agent, url: &str) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let resp = agent.get(url).send().await?;
    if resp.status() != 200 {
        return Err(format!("{url} answered {}", resp.status()).into());
    }
    Ok(serde_json::from_slice(resp.body())?)
}
