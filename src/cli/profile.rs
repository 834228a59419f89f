//! Settings of a command: flags, then environment variables (`AGENT_OAUTH_*`), then the
//! profile in the config file; secrets only from the environment, a file or stdin; the token
//! store and the profile's DPoP key under the user's config directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent_oauth::assertion::AssertionSource;
use agent_oauth::discovery::TrustPolicy;
use agent_oauth::store::{FileStore, TokenStore};
use agent_oauth::{Agent, AgentBuilder, AssertionKey, ClientAuth, DpopKey, DpopMode, SecretString};
use serde::Deserialize;

use crate::exit::{CliError, CliResult};
use crate::workload::{Workload, WorkloadArgs};

/// The environment variable holding the client secret (never a flag: argv is visible to
/// every local user).
pub(crate) const CLIENT_SECRET_ENV: &str = "AGENT_OAUTH_CLIENT_SECRET";

/// How to connect to an authorization server as a client: shared by `token`, `curl`,
/// `discover` and `register`.
#[derive(clap::Args, Debug, Clone, Default)]
pub(crate) struct ClientArgs {
    /// Profile of the config file to use (default "default").
    #[arg(long, env = "AGENT_OAUTH_PROFILE", global = true)]
    pub(crate) profile: Option<String>,
    /// Authorization server issuer URL.
    #[arg(long, env = "AGENT_OAUTH_ISSUER")]
    pub(crate) issuer: Option<String>,
    /// Client id at the authorization server.
    #[arg(long, env = "AGENT_OAUTH_CLIENT_ID")]
    pub(crate) client_id: Option<String>,
    /// Read the client secret from FILE (else AGENT_OAUTH_CLIENT_SECRET; none: a public client).
    #[arg(long, value_name = "FILE", env = "AGENT_OAUTH_CLIENT_SECRET_FILE")]
    pub(crate) client_secret_file: Option<PathBuf>,
    /// Read the client secret from the first line of stdin.
    #[arg(long, conflicts_with = "client_secret_file")]
    pub(crate) client_secret_stdin: bool,
    /// Refused: secrets are never taken from arguments (see AGENT_OAUTH_CLIENT_SECRET).
    #[arg(long, hide = true, value_name = "SECRET")]
    pub(crate) client_secret: Option<SecretArg>,
    /// Authenticate with `private_key_jwt` (RFC 7523), signing assertions with this key (PEM;
    /// `agent-oauth keygen` makes an ES256 one).
    #[arg(long, value_name = "FILE", env = "AGENT_OAUTH_CLIENT_KEY", conflicts_with_all = ["client_secret_file", "client_secret_stdin"])]
    pub(crate) client_key: Option<PathBuf>,
    /// Algorithm of --client-key: ES256, RS256, PS256 or EdDSA.
    #[arg(
        long,
        value_name = "ALG",
        default_value = "ES256",
        requires = "client_key"
    )]
    pub(crate) client_key_alg: String,
    /// How to send the client secret (default: what the server's metadata lists, basic first).
    #[arg(long, value_enum, env = "AGENT_OAUTH_SECRET_METHOD")]
    pub(crate) secret_method: Option<SecretMethod>,
    /// Scope to ask for (space-separated).
    #[arg(long, env = "AGENT_OAUTH_SCOPE")]
    pub(crate) scope: Option<String>,
    /// Resource (RFC 8707) the token is for.
    #[arg(long, env = "AGENT_OAUTH_RESOURCE")]
    pub(crate) resource: Option<String>,
    /// DPoP key (PKCS#8 PEM, P-256) to bind tokens to (default: the profile's own key, created
    /// on first use under the config directory; with --cert, the certificate binds instead).
    #[arg(long, value_name = "FILE", env = "AGENT_OAUTH_DPOP_KEY")]
    pub(crate) dpop_key: Option<PathBuf>,
    /// Bind tokens to a new key that lives only as long as this command (nothing is cached).
    #[arg(long, conflicts_with_all = ["dpop_key", "no_dpop"])]
    pub(crate) ephemeral_key: bool,
    /// Do not use DPoP (Bearer tokens, or certificate-bound with --cert).
    #[arg(long, conflicts_with = "dpop_key")]
    pub(crate) no_dpop: bool,
    /// Client certificate (PEM) for mutual TLS (RFC 8705).
    #[cfg(feature = "mtls")]
    #[arg(long, value_name = "FILE", requires = "key", env = "AGENT_OAUTH_CERT")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[cfg(feature = "mtls")]
    #[arg(long, value_name = "FILE", requires = "cert", env = "AGENT_OAUTH_KEY")]
    pub(crate) key: Option<PathBuf>,
    /// Extra trusted root certificates (PEM) for the servers' TLS certificates.
    #[cfg(feature = "mtls")]
    #[arg(long, value_name = "FILE", env = "AGENT_OAUTH_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Authenticate with the client certificate (`tls_client_auth`) instead of a secret.
    #[cfg(feature = "mtls")]
    #[arg(long, requires = "cert")]
    pub(crate) tls_client_auth: bool,
    /// Keep no tokens on disk (nothing read from or written to the token store).
    #[arg(long)]
    pub(crate) no_store: bool,
    /// Workload identity: a platform token as the grant or the client assertion.
    #[command(flatten)]
    pub(crate) workload: WorkloadArgs,
}

/// How a client secret is sent (RFC 6749 §2.3.1).
#[derive(clap::ValueEnum, Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SecretMethod {
    /// `client_secret_basic`: HTTP Basic authentication.
    Basic,
    /// `client_secret_post`: in the form body.
    Post,
}

/// A secret given as an argument: kept only to refuse it, never shown.
#[derive(Clone)]
pub(crate) struct SecretArg;

impl std::fmt::Debug for SecretArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for SecretArg {
    type Err = std::convert::Infallible;
    fn from_str(_: &str) -> Result<Self, Self::Err> {
        Ok(SecretArg)
    }
}

/// One profile of the config file (`<config dir>/config.json`):
/// `{"profiles": {"NAME": {"issuer": ..., "client_id": ..., ...}}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    pub(crate) issuer: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) client_secret_file: Option<PathBuf>,
    pub(crate) secret_method: Option<SecretMethod>,
    pub(crate) scope: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) dpop_key: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) ca: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// The user's config directory for this tool: `AGENT_OAUTH_CONFIG_DIR`, else
/// `$XDG_CONFIG_HOME/agent-oauth`, else `~/.config/agent-oauth`.
pub(crate) fn config_dir() -> CliResult<PathBuf> {
    if let Some(dir) = std::env::var_os("AGENT_OAUTH_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("agent-oauth"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config").join("agent-oauth")),
        None => Err(CliError::usage("no config directory: HOME is not set")
            .hint("set AGENT_OAUTH_CONFIG_DIR")),
    }
}

/// The profile `name` of the config file; an absent file or profile is an empty profile
/// (an explicitly named profile must exist).
fn load_profile(dir: &Path, name: &str, explicit: bool) -> CliResult<Profile> {
    let path = dir.join("config.json");
    let text = match fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(Profile::default())
        }
        Err(e) => {
            return Err(CliError::usage(format!(
                "cannot read config file {}: {e}",
                path.display()
            )))
        }
    };
    let file: ConfigFile = serde_json::from_slice(&text).map_err(|e| {
        CliError::usage(format!("config file {} is invalid: {e}", path.display()))
            .hint("expected {\"profiles\": {\"NAME\": {\"issuer\": \"https://...\", ...}}}")
    })?;
    match file.profiles.get(name) {
        Some(p) => Ok(p.clone()),
        None if !explicit => Ok(Profile::default()),
        None => Err(CliError::usage(format!(
            "profile `{name}` is not in {}",
            path.display()
        ))),
    }
}

/// Which DPoP key to use.
#[derive(Debug)]
pub(crate) enum KeyChoice {
    /// The profile's own key (created on first use), so cached grants stay usable.
    Profile(PathBuf),
    /// A key file the user named.
    File(PathBuf),
    /// A fresh key for this process only.
    Ephemeral,
    /// No DPoP.
    Off,
}

/// Settings resolved from flags, environment and config file.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) dir: PathBuf,
    pub(crate) issuer: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) secret: Option<SecretString>,
    pub(crate) client_key: Option<(PathBuf, String)>,
    pub(crate) secret_method: Option<SecretMethod>,
    pub(crate) scope: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) key: KeyChoice,
    pub(crate) store: bool,
    pub(crate) cert: Option<(PathBuf, PathBuf)>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) tls_client_auth: bool,
    pub(crate) workload: Workload,
}

impl ClientArgs {
    /// Resolve flags > environment > config file; read the secret.
    pub(crate) fn resolve(&self) -> CliResult<Settings> {
        if self.client_secret.is_some() {
            return Err(
                CliError::usage("secrets are not accepted as arguments (--client-secret)").hint(
                    format!(
                "set {CLIENT_SECRET_ENV}, or use --client-secret-file FILE or --client-secret-stdin"
            ),
                ),
            );
        }
        let dir = config_dir()?;
        let profile_name = self.profile.clone().unwrap_or_else(|| "default".to_owned());
        let file = load_profile(&dir, &profile_name, self.profile.is_some())?;
        let secret = if self.client_secret_stdin {
            Some(read_secret_stdin()?)
        } else if let Some(path) = &self.client_secret_file {
            Some(read_secret_file(path)?)
        } else if let Some(s) = std::env::var_os(CLIENT_SECRET_ENV) {
            let s = s
                .into_string()
                .map_err(|_| CliError::usage(format!("{CLIENT_SECRET_ENV} is not valid UTF-8")))?;
            (!s.is_empty()).then(|| SecretString::new(s))
        } else if let Some(path) = &file.client_secret_file {
            Some(read_secret_file(path)?)
        } else {
            None
        };
        let key = if self.no_dpop {
            KeyChoice::Off
        } else if self.ephemeral_key {
            KeyChoice::Ephemeral
        } else if let Some(p) = self.dpop_key.clone().or(file.dpop_key.clone()) {
            KeyChoice::File(p)
        } else {
            KeyChoice::Profile(
                dir.join("keys")
                    .join(format!("{}.pem", safe_name(&profile_name))),
            )
        };
        #[cfg(feature = "mtls")]
        let (flag_cert, flag_ca, tls_client_auth) = (
            self.cert.clone().zip(self.key.clone()),
            self.ca.clone(),
            self.tls_client_auth,
        );
        #[cfg(not(feature = "mtls"))]
        let (flag_cert, flag_ca, tls_client_auth) = (None, None, false);
        let cert = flag_cert.or(file.cert.clone().zip(file.key.clone()));
        Ok(Settings {
            dir,
            issuer: self.issuer.clone().or(file.issuer),
            client_id: self.client_id.clone().or(file.client_id),
            secret,
            client_key: self
                .client_key
                .clone()
                .map(|k| (k, self.client_key_alg.clone())),
            secret_method: self.secret_method.or(file.secret_method),
            scope: self.scope.clone().or(file.scope),
            resource: self.resource.clone().or(file.resource),
            key,
            store: !self.no_store && !self.ephemeral_key,
            cert,
            ca: flag_ca.or(file.ca),
            tls_client_auth,
            workload: self.workload.resolve()?,
        })
    }
}

/// A profile name as a file name: letters, digits, `-`, `_` and `.` kept, the rest `_`.
fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn read_secret_file(path: &Path) -> CliResult<SecretString> {
    let text = fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read secret file {}: {e}", path.display())))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(CliError::usage(format!(
            "secret file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::new(secret))
}

fn read_secret_stdin() -> CliResult<SecretString> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| CliError::usage(format!("cannot read the secret from stdin: {e}")))?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err(CliError::usage("no secret on stdin"));
    }
    Ok(SecretString::new(secret))
}

/// Read a whole token (or other secret text) from stdin (`-`) or a file (`@FILE`).
pub(crate) fn read_token_source(source: &str) -> CliResult<String> {
    let text = if source == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
        s
    } else if let Some(path) = source.strip_prefix('@') {
        fs::read_to_string(path).map_err(|e| CliError::usage(format!("cannot read {path}: {e}")))?
    } else {
        return Err(CliError::usage(
            "tokens are not accepted as arguments (they show in process lists)",
        )
        .hint("pass `-` to read the token from stdin, or `@FILE`"));
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(CliError::usage("no token given (empty input)"));
    }
    Ok(t.to_owned())
}

impl Settings {
    /// The issuer, required.
    pub(crate) fn issuer(&self) -> CliResult<&str> {
        self.issuer.as_deref().ok_or_else(|| {
            CliError::usage("no issuer given")
                .hint("pass --issuer URL, set AGENT_OAUTH_ISSUER, or add it to the profile")
        })
    }

    /// The client id, required.
    pub(crate) fn client_id(&self) -> CliResult<&str> {
        self.client_id.as_deref().ok_or_else(|| {
            CliError::usage("no client id given")
                .hint("pass --client-id ID, set AGENT_OAUTH_CLIENT_ID, or add it to the profile")
        })
    }

    /// Whether the client authenticates (a secret, a key or a certificate).
    pub(crate) fn is_confidential(&self) -> bool {
        self.secret.is_some()
            || self.client_key.is_some()
            || self.tls_client_auth
            || self.workload.svid.is_some()
    }

    /// Whether tokens come from a workload's assertion (the JWT bearer grant).
    pub(crate) fn is_workload(&self) -> bool {
        self.workload.grant.is_some()
    }

    /// The client authentication these settings describe.
    pub(crate) fn client_auth(&self) -> CliResult<ClientAuth> {
        if self.tls_client_auth {
            return Ok(ClientAuth::tls_client_auth());
        }
        if let Some(svid) = &self.workload.svid {
            return Ok(ClientAuth::spiffe_jwt_svid(AssertionSource::file(svid)));
        }
        if let Some((path, alg)) = &self.client_key {
            let pem = fs::read_to_string(path).map_err(|e| {
                CliError::usage(format!("cannot read client key {}: {e}", path.display()))
            })?;
            let key = AssertionKey::from_pem(alg, &pem).map_err(|e| {
                CliError::usage(format!(
                    "client key {} is not a usable {alg} key: {e}",
                    path.display()
                ))
            })?;
            return Ok(ClientAuth::private_key_jwt(key));
        }
        Ok(match (&self.secret, self.secret_method) {
            (Some(s), None) => ClientAuth::client_secret(s.clone()),
            (Some(s), Some(SecretMethod::Basic)) => ClientAuth::client_secret_basic(s.clone()),
            (Some(s), Some(SecretMethod::Post)) => ClientAuth::client_secret_post(s.clone()),
            (None, _) => ClientAuth::none(),
        })
    }

    /// The DPoP key to bind tokens to, loaded or created.
    pub(crate) fn dpop_key(&self) -> CliResult<Option<DpopKey>> {
        match &self.key {
            KeyChoice::Off => Ok(None),
            KeyChoice::Ephemeral => Ok(Some(DpopKey::generate())),
            KeyChoice::File(path) => load_key(path).map(Some),
            KeyChoice::Profile(path) => {
                if path.exists() {
                    return load_key(path).map(Some);
                }
                let key = DpopKey::generate();
                crate::keygen::write_private(path, key.to_pkcs8_pem()?.expose_secret())?;
                Ok(Some(key))
            }
        }
    }

    /// The token store (`<config dir>/tokens`), unless disabled.
    pub(crate) fn token_store(&self) -> CliResult<Option<Arc<dyn TokenStore>>> {
        if !self.store {
            return Ok(None);
        }
        let store = FileStore::new(self.dir.join("tokens"))?;
        Ok(Some(Arc::new(store)))
    }

    /// An agent builder with everything these settings give: issuer, client, scope,
    /// resource, DPoP key, store and client certificate.
    pub(crate) fn agent_builder(&self) -> CliResult<AgentBuilder> {
        let mut b = Agent::builder().issuer(self.issuer()?);
        b = match (&self.client_id, &self.workload.grant) {
            // Workload identity federation: the assertion is the whole credential.
            (None, Some(_)) if !self.is_confidential() => b.client_auth(ClientAuth::omitted()),
            _ => b
                .client_id(self.client_id()?)
                .client_auth(self.client_auth()?),
        };
        if let Some(source) = &self.workload.grant {
            b = b.jwt_bearer(source.clone());
        }
        self.with_common(b)
    }

    /// An agent for a URL alone, as an MCP client has (no issuer given): the resource's
    /// metadata names the authorization server, which must be HTTPS off private networks (or
    /// on loopback when the URL itself is on loopback); the client is the given client id at
    /// `--trust-issuer`, else a Client ID Metadata Document or dynamic registration, kept in the
    /// token store.
    pub(crate) fn discovering_builder(
        &self,
        url: &url::Url,
        trusted: Option<&str>,
    ) -> CliResult<AgentBuilder> {
        let loopback = match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        };
        let mut policy = TrustPolicy::any_https().allow_loopback(loopback);
        if let Some(t) = trusted {
            policy = policy.with_issuer(t);
        }
        let mut b = Agent::builder().trust(policy).client_name("agent-oauth");
        if let (Some(issuer), Some(id)) = (trusted, self.client_id.as_deref()) {
            b = b.client_for_issuer(issuer, id, self.client_auth()?);
        }
        self.with_common(b)
    }

    /// Scope, resource, DPoP, store and certificate.
    fn with_common(&self, mut b: AgentBuilder) -> CliResult<AgentBuilder> {
        if let Some(s) = &self.scope {
            b = b.scope(s.as_str());
        }
        if let Some(r) = &self.resource {
            b = b.resource(r.as_str());
        }
        // With a client certificate the default binds by certificate alone (servers refuse two
        // proof-of-possession mechanisms); a named key asks for both.
        let certificate_only = self.cert.is_some() && matches!(self.key, KeyChoice::Profile(_));
        if !certificate_only {
            b = match self.dpop_key()? {
                Some(k) => b.dpop(k),
                None => b.dpop_mode(DpopMode::Off),
            };
        }
        if let Some(store) = self.token_store()? {
            b = b.token_store(store);
        }
        b = self.with_identity(b)?;
        Ok(b)
    }

    #[cfg(feature = "mtls")]
    fn with_identity(&self, mut b: AgentBuilder) -> CliResult<AgentBuilder> {
        let read = |p: &Path| {
            fs::read_to_string(p)
                .map_err(|e| CliError::usage(format!("cannot read {}: {e}", p.display())))
        };
        if let Some(ca) = &self.ca {
            let roots = agent_oauth::TrustRoots::from_pem(&read(ca)?).map_err(|e| {
                CliError::usage(format!("{} holds no usable certificate: {e}", ca.display()))
            })?;
            b = b.trust_roots(roots);
        }
        if let Some((cert, key)) = &self.cert {
            let identity = agent_oauth::ClientIdentity::from_pem(&read(cert)?, &read(key)?)
                .map_err(|e| {
                    CliError::usage(format!(
                        "client certificate {} / key {} not usable: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
            b = b.client_identity(identity);
        }
        Ok(b)
    }

    #[cfg(not(feature = "mtls"))]
    fn with_identity(&self, b: AgentBuilder) -> CliResult<AgentBuilder> {
        match self
            .cert
            .as_ref()
            .map(|_| ())
            .or(self.ca.as_ref().map(|_| ()))
        {
            Some(()) => Err(CliError::usage(
                "the profile names a client certificate or CA, but this build has no mTLS support",
            )
            .hint("install with `--features cli,mtls`")),
            None => Ok(b),
        }
    }
}

fn load_key(path: &Path) -> CliResult<DpopKey> {
    let pem = fs::read_to_string(path)
        .map_err(|e| CliError::usage(format!("cannot read DPoP key {}: {e}", path.display())))?;
    DpopKey::from_pkcs8_pem(&pem).map_err(|e| {
        CliError::usage(format!("DPoP key {} is not usable: {e}", path.display()))
            .hint("create one with `agent-oauth keygen --out FILE`")
    })
}
