//! An agent that authenticates with a client certificate (RFC 8705 `tls_client_auth`) and gets
//! certificate-bound tokens.
//!
//! ```text
//! cargo run --example mtls_agent --features mtls -- \
//!     --issuer https://as.example.com --client-id my-agent \
//!     --cert client.pem --key client.key [--ca private-root.pem] https://api.example.com/things
//! ```
//! Without `--cert`, a self-signed certificate is generated (`self_signed_tls_client_auth`) and
//! its thumbprint printed, for registration. Tokens are bound to the certificate (the default
//! DPoP mode does not add DPoP when a certificate is presented). The URL's resource is learnt
//! from its 401 (RFC 9728). CI runs this example against oidc-provider over HTTPS
//! (`hardening_13_mtls_example_runs_against_oidc_provider`).

use agent_oauth::transport::cnf_x5t_s256;
use agent_oauth::{Agent, ClientAuth, ClientIdentity, TrustRoots};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let (Some(issuer), Some(client_id), Some(url)) =
        (arg("--issuer"), arg("--client-id"), args.last().cloned())
    else {
        eprintln!(
            "usage: mtls_agent --issuer URL --client-id ID [--cert PEM --key PEM] [--ca PEM] URL"
        );
        std::process::exit(2);
    };
    let (identity, auth) = match (arg("--cert"), arg("--key")) {
        (Some(cert), Some(key)) => (
            ClientIdentity::from_pem(
                &std::fs::read_to_string(cert)?,
                &std::fs::read_to_string(key)?,
            )?,
            ClientAuth::tls_client_auth(),
        ),
        _ => (
            ClientIdentity::self_signed(&client_id)?,
            ClientAuth::self_signed_tls_client_auth(),
        ),
    };
    println!("client certificate x5t#S256: {}", identity.thumbprint());
    let mut builder = Agent::builder()
        .issuer(issuer)
        .client_id(client_id)
        .client_auth(auth)
        .client_identity(identity.clone());
    if let Some(ca) = arg("--ca") {
        builder = builder.trust_roots(TrustRoots::from_pem(&std::fs::read_to_string(ca)?)?);
    }
    let agent = builder.build().await?;
    let token = agent.access_token(None).await?;
    println!(
        "token bound to: {}",
        cnf_x5t_s256(token.token()).unwrap_or_else(|| "(not visible: opaque token)".into())
    );
    let resp = agent.get(&url).send().await?;
    println!("GET {url} -> {}", resp.status());
    if !resp.status().is_success() {
        return Err(format!("the resource answered {}", resp.status()).into());
    }
    Ok(())
}
