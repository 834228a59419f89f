//! `agent-oauth`: discover, get tokens, call APIs like curl, inspect tokens and run the
//! embedded test server from a shell. A thin layer over the `agent_oauth` library's public API
//! (feature `cli`).

mod curl;
mod discover;
mod exit;
mod inspect;
mod keygen;
mod profile;
mod register;
mod serve;
mod show;
mod token;
mod workload;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::{code, CliError, CliResult, EXIT_CODES_HELP};

/// OAuth 2 for agents, from a terminal: discovery, tokens (client credentials, device, code +
/// PKCE, token exchange; DPoP and mTLS bound), protected calls, token inspection and an
/// embedded test server.
///
/// Settings come from flags, then AGENT_OAUTH_* environment variables, then the profile in
/// `<config dir>/config.json` (config dir: AGENT_OAUTH_CONFIG_DIR, else
/// $XDG_CONFIG_HOME/agent-oauth, else ~/.config/agent-oauth). Grants and refresh tokens are kept
/// in `<config dir>/tokens`, so later commands reuse them. Secrets are read from the
/// environment, a file or stdin, never from arguments.
#[derive(Parser, Debug)]
#[command(name = "agent-oauth", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Follow discovery for a resource URL or an issuer and print each step.
    Discover(discover::DiscoverArgs),
    /// Get a token: client credentials (default), --device, --code or --exchange.
    Token(token::TokenArgs),
    /// Make a protected request through the agent (discovery, DPoP, nonces, refresh).
    Curl(curl::CurlArgs),
    /// Decode a JWT access token or DPoP proof (header, claims, cnf, act chain, expiry).
    Inspect(inspect::InspectArgs),
    /// Create a P-256 key (PKCS#8 PEM) for DPoP or client assertions and print its thumbprint.
    Keygen(keygen::KeygenArgs),
    /// Register a client dynamically (RFC 7591) and print its registration.
    Register(register::RegisterArgs),
    /// Render a Client ID Metadata Document to host at the client id URL.
    ClientMetadata(register::ClientMetadataArgs),
    /// Run the embedded authorization server and protected resource on loopback.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    code::OK
                }
                _ => code::USAGE,
            });
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::from(code::OK),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "{e}");
            ExitCode::from(e.code)
        }
    }
}

fn run(cli: Cli) -> CliResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failure(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async move {
        match cli.command {
            Command::Discover(a) => discover::run(a).await,
            Command::Token(a) => token::run(a).await,
            Command::Curl(a) => curl::run(a).await,
            Command::Inspect(a) => inspect::run(a).await,
            Command::Keygen(a) => keygen::run(a),
            Command::Register(a) => register::run_register(a).await,
            Command::ClientMetadata(a) => register::run_client_metadata(a),
            Command::Serve(a) => serve::run(a).await,
        }
    })
}
