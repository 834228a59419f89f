//! `agent-oauth curl`: one protected request through the `Agent` (discovery from a 401, a
//! token from the store or the server, DPoP proofs and nonces, refresh, step-up through the
//! device flow with `--device`); the body streams to stdout.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use agent_oauth::grant::LoopbackRedirect;
use agent_oauth::Error;
use http::Method;

use crate::exit::{code, CliError, CliResult};
use crate::profile::ClientArgs;

/// Arguments of `curl`.
#[derive(clap::Args, Debug)]
pub(crate) struct CurlArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// HTTP method (default GET, or POST with a body).
    #[arg(short = 'X', long = "request", value_name = "METHOD")]
    method: Option<String>,
    /// Extra header, `Name: value` (repeatable). Authorization and DPoP are set by the agent.
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    headers: Vec<String>,
    /// Request body as given (`@FILE` reads a file, `@-` stdin).
    #[arg(
        short = 'd',
        long = "data",
        value_name = "DATA",
        conflicts_with = "data_binary"
    )]
    data: Option<String>,
    /// Request body from a file: `@FILE` (`@-` for stdin).
    #[arg(long = "data-binary", value_name = "@FILE")]
    data_binary: Option<String>,
    /// Print the status and a one-line trace on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    /// Print the response status line and headers before the body (on stdout).
    #[arg(short = 'i', long)]
    include: bool,
    /// When a user grant is needed (first use, expired, step-up), log in with the device flow.
    #[arg(long, conflicts_with = "code")]
    device: bool,
    /// When a user grant is needed, log in with the browser (authorization code + PKCE).
    #[arg(long)]
    code: bool,
    /// Without --issuer: accept this authorization server when the resource names it, and use
    /// --client-id there (else the agent registers itself where the server allows it).
    #[arg(long, value_name = "ISSUER")]
    trust_issuer: Option<String>,
    /// The URL to call.
    url: String,
}

fn body_of(args: &CurlArgs) -> CliResult<Option<Vec<u8>>> {
    let read = |spec: &str| -> CliResult<Vec<u8>> {
        if spec == "-" {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
            Ok(buf)
        } else {
            let path = PathBuf::from(spec);
            std::fs::read(&path)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))
        }
    };
    if let Some(d) = &args.data {
        return match d.strip_prefix('@') {
            Some(spec) => read(spec).map(Some),
            None => Ok(Some(d.as_bytes().to_vec())),
        };
    }
    if let Some(d) = &args.data_binary {
        return match d.strip_prefix('@') {
            Some(spec) => read(spec).map(Some),
            None => Ok(Some(d.as_bytes().to_vec())),
        };
    }
    Ok(None)
}

/// Make the request; exit code 3 for an error status.
pub(crate) async fn run(args: CurlArgs) -> CliResult {
    let settings = args.client.resolve()?;
    let body = body_of(&args)?;
    let method = match &args.method {
        Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| CliError::usage(format!("invalid method `{m}`")))?,
        None if body.is_some() => Method::POST,
        None => Method::GET,
    };
    let mut builder = match &settings.issuer {
        Some(_) => settings.agent_builder()?,
        None => {
            let url = url::Url::parse(&args.url)
                .map_err(|e| CliError::usage(format!("`{}` is not a URL: {e}", args.url)))?;
            settings.discovering_builder(&url, args.trust_issuer.as_deref())?
        }
    };
    if args.device {
        builder = builder.on_device_authorization(|auth| {
            eprintln!(
                "To sign in, open {} and enter the code: {}",
                auth.verification_uri, auth.user_code
            );
            eprintln!("Waiting for approval...");
        });
    } else if args.code {
        let listener = LoopbackRedirect::bind().await?;
        let redirect_uri = listener.redirect_uri().to_owned();
        let slot = std::sync::Arc::new(tokio::sync::Mutex::new(Some(listener)));
        builder = builder.on_authorization(redirect_uri, move |prompt| {
            let slot = slot.clone();
            async move {
                eprintln!("Sign in at this URL:");
                eprintln!("  {}", prompt.url);
                let listener = match slot.lock().await.take() {
                    Some(l) => l,
                    None => {
                        return Err(Error::Config(
                            "a second browser login in one command is not supported".into(),
                        ))
                    }
                };
                listener.wait().await
            }
        });
    }
    let agent = builder.build().await?;
    let mut request = agent.request(method.clone(), &args.url);
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            return Err(CliError::usage(format!(
                "header `{h}` is not `Name: value`"
            )));
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| CliError::usage(format!("invalid header name in `{h}`")))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| CliError::usage(format!("invalid header value for `{name}`")))?;
        request = request.header(name, value);
    }
    if let Some(b) = body {
        request = request.body(b);
    }
    let started = Instant::now();
    let response = request.send_stream().await?;
    let status = response.status();
    let mut out = std::io::stdout().lock();
    if args.include {
        let _ = writeln!(out, "HTTP/1.1 {status}");
        for (name, value) in response.headers() {
            let _ = writeln!(out, "{name}: {}", String::from_utf8_lossy(value.as_bytes()));
        }
        let _ = writeln!(out);
    }
    let mut body = response.into_body();
    let mut bytes = 0usize;
    while let Some(chunk) = body.next_chunk().await? {
        bytes += chunk.len();
        if out.write_all(&chunk).and_then(|()| out.flush()).is_err() {
            // The reader went away (`| head`): stop quietly.
            break;
        }
    }
    drop(out);
    if args.verbose {
        let binding = match agent.dpop_key() {
            Some(k) => format!("DPoP jkt={}", k.thumbprint()),
            None => "no DPoP".to_owned(),
        };
        eprintln!(
            "{method} {} -> {} ({bytes} bytes, {} ms, {binding})",
            args.url,
            status.as_u16(),
            started.elapsed().as_millis()
        );
    }
    if status.is_client_error() || status.is_server_error() {
        return Err(CliError::new(
            code::HTTP,
            format!("{method} {} answered {status}", args.url),
        )
        .hint("the body (if any) is on stdout; -v shows the trace"));
    }
    Ok(())
}
