//! `agent-oauth token`: get a token with client credentials (default), the JWT bearer grant of a
//! workload identity (`--assertion-file`, `--assertion-env`, `--assertion-command`), the device
//! flow, the authorization code flow with PKCE and a loopback listener, or token exchange.
//!
//! The modes are one flag each in the `mode` group, so further modes (a JWT bearer /
//! workload-identity assertion) are one more flag and one more arm of [`Mode`].

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use agent_oauth::grant::{LoopbackRedirect, TokenExchangeRequest};
use agent_oauth::{Agent, TokenParams, TokenSet};

use crate::exit::{code, CliError, CliResult};
use crate::profile::{read_token_source, ClientArgs};
use crate::show;

/// Arguments of `token`.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").args(["device", "code", "exchange"])))]
pub(crate) struct TokenArgs {
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// Log a user in with the device flow (RFC 8628): shows a code and a URL, then waits.
    #[arg(long)]
    device: bool,
    /// Log a user in with the authorization code flow + PKCE: opens the browser (or prints the
    /// URL) and waits for the redirect on a loopback listener.
    #[arg(long)]
    code: bool,
    /// Exchange a token (RFC 8693): --subject-token is required, --actor-token optional.
    #[arg(long, requires = "subject_token")]
    exchange: bool,
    /// Token to exchange: `-` (stdin) or `@FILE`.
    #[arg(long, value_name = "-|@FILE")]
    subject_token: Option<String>,
    /// Actor token of the exchange: `-` (stdin) or `@FILE`.
    #[arg(long, value_name = "-|@FILE")]
    actor_token: Option<String>,
    /// Audience of an exchanged token.
    #[arg(long)]
    audience: Option<String>,
    /// Never try to open a browser for --code; print the URL only.
    #[arg(long)]
    no_browser: bool,
    /// How long --code waits for the redirect, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    /// Print the access token after the summary.
    #[arg(long)]
    print_token: bool,
    /// Print the token set as JSON (access token included, refresh token never).
    #[arg(long)]
    json: bool,
}

/// The ways to get a token.
enum Mode {
    ClientCredentials,
    Device,
    Code,
    Exchange,
}

impl TokenArgs {
    fn mode(&self) -> Mode {
        if self.device {
            Mode::Device
        } else if self.code {
            Mode::Code
        } else if self.exchange {
            Mode::Exchange
        } else {
            Mode::ClientCredentials
        }
    }
}

/// Get the token and print it.
pub(crate) async fn run(args: TokenArgs) -> CliResult {
    let settings = args.client.resolve()?;
    let tokens = match args.mode() {
        Mode::ClientCredentials => {
            settings.issuer()?;
            if !settings.is_workload() {
                settings.client_id()?;
            }
            if !settings.is_confidential() && !settings.is_workload() {
                return Err(CliError::usage("client credentials need a client secret or key")
                    .hint("set AGENT_OAUTH_CLIENT_SECRET (or --client-secret-file / --client-secret-stdin, --client-key, --spiffe-svid), use a workload token (--assertion-file), or log a user in with --device or --code"));
            }
            let agent = settings.agent_builder()?.build().await?;
            let token = agent.access_token(settings.resource.as_deref()).await?;
            token.token().clone()
        }
        Mode::Device => {
            let agent = settings.agent_builder()?.build().await?;
            device_login(&agent).await?
        }
        Mode::Code => {
            let agent = settings.agent_builder()?.build().await?;
            code_login(&agent, !args.no_browser, Duration::from_secs(args.timeout)).await?
        }
        Mode::Exchange => {
            let agent = settings.agent_builder()?.build().await?;
            exchange(&agent, &args, &settings).await?
        }
    };
    if args.json {
        println!("{}", show::token_json(&tokens));
    } else {
        println!("{}", show::summary(&tokens, args.print_token));
    }
    Ok(())
}

/// Device flow: show the code, wait (with a progress indicator on a terminal), keep the grant.
pub(crate) async fn device_login(agent: &Agent) -> CliResult<TokenSet> {
    let started = Instant::now();
    let ticker = tokio::spawn(async move {
        if !std::io::stderr().is_terminal() {
            return;
        }
        let frames = ['|', '/', '-', '\\'];
        let mut i = 0usize;
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            eprint!(
                "\r{} waiting for approval ({}s)",
                frames[i % frames.len()],
                started.elapsed().as_secs()
            );
            i = i.wrapping_add(1);
        }
    });
    let result = agent
        .login_device(|auth| {
            eprintln!(
                "To sign in, open {} and enter the code: {}",
                auth.verification_uri, auth.user_code
            );
            if let Some(complete) = &auth.verification_uri_complete {
                eprintln!("(or open {complete})");
            }
            eprintln!(
                "Waiting for approval (code valid for {}s)...",
                auth.expires_in.as_secs()
            );
        })
        .await;
    ticker.abort();
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    Ok(result?)
}

/// Authorization code + PKCE through the loopback listener.
pub(crate) async fn code_login(
    agent: &Agent,
    open_browser: bool,
    timeout: Duration,
) -> CliResult<TokenSet> {
    let listener = LoopbackRedirect::bind().await?;
    let pending = agent.authorization_url(listener.redirect_uri()).await?;
    eprintln!("Sign in at this URL:");
    eprintln!("  {}", pending.url);
    if open_browser && open_in_browser(pending.url.as_str()) {
        eprintln!("(a browser was asked to open it)");
    }
    eprintln!("Waiting for the redirect to {} ...", pending.redirect_uri);
    let callback = match tokio::time::timeout(timeout, listener.wait()).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(CliError::new(
                code::USER_ACTION,
                format!("no redirect arrived within {}s", timeout.as_secs()),
            )
            .hint("open the URL in a browser on this machine, or use --device"))
        }
    };
    Ok(agent.complete_authorization(&pending, &callback).await?)
}

/// Ask the desktop to open `url`; `false` when there is no browser to ask.
fn open_in_browser(url: &str) -> bool {
    let command: Option<(&str, Vec<&str>)> = if cfg!(target_os = "macos") {
        Some(("open", vec![url]))
    } else if cfg!(windows) {
        Some(("rundll32", vec!["url.dll,FileProtocolHandler", url]))
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some(("xdg-open", vec![url]))
    } else {
        None
    };
    let Some((program, args)) = command else {
        return false;
    };
    match std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
            true
        }
        Err(_) => false,
    }
}

/// Token exchange (RFC 8693) at the profile's authorization server.
async fn exchange(
    agent: &Agent,
    args: &TokenArgs,
    settings: &crate::profile::Settings,
) -> CliResult<TokenSet> {
    let (Some(subject), Some(client)) = (args.subject_token.as_deref(), agent.client()) else {
        return Err(CliError::usage("--exchange needs --subject-token -|@FILE"));
    };
    if subject == "-" && args.actor_token.as_deref() == Some("-") {
        return Err(CliError::usage(
            "only one of --subject-token and --actor-token can be read from stdin",
        ));
    }
    let mut params = TokenParams::new();
    if let Some(s) = &settings.scope {
        params = params.scope(s.as_str());
    }
    if let Some(r) = &settings.resource {
        params = params.resource(r.as_str());
    }
    if let Some(a) = &args.audience {
        params = params.audience(a.as_str());
    }
    let mut request = TokenExchangeRequest::new(read_token_source(subject)?).params(params);
    if let Some(actor) = args.actor_token.as_deref() {
        request = request.actor(
            read_token_source(actor)?,
            "urn:ietf:params:oauth:token-type:access_token",
        );
    }
    Ok(client.token_exchange(&request, None).await?)
}
