//! The crate's error type.
//!
//! One public [`Error`] whose variants say what failed. Every server response is untrusted, so
//! nothing a server sends can turn into a panic: it becomes one of these variants. No variant ever
//! carries a token, key or client secret; server bodies kept for diagnosis are capped
//! ([`MAX_ERROR_BODY`]) and never contain what the client sent.

use std::fmt;

use crate::challenge::Challenge;
use crate::secret::SentSecrets;

mod code;
mod verification;
pub use code::OAuthErrorCode;
pub use verification::VerificationError;

/// How many bytes of an unexpected response body an error keeps for diagnosis.
pub(crate) const MAX_ERROR_BODY: usize = 512;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong.
///
/// Match on the variant for detail, or ask the classification methods
/// ([`is_retryable`](Error::is_retryable), [`oauth_error`](Error::oauth_error),
/// [`status`](Error::status)).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller's configuration or use of the API is wrong (not a server fault).
    #[error("configuration error: {0}")]
    Config(String),

    /// A URL is not acceptable: not HTTPS off loopback, not absolute, or has a fragment.
    #[error("refused URL {url}: {reason}")]
    InsecureUrl {
        /// The URL's origin (never its query).
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The request could not be sent or the response not read (DNS, connect, TLS, reset, ...).
    #[error("{}transport error ({kind})", transport_context(.source.as_deref()))]
    Transport {
        /// What kind of transport failure.
        kind: TransportErrorKind,
        /// The underlying error, when there is one.
        #[source]
        source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
    },

    /// The operation's overall deadline passed (all attempts together).
    #[error("operation timed out after {0:?}")]
    Timeout(std::time::Duration),

    /// The response body was larger than the configured cap.
    #[error("response body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The configured cap in bytes.
        limit: usize,
    },

    /// An OAuth error response (RFC 6749 §5.2, RFC 6750 §3, RFC 9449 §7.1).
    #[error("{0}")]
    OAuth(Box<OAuthError>),

    /// The server answered with an HTTP status that is not an OAuth error response.
    #[error("{}unexpected HTTP status {status}{}", context_prefix(.context.as_deref()), body_suffix(.body))]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The start of the body (at most 512 bytes, lossily decoded).
        body: String,
        /// Seconds the server asked us to wait (`Retry-After`), when given.
        retry_after: Option<std::time::Duration>,
        /// The request that got this answer, when the crate knows it.
        context: Option<Box<ErrorContext>>,
    },

    /// The server's response is malformed: wrong content type, bad JSON, wrong types, missing
    /// fields, a value that breaks a protocol rule.
    #[error("invalid response: {0}")]
    InvalidResponse(String),

    /// Discovery failed: the document is missing, or its `issuer` / `resource` does not match
    /// (mix-up defence, RFC 8414 §3.3, RFC 9728 §3.3).
    #[error("discovery failed: {0}")]
    Discovery(String),

    /// A `WWW-Authenticate` header could not be parsed.
    #[error("malformed WWW-Authenticate header: {0}")]
    Challenge(#[from] crate::challenge::ChallengeError),

    /// The grant can no longer be used (refresh token rejected with `invalid_grant`, expired or
    /// revoked): a user or operator must authorize again.
    #[error("reauthorization required: {0}")]
    ReauthorizationRequired(String),

    /// A principal the agent acts for has no usable grant (none yet, rejected, or narrower than
    /// the scope asked): that principal must log in. Nothing was sent for it, and no other
    /// principal's token was used. The request says what a login needs.
    #[error("consent required: principal `{}` has no usable grant at `{}` ({})", .0.principal, .0.issuer, .0.reason)]
    ConsentRequired(Box<crate::event::ConsentRequest>),

    /// The stored grant's refresh token is bound to another DPoP key than this client's (a
    /// replica started with its own key): nothing was sent, since the server would refuse the
    /// refresh. Give every replica the same key (`DpopKey::from_pkcs8_pem` from a shared
    /// secret, or a `Signer` backed by a KMS or HSM).
    #[error("the stored grant is bound to DPoP key `{stored}`, but this client's key is {}", .ours.as_deref().map_or_else(|| "none".to_owned(), |o| format!("`{o}`")))]
    DpopKeyMismatch {
        /// The thumbprint recorded with the grant.
        stored: String,
        /// This client's key thumbprint (`None`: no DPoP key).
        ours: Option<String>,
    },

    /// A key or signature operation failed.
    #[error("crypto error: {0}")]
    Crypto(String),

    /// A signed JWT (an access token checked against its issuer's JWKS) was refused: see the
    /// [`VerificationError`](crate::jose::VerificationError) for what failed.
    #[error("token verification failed: {0}")]
    Verification(VerificationError),

    /// The token store failed (unreachable, refused the operation, or holds something that is
    /// not a grant). A refresh that needs the store is not sent; cached access tokens are still
    /// served until they expire.
    #[error("token store error: {0}")]
    Store(String),

    /// The store's lock for a grant was lost while its holder worked (its lease ran out and
    /// another holder took it): the holder must not overwrite what the newer one wrote.
    #[error("token store lease lost: {0}")]
    LeaseLost(String),

    /// An externally issued assertion (a workload identity token, an ID token) could not be
    /// obtained: its file, variable or command failed, it is malformed, or it has expired.
    /// Never carries the assertion itself.
    #[error("assertion from {origin}: {reason}")]
    Assertion {
        /// Where the assertion comes from (`file /var/run/...`, `env TOKEN`, `command ...`).
        origin: String,
        /// What went wrong.
        reason: String,
    },

    /// A delegation to a child agent was refused before any request was sent (it would widen
    /// the parent's scope, resources or audiences), or a child's credential cannot be renewed
    /// (the parent no longer holds a valid token, or the delegation was revoked).
    #[error("delegation refused: {0}")]
    Delegation(String),

    /// A protected resource answered 401 and following it to its RFC 9728 metadata failed
    /// (the document is missing, refused, unreachable, malformed or names another issuer).
    /// The resource's challenges are kept.
    #[error("protected resource discovery failed: {reason}")]
    ResourceDiscovery {
        /// Why the metadata could not be used.
        #[source]
        reason: Box<Error>,
        /// The challenges of the resource's 401 (`WWW-Authenticate`), as parsed.
        challenges: Vec<Challenge>,
    },

    /// A resource kept answering 403 `insufficient_scope` after the agent had asked for more
    /// scope as many times as it may ([`AgentBuilder::max_step_ups`](crate::AgentBuilder::max_step_ups)).
    #[error("resource `{resource}` still refuses the token after {attempts} scope step-ups (last asked for `{scope}`)")]
    StepUpExhausted {
        /// The resource.
        resource: String,
        /// The scope of the last token sent.
        scope: String,
        /// Step-ups made for this resource.
        attempts: u32,
        /// The resource's last answer.
        #[source]
        last: Box<Error>,
    },
}

/// The request a transport error happened in, kept as the error's source so that the variant
/// stays as it is; its own source is the underlying error.
#[derive(Debug)]
struct InRequest {
    context: ErrorContext,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl fmt::Display for InRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(s) => write!(f, "{}: {s}", self.context),
            None => write!(f, "{}", self.context),
        }
    }
}

impl std::error::Error for InRequest {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

fn in_request<'a>(
    source: Option<&'a (dyn std::error::Error + Send + Sync + 'static)>,
) -> Option<&'a InRequest> {
    source.and_then(|s| s.downcast_ref::<InRequest>())
}

fn transport_context(source: Option<&(dyn std::error::Error + Send + Sync + 'static)>) -> String {
    context_prefix(in_request(source).map(|r| &r.context))
}

fn context_prefix(context: Option<&ErrorContext>) -> String {
    context.map(|c| format!("{c}: ")).unwrap_or_default()
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// The kind of a [`Error::Transport`] failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// Could not connect (refused, DNS, TLS handshake). The request never reached the server.
    Connect,
    /// One attempt timed out.
    Timeout,
    /// The connection failed after the request may have been sent, or the body failed to read.
    Other,
}

impl fmt::Display for TransportErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Other => "io",
        })
    }
}

impl Error {
    /// True for failures worth retrying later: connect errors, timeouts, 5xx, 429, and OAuth
    /// errors that say so (`temporarily_unavailable`, `slow_down`, `server_error`).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Transport { kind, .. } => {
                matches!(
                    kind,
                    TransportErrorKind::Connect | TransportErrorKind::Timeout
                )
            }
            Error::Timeout(_) => true,
            Error::ResourceDiscovery { reason, .. } => reason.is_retryable(),
            Error::Http { status, .. } => *status == 429 || (500..600).contains(status),
            Error::OAuth(e) => {
                e.status == 429
                    || (500..600).contains(&e.status)
                    || matches!(
                        e.error,
                        OAuthErrorCode::TemporarilyUnavailable
                            | OAuthErrorCode::ServerError
                            | OAuthErrorCode::SlowDown
                    )
            }
            _ => false,
        }
    }

    /// The OAuth error response, if this is one.
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        match self {
            Error::OAuth(e) => Some(e),
            _ => None,
        }
    }

    /// The HTTP status the server answered with, when the failure came with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::OAuth(e) => Some(e.status),
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request this error answers (operation and endpoint), when the failure came from an
    /// authorization server endpoint the crate called: OAuth, HTTP and transport errors of
    /// token, device, revocation and introspection requests, and metadata fetches.
    pub fn context(&self) -> Option<&ErrorContext> {
        match self {
            Error::OAuth(e) => e.context.as_ref(),
            Error::Http { context, .. } => context.as_deref(),
            Error::Transport { source, .. } => in_request(source.as_deref()).map(|r| &r.context),
            _ => None,
        }
    }

    /// Name the request this error answers: set on OAuth and HTTP errors that carry none yet,
    /// put in front of the source of a transport error, and prefixed to the message of
    /// [`Error::InvalidResponse`].
    pub(crate) fn with_context(mut self, ctx: &ErrorContext) -> Self {
        match &mut self {
            Error::OAuth(e) => {
                e.context.get_or_insert_with(|| ctx.clone());
            }
            Error::Http { context, .. } => {
                context.get_or_insert_with(|| Box::new(ctx.clone()));
            }
            Error::InvalidResponse(msg) => *msg = format!("{ctx}: {msg}"),
            Error::Transport { source, .. } if in_request(source.as_deref()).is_none() => {
                *source = Some(std::sync::Arc::new(InRequest {
                    context: ctx.clone(),
                    source: source.take(),
                }));
            }
            _ => {}
        }
        self
    }

    /// Remove every secret in `sent` from the server text this error carries (OAuth error
    /// members and challenges, bodies, messages quoting the response).
    pub(crate) fn redacted(mut self, sent: &SentSecrets) -> Self {
        if sent.is_empty() {
            return self;
        }
        match &mut self {
            Error::OAuth(e) => e.redact(sent),
            Error::Http { body, .. } => sent.redact_in_place(body),
            Error::InvalidResponse(m)
            | Error::Discovery(m)
            | Error::ReauthorizationRequired(m)
            | Error::Delegation(m) => sent.redact_in_place(m),
            _ => {}
        }
        self
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidResponse(msg.into())
    }

    pub(crate) fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
}

/// An OAuth 2 error response (RFC 6749 §5.2), or a resource's `WWW-Authenticate` error
/// (RFC 6750 §3), with the HTTP status it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthError {
    /// The `error` code.
    pub error: OAuthErrorCode,
    /// `error_description`, if sent (capped, control characters removed).
    pub error_description: Option<String>,
    /// `error_uri`, if sent.
    pub error_uri: Option<String>,
    /// The HTTP status of the response.
    pub status: u16,
    /// Challenges parsed from `WWW-Authenticate`, if the response had any.
    pub challenges: Vec<Challenge>,
    /// The `DPoP-Nonce` the response carried, if any and if it is a valid nonce (RFC 9449 §8,
    /// §9: 1 to 512 `NQCHAR`).
    pub dpop_nonce: Option<String>,
    /// The request this error answers (operation and endpoint), when known.
    pub context: Option<ErrorContext>,
}

impl OAuthError {
    /// A new error with just a code and a status.
    pub fn new(error: OAuthErrorCode, status: u16) -> Self {
        OAuthError {
            error,
            error_description: None,
            error_uri: None,
            status,
            challenges: Vec::new(),
            dpop_nonce: None,
            context: None,
        }
    }

    fn redact(&mut self, sent: &SentSecrets) {
        if let OAuthErrorCode::Extension(code) = &mut self.error {
            sent.redact_in_place(code);
        }
        for text in [&mut self.error_description, &mut self.error_uri]
            .into_iter()
            .flatten()
        {
            sent.redact_in_place(text);
        }
        if self
            .dpop_nonce
            .as_deref()
            .is_some_and(|n| sent.contains_secret(n))
        {
            self.dpop_nonce = None;
        }
        for c in &mut self.challenges {
            c.redact_values(|v| sent.redact_in_place(v));
        }
    }
}

/// Which request an error answers: the operation (e.g. `token request (client_credentials)`)
/// and the endpoint URL without query, fragment or user info.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorContext {
    /// What the crate was doing, e.g. `token request (refresh_token)`, `revocation request`.
    pub operation: String,
    /// The endpoint it called: scheme, host, port and path only.
    pub endpoint: String,
}

impl ErrorContext {
    /// The context of `operation` at `url` (its query, fragment and user info are dropped).
    pub(crate) fn new(operation: impl Into<String>, url: &url::Url) -> Self {
        let mut u = url.clone();
        u.set_query(None);
        u.set_fragment(None);
        let _ = u.set_username("");
        let _ = u.set_password(None);
        ErrorContext {
            operation: operation.into(),
            endpoint: u.to_string(),
        }
    }
}

impl fmt::Display for ErrorContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.operation, self.endpoint)
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.context {
            write!(f, "{c}: ")?;
        }
        write!(f, "OAuth error `{}` (HTTP {})", self.error, self.status)?;
        if let Some(d) = &self.error_description {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for OAuthError {}

impl From<OAuthError> for Error {
    fn from(e: OAuthError) -> Self {
        Error::OAuth(Box::new(e))
    }
}

/// Keep at most `max` characters of server-provided text, dropping every character that can
/// forge or hide log content, so that a hostile server cannot forge log lines, reorder what a
/// reader sees, or flood errors: control characters, line and paragraph separators, bidi
/// controls and invisible format characters ([`is_hidden`]).
pub(crate) fn sanitize(s: &str, max: usize) -> String {
    let mut kept = s.chars().filter(|c| !is_hidden(*c));
    let mut out: String = kept.by_ref().take(max).collect();
    if kept.next().is_some() {
        out.push('…');
    }
    out
}

/// Characters [`sanitize`] drops: controls (`Cc`), line and paragraph separators (U+2028,
/// U+2029), bidi embeddings, overrides, isolates and marks (U+061C, U+200E, U+200F,
/// U+202A–U+202E, U+2066–U+2069), zero-width and invisible format characters (U+00AD,
/// U+180E, U+200B–U+200D, U+2060–U+2064, U+206A–U+206F, U+FEFF, U+FFF9–U+FFFB) and tag
/// characters (U+E0000–U+E007F).
pub(crate) fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0000}'..='\u{E007F}'
        )
}

/// What is wrong with a JSON document, by category and position only: serde's own message may
/// quote the offending value, and stored values include secrets.
pub(crate) fn json_problem(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "truncated",
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Data => "unexpected content",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

#[cfg(test)]
mod tests;
