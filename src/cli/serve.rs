//! `agent-oauth serve`: the embedded authorization server and protected resource
//! (`agent_oauth::testkit`) as a standalone process on 127.0.0.1, for tests in any language.
//!
//! It prints its issuer, resource and test clients, then serves until it is killed or, when
//! stdin is not a terminal, until stdin closes. Lines on stdin are commands, each answered
//! with one JSON line on stdout: `stats` (the server's counters), `approve-device CODE` and
//! `deny-device CODE` (decide a pending device authorization), `revoke-all`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use agent_oauth::testkit::{Stats, TestClient, TestClientAuth, TestServer, TestServerConfig};
use serde_json::{json, Value};

use crate::exit::CliResult;

/// Arguments of `serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    /// The token endpoint demands DPoP nonces.
    #[arg(long)]
    nonce: bool,
    /// The protected resource demands its own DPoP nonces.
    #[arg(long)]
    resource_nonce: bool,
    /// The protected resource refuses Bearer tokens.
    #[arg(long)]
    dpop_required: bool,
    /// Access token lifetime in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    access_token_ttl: u64,
    /// Minimum device-flow polling interval in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    device_interval: u64,
    /// Serve dynamic client registration (RFC 7591) at /register.
    #[arg(long)]
    registration: bool,
    /// Print the start-up facts as one JSON line.
    #[arg(long)]
    json: bool,
    /// Keep serving when stdin closes (stop with a signal only).
    #[arg(long)]
    keep_running: bool,
}

/// Test clients: `(client_id, auth, secret)`.
const CLIENTS: [(&str, &str, Option<&str>); 3] = [
    ("agent", "client_secret_basic", Some("agent-secret")),
    (
        "agent-post",
        "client_secret_post",
        Some("agent-post-secret"),
    ),
    ("public-agent", "none", None),
];

/// Redirect URIs of every test client (any port on loopback): the library's loopback listener
/// uses `/callback`.
const REDIRECT_URIS: [&str; 2] = ["http://127.0.0.1/callback", "http://127.0.0.1/cb"];

fn config(args: &ServeArgs) -> TestServerConfig {
    let clients = CLIENTS
        .iter()
        .map(|(id, auth, secret)| {
            let auth = match (*auth, secret) {
                ("client_secret_basic", Some(s)) => TestClientAuth::SecretBasic((*s).to_owned()),
                ("client_secret_post", Some(s)) => TestClientAuth::SecretPost((*s).to_owned()),
                _ => TestClientAuth::None,
            };
            TestClient::new(*id, auth).with_redirect_uris(REDIRECT_URIS)
        })
        .collect();
    TestServerConfig::default()
        .with_clients(clients)
        .with_require_dpop_nonce(args.nonce)
        .with_resource_require_dpop_nonce(args.resource_nonce)
        .with_resource_dpop_required(args.dpop_required)
        .with_access_token_ttl(Duration::from_secs(args.access_token_ttl.max(1)))
        .with_device_interval(Duration::from_secs(args.device_interval))
        .with_dynamic_registration(args.registration)
}

/// The counters as JSON.
fn stats_json(s: &Stats) -> Value {
    json!({
        "token_requests": s.token_requests,
        "grants": {
            "client_credentials": s.grants.client_credentials,
            "authorization_code": s.grants.authorization_code,
            "refresh_token": s.grants.refresh_token,
            "device_code": s.grants.device_code,
            "token_exchange": s.grants.token_exchange,
        },
        "revoked_grants": s.revoked_grants,
        "nonce_challenges": s.nonce_challenges,
        "resource_requests": s.resource_requests,
        "resource_rejections": s.resource_rejections,
    })
}

/// Answer one stdin command.
fn command(server: &TestServer, line: &str) -> Value {
    let mut words = line.split_whitespace();
    match (words.next(), words.next()) {
        (Some("stats"), None) => stats_json(&server.stats()),
        (Some("approve-device"), Some(code)) => json!({"approved": server.approve_device(code)}),
        (Some("deny-device"), Some(code)) => json!({"denied": server.deny_device(code)}),
        (Some("revoke-all"), None) => {
            server.revoke_all();
            json!({"revoked": true})
        }
        _ => json!({"error": "unknown command",
            "commands": ["stats", "approve-device CODE", "deny-device CODE", "revoke-all"]}),
    }
}

/// Start the server, print what it serves, answer commands until stdin closes.
pub(crate) async fn run(args: ServeArgs) -> CliResult {
    let server = TestServer::start_with(config(&args)).await;
    let clients: Vec<Value> = CLIENTS
        .iter()
        .map(|(id, auth, secret)| json!({"client_id": id, "auth": auth, "secret": secret}))
        .collect();
    {
        let mut out = std::io::stdout().lock();
        if args.json {
            let facts = json!({
                "issuer": server.issuer(),
                "resource": server.resource_url(),
                "mcp": server.mcp_url(),
                "clients": clients,
            });
            let _ = writeln!(out, "{facts}");
        } else {
            let _ = writeln!(out, "issuer:   {}", server.issuer());
            let _ = writeln!(out, "resource: {}", server.resource_url());
            let _ = writeln!(out, "mcp:      {}", server.mcp_url());
            for (id, auth, secret) in CLIENTS {
                match secret {
                    Some(s) => {
                        let _ = writeln!(out, "client:   {id} ({auth}), secret {s}");
                    }
                    None => {
                        let _ = writeln!(out, "client:   {id} (public)");
                    }
                }
            }
            let _ = writeln!(out, "ready (test credentials only; stop with Ctrl-C)");
        }
        let _ = out.flush();
    }

    let stdin = std::io::stdin();
    if stdin.is_terminal() || args.keep_running {
        // Nothing to read commands from: serve until a signal ends the process.
        std::future::pending::<()>().await;
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in stdin.lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        let answer = command(&server, &line);
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
    Ok(())
}
