//! Call any protected API from the command line.
//!
//! ```text
//! AGENT_OAUTH_CLIENT_SECRET=… cargo run --example call_api -- \
//!     --issuer https://as.example.com --client-id my-agent \
//!     [--scope "read write"] [--resource https://api.example.com] [--method GET] [--data '{"a":1}'] \
//!     https://api.example.com/things
//! ```
//!
//! The secret comes from the environment, never from the command line (which other users of
//! the machine can read). Without `--resource`, the API's 401 challenge is followed to its
//! RFC 9728 metadata. Exits non-zero when the call fails or answers with an error status.

use agent_oauth::{Agent, ClientAuth};

fn usage() -> ! {
    eprintln!(
        "usage: call_api --issuer URL --client-id ID [--scope S] [--resource URL] [--method M] [--data BODY] URL\n\
         client secret: AGENT_OAUTH_CLIENT_SECRET (unset = public client)"
    );
    std::process::exit(2)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (mut issuer, mut client_id, mut scope, mut method, mut data) =
        (None, None, None, "GET".to_owned(), None);
    let mut resources = Vec::new();
    let mut url = None;
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--issuer" => issuer = Some(value()),
            "--client-id" => client_id = Some(value()),
            "--scope" => scope = Some(value()),
            "--resource" => resources.push(value()),
            "--method" => method = value().to_ascii_uppercase(),
            "--data" => data = Some(value()),
            "-h" | "--help" => usage(),
            other if url.is_none() && !other.starts_with("--") => url = Some(other.to_owned()),
            _ => usage(),
        }
    }
    let (Some(issuer), Some(client_id), Some(url)) = (issuer, client_id, url) else {
        usage()
    };
    let auth = match std::env::var("AGENT_OAUTH_CLIENT_SECRET") {
        Ok(secret) if !secret.is_empty() => ClientAuth::client_secret(secret),
        _ => ClientAuth::none(),
    };
    let mut builder = Agent::builder()
        .issuer(issuer)
        .client_id(client_id)
        .client_auth(auth);
    if let Some(s) = scope {
        builder = builder.scope(s);
    }
    for r in resources {
        builder = builder.resource(r);
    }
    let agent = builder.build().await?;
    let mut req = agent.request(method.parse()?, &url);
    if let Some(d) = data {
        req = req.header("content-type", "application/json").body(d);
    }
    let resp = agent_send(req).await?;
    eprintln!("{}", resp.status());
    println!("{}", String::from_utf8_lossy(resp.body()));
    if !resp.status().is_success() {
        std::process::exit(1);
    }
    Ok(())
}

async fn agent_send(
    req: agent_oauth::AgentRequest,
) -> Result<agent_oauth::transport::HttpResponse, agent_oauth::Error> {
    req.send().await
}
