//! Workload identity for `token` and `curl`: the JWT bearer grant (RFC 7523) with a platform's
//! token (a file it rotates, an environment variable, a helper program), and a SPIFFE JWT-SVID
//! as the client assertion. The token itself is never an argument.

use std::path::PathBuf;

use agent_oauth::assertion::AssertionSource;

use crate::exit::{CliError, CliResult};

/// Where a workload's identity token comes from.
#[derive(clap::Args, Debug, Default, Clone)]
pub(crate) struct WorkloadArgs {
    /// Get tokens with the JWT bearer grant (RFC 7523), the assertion read from FILE: a
    /// Kubernetes projected service-account token, a SPIFFE JWT-SVID, a CI job's token. The file
    /// is re-read whenever the platform rotates it. Without --client-id no client
    /// authentication is sent (workload identity federation).
    #[arg(long, value_name = "FILE", env = "AGENT_OAUTH_ASSERTION_FILE",
          conflicts_with_all = ["assertion_env", "assertion_command"])]
    pub(crate) assertion_file: Option<PathBuf>,
    /// As --assertion-file, the assertion read from the environment variable VAR (its name, not
    /// its value).
    #[arg(long, value_name = "VAR", conflicts_with = "assertion_command")]
    pub(crate) assertion_env: Option<String>,
    /// As --assertion-file, the assertion printed by PROGRAM (run without a shell, with each
    /// --assertion-arg), run again shortly before the assertion it printed expires.
    #[arg(long, value_name = "PROGRAM")]
    pub(crate) assertion_command: Option<String>,
    /// An argument of --assertion-command (repeatable).
    #[arg(
        long,
        value_name = "ARG",
        requires = "assertion_command",
        allow_hyphen_values = true
    )]
    pub(crate) assertion_arg: Vec<String>,
    /// Authenticate the client with the SPIFFE JWT-SVID in FILE (`client_assertion_type`
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-spiffe`), re-read when it changes; the
    /// client id is the SVID's SPIFFE ID.
    #[arg(long, value_name = "FILE", env = "AGENT_OAUTH_SPIFFE_SVID")]
    pub(crate) spiffe_svid: Option<PathBuf>,
}

/// The resolved workload settings.
#[derive(Debug, Default, Clone)]
pub(crate) struct Workload {
    /// The JWT bearer grant's assertion, when the grant is the JWT bearer grant.
    pub(crate) grant: Option<AssertionSource>,
    /// The SVID file authenticating the client.
    pub(crate) svid: Option<PathBuf>,
}

impl WorkloadArgs {
    /// The sources these arguments name.
    pub(crate) fn resolve(&self) -> CliResult<Workload> {
        let grant = if let Some(path) = &self.assertion_file {
            Some(AssertionSource::file(path))
        } else if let Some(var) = &self.assertion_env {
            if std::env::var_os(var).is_none() {
                return Err(
                    CliError::usage(format!("--assertion-env: {var} is not set"))
                        .hint("export the variable that holds the workload's token"),
                );
            }
            Some(AssertionSource::env(var))
        } else {
            self.assertion_command
                .as_ref()
                .map(|program| AssertionSource::command(program, self.assertion_arg.clone()))
        };
        Ok(Workload {
            grant,
            svid: self.spiffe_svid.clone(),
        })
    }
}
