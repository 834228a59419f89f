//! Exit codes and the one-line error (plus a hint) every failure is reported as.

use std::fmt;

use agent_oauth::{Error, OAuthErrorCode};

/// Exit codes, documented in `--help` and the README.
pub(crate) mod code {
    /// Success.
    pub(crate) const OK: u8 = 0;
    /// A failure that fits no other class (local I/O, the token store, keys).
    pub(crate) const FAILURE: u8 = 1;
    /// Bad usage: unknown flag, missing setting, invalid value (clap's own code as well).
    pub(crate) const USAGE: u8 = 2;
    /// An HTTP error: the server answered with an error status, or could not be reached.
    pub(crate) const HTTP: u8 = 3;
    /// An OAuth error: an error response of the authorization server, or a response that breaks
    /// the protocol (discovery, metadata, challenges).
    pub(crate) const OAUTH: u8 = 4;
    /// A user has to act: log in (again), approve more scope, or finish a pending login.
    pub(crate) const USER_ACTION: u8 = 5;
}

/// The exit-code table shown at the end of `--help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  other failure (local files, token store, keys)
  2  bad usage (unknown flag, missing or invalid setting)
  3  HTTP error (error status from the server, or server unreachable)
  4  OAuth error (error response or invalid protocol response from the server)
  5  user action needed (log in with `agent-oauth token --device` or `--code`, or approve)";

/// A failure of one command: what went wrong (one line), what to try, and the exit code.
#[derive(Debug)]
pub(crate) struct CliError {
    pub(crate) code: u8,
    pub(crate) message: String,
    pub(crate) hint: Option<String>,
}

impl CliError {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: one_line(&message.into()),
            hint: None,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(code::USAGE, message)
    }

    pub(crate) fn failure(message: impl Into<String>) -> Self {
        Self::new(code::FAILURE, message)
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(one_line(&hint.into()));
        self
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error: {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\nhint: {hint}")?;
        }
        Ok(())
    }
}

/// Collapse whitespace and line breaks so an error is one line whatever the server sent.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The exit code a library error belongs to.
pub(crate) fn code_of(error: &Error) -> u8 {
    match error {
        Error::Config(_) | Error::InsecureUrl { .. } => code::USAGE,
        Error::Transport { .. } | Error::Timeout(_) | Error::BodyTooLarge { .. } => code::HTTP,
        Error::Http { .. } => code::HTTP,
        Error::ReauthorizationRequired(_) | Error::StepUpExhausted { .. } => code::USER_ACTION,
        Error::OAuth(o) => match o.error {
            OAuthErrorCode::AuthorizationPending | OAuthErrorCode::InsufficientScope => {
                code::USER_ACTION
            }
            _ => code::OAUTH,
        },
        Error::ResourceDiscovery { reason, .. } => match code_of(reason) {
            code::HTTP => code::HTTP,
            _ => code::OAUTH,
        },
        Error::InvalidResponse(_)
        | Error::Discovery(_)
        | Error::Challenge(_)
        | Error::Delegation(_) => code::OAUTH,
        _ => code::FAILURE,
    }
}

/// A hint for a library error, when there is a useful one.
fn hint_of(error: &Error) -> Option<&'static str> {
    match error {
        Error::ReauthorizationRequired(_) => {
            Some("log in again with `agent-oauth token --device` or `agent-oauth token --code`")
        }
        Error::StepUpExhausted { .. } => {
            Some("the resource needs more scope than this client may get; check --scope")
        }
        Error::InsecureUrl { .. } => Some("use https:// (plain http is only allowed on loopback)"),
        Error::Transport { .. } | Error::Timeout(_) => {
            Some("is the server running and the URL right? (`agent-oauth discover URL` shows each step)")
        }
        Error::Config(_) => Some("see `agent-oauth <command> --help`"),
        Error::OAuth(o) => match o.error {
            OAuthErrorCode::InvalidClient => Some(
                "check --client-id and the secret (AGENT_OAUTH_CLIENT_SECRET, --client-secret-file or --client-secret-stdin)",
            ),
            OAuthErrorCode::InvalidScope => Some("ask for scopes the server knows (--scope)"),
            OAuthErrorCode::InvalidTarget => {
                Some("the server does not issue tokens for that --resource")
            }
            OAuthErrorCode::UnauthorizedClient | OAuthErrorCode::UnsupportedGrantType => {
                Some("this client may not use that grant; try another `token` mode")
            }
            OAuthErrorCode::AccessDenied => Some("the user declined; run the login again"),
            OAuthErrorCode::ExpiredToken => Some("the login code expired; run the login again"),
            _ => None,
        },
        Error::Discovery(_) | Error::ResourceDiscovery { .. } => {
            Some("`agent-oauth discover URL` shows each discovery step")
        }
        Error::Store(_) => Some(
            "check the token directory (`tokens/` in the config dir, AGENT_OAUTH_CONFIG_DIR) and its permissions; removing a broken file there forgets that grant",
        ),
        _ => None,
    }
}

/// The innermost cause of a transport error (an I/O or TLS error such as "connection refused"
/// or "invalid peer certificate"), which never holds a URL; outer layers may quote the query.
fn root_cause(error: &Error) -> Option<String> {
    if !matches!(error, Error::Transport { .. }) {
        return None;
    }
    let mut cause: &dyn std::error::Error = std::error::Error::source(error)?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

impl From<Error> for CliError {
    fn from(error: Error) -> Self {
        let mut message = error.to_string();
        if let Some(cause) = root_cause(&error) {
            message = format!("{message}: {cause}");
        }
        let mut e = CliError::new(code_of(&error), message);
        if let Some(h) = hint_of(&error) {
            e = e.hint(h);
        }
        e
    }
}

/// `Result` of a command.
pub(crate) type CliResult<T = ()> = std::result::Result<T, CliError>;

#[cfg(test)]
mod tests;
