//! A real authorization server for integration tests: Node `oidc-provider`
//! 9.x run by `tests/interop/server.mjs` on an ephemeral `127.0.0.1` port.
//!
//! [`OidcProvider::start`] writes the JSON configuration (schema at the top
//! of `server.mjs`) to a temporary file, installs the npm dependencies once
//! if needed (`npm ci`), spawns `node server.mjs <config>` and waits for its
//! `READY <issuer>` line. Dropping the value kills and reaps the process; the
//! server also exits by itself when its stdin (held open by this struct)
//! closes, so a crashed test binary leaves no process behind.
//!
//! When Node.js is not installed, `start` returns `None` (the test should
//! return early) unless the `CI` environment variable is set, in which case
//! it panics. Set `OIDC_PROVIDER_LOG=1` to copy the server's stderr to the
//! test's stderr as it arrives.
//!
//! Only std, tokio, serde_json, tempfile and reqwest are used.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Time allowed between spawning the server and its `READY` line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running oidc-provider authorization server, killed on drop.
#[derive(Debug)]
pub struct OidcProvider {
    /// Real issuer / origin of the server, e.g. `http://127.0.0.1:41234`
    /// (`https://` when the config has `tls`). The discovery documents
    /// advertise `issuer_override` instead when that is configured.
    pub issuer: String,
    /// URL of the built-in protected resource (`<issuer>/api`) when the
    /// config has `"resource_server": true`.
    pub resource: Option<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    config_dir: tempfile::TempDir,
    ca_pem: Option<Vec<u8>>,
}

/// Directory holding `server.mjs`, `package.json` and `package-lock.json`.
pub fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

/// Whether a working `node` executable is on `PATH` (checked once).
pub fn node_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("node")
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// Runs `npm ci` in [`interop_dir`] unless a previous run completed it for
/// the current `package-lock.json` (stamp file in `node_modules` holding the
/// lock file's SHA-256, so a changed lock installs again). Done at most once per process; concurrent test binaries
/// serialise on an exclusive lock of a file in the system temp directory.
pub fn ensure_npm_dependencies() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let dir = interop_dir();
        // Written only after a complete `npm ci`, so a concurrent install
        // that is still unpacking is never mistaken for a finished one.
        let marker = dir.join("node_modules").join(".agent-oauth-npm-ci-done");
        let lock_hash = {
            use sha2::Digest as _;
            let lock = std::fs::read(dir.join("package-lock.json"))
                .map_err(|e| format!("cannot read package-lock.json: {e}"))?;
            sha2::Sha256::digest(&lock)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let installed = || std::fs::read_to_string(&marker).is_ok_and(|m| m.trim() == lock_hash);
        if installed() {
            return Ok(());
        }
        let lock_path = std::env::temp_dir().join("agent-oauth-interop-npm.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        lock.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        if installed() {
            return Ok(());
        }
        eprintln!("oidc_provider: running `npm ci` in {}", dir.display());
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run npm: {e}"))?;
        if !out.status.success() || !dir.join("node_modules/oidc-provider/package.json").exists() {
            return Err(format!(
                "`npm ci` failed ({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::write(&marker, lock_hash.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
        Ok(())
        // `lock` is released when dropped here.
    })
    .clone()
}

/// Spawns `node server.mjs <config>` with piped stdio; returns the child, its stdin (kept open:
/// the server exits when it closes), the collected stderr, and the stdout lines.
fn spawn_node(
    config_path: &Path,
) -> (
    Child,
    Option<ChildStdin>,
    Arc<Mutex<String>>,
    mpsc::Receiver<String>,
) {
    let dir = interop_dir();
    let mut child = Command::new("node")
        .arg(dir.join("server.mjs"))
        .arg(config_path)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node server.mjs");

    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("child stdout");
    let stderr_pipe = child.stderr.take().expect("child stderr");

    let stderr = Arc::new(Mutex::new(String::new()));
    {
        let stderr = Arc::clone(&stderr);
        let echo = std::env::var_os("OIDC_PROVIDER_LOG").is_some();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                if echo {
                    eprintln!("[oidc-provider] {line}");
                }
                if let Ok(mut s) = stderr.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
    }

    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // After READY nobody listens; keep draining the pipe anyway.
            let _ = tx.send(line);
        }
    });

    (child, stdin, stderr, rx)
}

impl OidcProvider {
    /// Starts a server configured by `config` (see `server.mjs` for the
    /// schema). Returns `None` when Node.js is missing and `CI` is unset;
    /// panics on any other failure. Runs the blocking start-up on tokio's
    /// blocking pool, so it needs a tokio runtime.
    pub async fn start(config: serde_json::Value) -> Option<OidcProvider> {
        tokio::task::spawn_blocking(move || Self::start_blocking(config))
            .await
            .expect("oidc-provider start-up task panicked")
    }

    /// Blocking variant of [`OidcProvider::start`], usable without a runtime.
    pub fn start_blocking(config: serde_json::Value) -> Option<OidcProvider> {
        if !node_available() {
            if std::env::var_os("CI").is_some() {
                panic!("oidc_provider: `node` is not installed but CI is set; the interop tests must run in CI");
            }
            eprintln!("oidc_provider: `node` not found, skipping test against oidc-provider");
            return None;
        }
        if let Err(e) = ensure_npm_dependencies() {
            panic!("oidc_provider: {e}");
        }

        let ca_pem = config
            .get("tls")
            .and_then(|t| t.get("ca"))
            .and_then(|p| p.as_str())
            .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("cannot read tls.ca {p}: {e}")));

        let config_dir = tempfile::tempdir().expect("create temp dir for oidc-provider config");
        let config_path = config_dir.path().join("config.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("serialise config"),
        )
        .expect("write oidc-provider config");

        let (child, stdin, stderr, mut rx) = spawn_node(&config_path);
        let mut provider = OidcProvider {
            issuer: String::new(),
            resource: None,
            child,
            stdin,
            stderr,
            config_dir,
            ca_pem,
        };

        let mut deadline = Instant::now() + READY_TIMEOUT;
        let mut respawns = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("READY ") {
                        provider.issuer = url.trim().to_owned();
                        return Some(provider);
                    } else if let Some(url) = line.strip_prefix("RESOURCE ") {
                        provider.resource = Some(url.trim().to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if respawns < 2 => {
                    // A start-up that stalls (rare, on a loaded machine; it normally takes under a
                    // second) is retried, twice at most.
                    eprintln!(
                        "oidc_provider: no READY within {READY_TIMEOUT:?}, restarting; stderr:\n{}",
                        provider.stderr_log()
                    );
                    let _ = provider.child.kill();
                    let _ = provider.child.wait();
                    let (child, stdin, stderr, next_rx) = spawn_node(&config_path);
                    provider.child = child;
                    provider.stdin = stdin;
                    provider.stderr = stderr;
                    provider.resource = None;
                    rx = next_rx;
                    respawns += 1;
                    deadline = Instant::now() + READY_TIMEOUT;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "oidc-provider did not print READY within {READY_TIMEOUT:?}; stderr:\n{}",
                        provider.stderr_log()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Give the stderr thread a moment to collect the reason.
                    let status = provider.child.wait().ok();
                    std::thread::sleep(Duration::from_millis(100));
                    panic!(
                        "oidc-provider exited before READY ({status:?}); stderr:\n{}",
                        provider.stderr_log()
                    );
                }
            }
        }
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr_log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Absolute URL of `path` (which starts with `/`) on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer, path)
    }

    /// Directory holding the written config file (alive as long as `self`).
    pub fn config_dir(&self) -> &Path {
        self.config_dir.path()
    }

    /// A reqwest client suited to this server: no redirect following, no
    /// proxy, and trusting `tls.ca` of the config when TLS is on.
    pub fn http_client(&self) -> reqwest::Client {
        self.http_client_builder()
            .build()
            .expect("build reqwest client")
    }

    /// The builder behind [`OidcProvider::http_client`], e.g. to add a client
    /// certificate with `.identity(..)` for mTLS.
    pub fn http_client_builder(&self) -> reqwest::ClientBuilder {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30));
        if let Some(pem) = &self.ca_pem {
            let cert =
                reqwest::Certificate::from_pem(pem).expect("tls.ca is not a PEM certificate");
            builder = builder.add_root_certificate(cert);
        }
        builder
    }

    /// What the server saw of refresh tokens (`GET /test/refresh-stats`): `presentations`,
    /// `distinct`, `reused` (tokens presented more than once) and `revoked_grants`.
    pub async fn refresh_stats(&self) -> serde_json::Value {
        self.http_client()
            .get(self.url("/test/refresh-stats"))
            .send()
            .await
            .expect("refresh stats")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("refresh stats JSON"))
            .expect("refresh stats body")
    }

    /// Runs an authorization request with the given query parameters
    /// (`client_id`, `response_type`, `redirect_uri`, ...) through the
    /// headless login and consent, replaying cookies by hand, and returns
    /// the final redirect (the `redirect_uri` with `code`, `state`, `iss` or
    /// an `error`). Panics if the chain does not end at `redirect_uri`.
    pub async fn authorize_redirect(&self, params: &[(&str, &str)]) -> String {
        let redirect_uri = params
            .iter()
            .find(|(k, _)| *k == "redirect_uri")
            .map(|(_, v)| (*v).to_owned());
        let mut url =
            reqwest::Url::parse_with_params(&self.url("/auth"), params).expect("authorization URL");
        let client = self.http_client();
        let mut jar: BTreeMap<String, String> = BTreeMap::new();
        for _ in 0..16 {
            let mut req = client.get(url.clone());
            if !jar.is_empty() {
                let cookie = jar
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ");
                req = req.header(reqwest::header::COOKIE, cookie);
            }
            let resp = req.send().await.expect("authorization request chain");
            for value in resp.headers().get_all(reqwest::header::SET_COOKIE) {
                store_cookie(&mut jar, value.to_str().unwrap_or_default());
            }
            let status = resp.status();
            if !status.is_redirection() {
                let body = resp.text().await.unwrap_or_default();
                panic!(
                    "authorization chain stopped at {url} with {status}: {body}\nserver stderr:\n{}",
                    self.stderr_log()
                );
            }
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .expect("redirect without Location")
                .to_owned();
            let next = url.join(&location).expect("bad Location");
            let next_s = next.to_string();
            let reached = match &redirect_uri {
                Some(r) => next_s.starts_with(r.as_str()),
                None => next.origin() != url.origin(),
            };
            if reached {
                return next_s;
            }
            url = next;
        }
        panic!("authorization chain did not reach the redirect_uri after 16 redirects");
    }

    /// Authorization code flow with PKCE S256 for `client_id`, headless:
    /// returns the `code` from the redirect to `redirect_uri`. `extra` is
    /// appended to the query (e.g. `("resource", ..)`, `("login_hint", ..)`,
    /// `("dpop_jkt", ..)`). Panics on an error response or a `state`
    /// mismatch.
    pub async fn authorize_headless(
        &self,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        code_challenge: &str,
        state: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut params: Vec<(&str, &str)> = vec![
            ("client_id", client_id),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("code_challenge", code_challenge),
            ("code_challenge_method", "S256"),
            ("state", state),
        ];
        if !scope.is_empty() {
            params.push(("scope", scope));
        }
        params.extend_from_slice(extra);
        let location = self.authorize_redirect(&params).await;
        let url = reqwest::Url::parse(&location).expect("redirect_uri is not a URL");
        let query: BTreeMap<String, String> = url.query_pairs().into_owned().collect();
        if let Some(error) = query.get("error") {
            panic!(
                "authorization failed: {error} {}",
                query
                    .get("error_description")
                    .map(String::as_str)
                    .unwrap_or("")
            );
        }
        assert_eq!(
            query.get("state").map(String::as_str),
            Some(state),
            "state mismatch in {location}"
        );
        query
            .get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code in {location}"))
    }

    /// Approves the pending device authorization with `user_code` for
    /// account `agent-user` (every requested scope and resource granted).
    pub async fn approve_device(&self, user_code: &str) {
        self.device_decision("/test/approve-device", user_code)
            .await;
    }

    /// Denies the pending device authorization with `user_code`; the device
    /// then receives `access_denied`.
    pub async fn deny_device(&self, user_code: &str) {
        self.device_decision("/test/deny-device", user_code).await;
    }

    async fn device_decision(&self, path: &str, user_code: &str) {
        let resp = self
            .http_client()
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::json!({ "user_code": user_code }).to_string())
            .send()
            .await
            .expect("device decision request");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "{path} for {user_code}: {status} {body}"
        );
    }
}

/// Stores one `Set-Cookie` value (paths ignored: there is one host).
fn store_cookie(jar: &mut BTreeMap<String, String>, header: &str) {
    let mut parts = header.split(';');
    let Some((name, value)) = parts.next().and_then(|nv| nv.split_once('=')) else {
        return;
    };
    let expired = parts.any(|attr| {
        let attr = attr.trim().to_ascii_lowercase();
        attr == "max-age=0" || attr.starts_with("expires=thu, 01 jan 1970")
    });
    if expired || value.is_empty() {
        jar.remove(name.trim());
    } else {
        jar.insert(name.trim().to_owned(), value.trim().to_owned());
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        // Closing stdin alone makes the server exit; kill for certainty.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
