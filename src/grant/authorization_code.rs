//! Authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636), `state`, the RFC 9207 `iss`
//! check, `dpop_jkt` (RFC 9449 §10), and an optional loopback redirect listener for command-line
//! agents (RFC 8252 §7.3).

use std::fmt;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use url::Url;

use super::client::OAuthClient;
use super::pkce::PkceVerifier;
use super::request::TokenParams;
use crate::discovery::ServerMetadata;
use crate::error::{sanitize, Error, OAuthError, OAuthErrorCode, Result};
use crate::token::TokenSet;
use crate::transport::RetryPolicy;

/// An authorization request in flight: the URL to open and what the callback is checked
/// against. Keep it until the callback arrives.
#[derive(Clone)]
pub struct PendingAuthorization {
    /// The URL the user (or a headless driver) opens.
    pub url: Url,
    /// The `state` sent (CSRF defence).
    pub state: String,
    /// The PKCE verifier, sent with the code.
    pub verifier: PkceVerifier,
    /// The `redirect_uri` sent.
    pub redirect_uri: String,
    /// The token parameters requested (scope, resources), reused for the code exchange.
    pub params: TokenParams,
    expected_issuer: String,
    iss_required: bool,
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("url", &self.url.as_str())
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

/// Build the authorization request URL (sans-IO).
pub(crate) fn authorization_url(
    md: &ServerMetadata,
    client_id: &str,
    redirect_uri: &str,
    params: &TokenParams,
    dpop_jkt: Option<&str>,
) -> Result<PendingAuthorization> {
    let endpoint = md.authorization_endpoint.as_deref().ok_or_else(|| {
        Error::Discovery("the server advertises no authorization endpoint".into())
    })?;
    let mut url = Url::parse(endpoint)
        .map_err(|_| Error::Discovery("authorization_endpoint is not a URL".into()))?;
    let verifier = PkceVerifier::generate();
    let state = crate::secret::random_id();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &state)
            .append_pair("code_challenge", &verifier.challenge())
            .append_pair("code_challenge_method", "S256");
        if let Some(jkt) = dpop_jkt {
            q.append_pair("dpop_jkt", jkt);
        }
        let mut list = Vec::new();
        params.apply_to(&mut list);
        for (k, v) in &list {
            q.append_pair(k, v);
        }
    }
    Ok(PendingAuthorization {
        url,
        state,
        verifier,
        redirect_uri: redirect_uri.to_owned(),
        params: params.clone(),
        expected_issuer: md.issuer.clone(),
        iss_required: md.authorization_response_iss_parameter_supported == Some(true),
    })
}

impl PendingAuthorization {
    /// Check a callback URL (the redirect the server sent) and return the code.
    ///
    /// Checks, in order: an `error` answer becomes [`Error::OAuth`]; `iss` must equal the issuer
    /// when present, and must be present when the server advertises
    /// `authorization_response_iss_parameter_supported` (RFC 9207 §2.4); `state` must match.
    ///
    /// # Errors
    /// [`Error::OAuth`], or [`Error::InvalidResponse`] on a failed check.
    pub fn code_from_callback(&self, callback: &Url) -> Result<String> {
        let get = |name: &str| {
            callback
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if let Some(iss) = get("iss") {
            if iss != self.expected_issuer {
                return Err(Error::invalid(format!(
                    "authorization response `iss` is `{}`, expected `{}` (RFC 9207 mix-up defence)",
                    sanitize(&iss, 200),
                    self.expected_issuer
                )));
            }
        } else if self.iss_required {
            return Err(Error::invalid(
                "authorization response lacks `iss` although the server advertises it (RFC 9207)",
            ));
        }
        if get("state").as_deref() != Some(self.state.as_str()) {
            return Err(Error::invalid(
                "authorization response `state` does not match",
            ));
        }
        if let Some(code) = get("error") {
            let mut e = OAuthError::new(OAuthErrorCode::parse(&code), 302);
            e.error_description = get("error_description").map(|d| sanitize(&d, 512));
            return Err(e.into());
        }
        get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Error::invalid("authorization response lacks `code`"))
    }
}

impl OAuthClient {
    /// Start an authorization code flow: a URL with PKCE S256, a fresh `state`, the requested
    /// scope/resources, and `dpop_jkt` when the client has a DPoP key.
    ///
    /// # Errors
    /// Discovery errors; [`Error::Discovery`] when there is no authorization endpoint.
    pub async fn authorization_url(
        &self,
        redirect_uri: &str,
        params: &TokenParams,
    ) -> Result<PendingAuthorization> {
        let md = self.server().metadata().await?;
        authorization_url(
            &md,
            self.client_id(),
            redirect_uri,
            params,
            self.dpop_key().map(|k| k.thumbprint()),
        )
    }

    /// Finish the flow: check the callback URL and exchange its code (with the PKCE verifier).
    /// Not retried once the request may have reached the server: a code is single-use.
    ///
    /// # Errors
    /// As [`PendingAuthorization::code_from_callback`], then token endpoint errors.
    pub async fn exchange_code(
        &self,
        pending: &PendingAuthorization,
        callback: &Url,
    ) -> Result<TokenSet> {
        let code = pending.code_from_callback(callback)?;
        let form = vec![
            ("grant_type".to_owned(), "authorization_code".to_owned()),
            ("code".to_owned(), code),
            ("redirect_uri".to_owned(), pending.redirect_uri.clone()),
            (
                "code_verifier".to_owned(),
                pending.verifier.secret().to_owned(),
            ),
        ];
        self.send_token_request(form, &pending.params, RetryPolicy::ConnectOnly, None, false)
            .await
    }
}

/// A one-shot HTTP listener on 127.0.0.1 that receives the authorization redirect
/// (RFC 8252 §7.3), for agents started from a terminal.
///
/// Connections are served concurrently, each with a read timeout and a cap on what is read of
/// the request head (8 KiB), so an idle or slow connection (a browser's preconnect, any local process) cannot hold
/// up the browser's real redirect.
#[derive(Debug)]
pub struct LoopbackRedirect {
    listener: tokio::net::TcpListener,
    redirect_uri: String,
    read_timeout: std::time::Duration,
}

/// Largest request head read from one connection.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Connections served at once; more wait in the listen backlog until one finishes.
const MAX_CONNECTIONS: usize = 32;

impl LoopbackRedirect {
    /// Bind an ephemeral port on 127.0.0.1; the redirect URI is `http://127.0.0.1:<port>/callback`.
    ///
    /// # Errors
    /// [`Error::Config`] when no port can be bound.
    pub async fn bind() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::config(format!("cannot bind loopback listener: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::config(format!("loopback listener: {e}")))?
            .port();
        Ok(LoopbackRedirect {
            listener,
            redirect_uri: format!("http://127.0.0.1:{port}/callback"),
            read_timeout: std::time::Duration::from_secs(30),
        })
    }

    /// How long one connection may take to send its request head and receive the answer
    /// (default 30 s); a connection that takes longer is closed. Other connections are served
    /// meanwhile, so this bounds resources, not the wait for the redirect.
    #[must_use]
    pub fn read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// The `redirect_uri` to register and send.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Wait for the browser's redirect and return its full URL. Requests to other paths get a
    /// 404 and are ignored; at most 8 KiB of a request head is read, and a request line longer
    /// than that gets a 431. Connections are served
    /// concurrently, each closed after the [read timeout](Self::read_timeout).
    ///
    /// # Errors
    /// [`Error::Transport`] when accepting fails.
    pub async fn wait(self) -> Result<Url> {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept(), if connections.len() < MAX_CONNECTIONS => {
                    let (sock, _) = accepted.map_err(|e| Error::Transport {
                        kind: crate::error::TransportErrorKind::Other,
                        source: Some(std::sync::Arc::new(e)),
                    })?;
                    let redirect_uri = self.redirect_uri.clone();
                    let limit = self.read_timeout;
                    connections.spawn(async move {
                        tokio::time::timeout(limit, serve_redirect(sock, &redirect_uri))
                            .await
                            .ok()
                            .flatten()
                    });
                }
                Some(done) = connections.join_next(), if !connections.is_empty() => {
                    // The other connections are aborted when `connections` drops.
                    if let Ok(Some(url)) = done {
                        return Ok(url);
                    }
                }
            }
        }
    }
}

/// Serve one connection: read the request head (capped), answer, and return the callback URL
/// if this was the redirect.
async fn serve_redirect(mut sock: tokio::net::TcpStream, redirect_uri: &str) -> Option<Url> {
    let mut buf = vec![0u8; MAX_REQUEST_HEAD];
    let mut len = 0;
    while len < buf.len() && !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
    }
    // A full buffer is served if at least the request line fits (cookies can make a browser's
    // head long); a request line longer than the cap is refused.
    if len == buf.len() && !buf.windows(2).any(|w| w == b"\r\n") {
        let _ = sock
            .write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return None;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let target = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or("");
    let url = Url::parse(redirect_uri)
        .ok()
        .and_then(|base| base.join(target).ok());
    match url {
        Some(u) if u.path() == "/callback" => {
            let body = "Authorization received. You may close this window.";
            let _ = sock
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
            Some(u)
        }
        _ => {
            let _ = sock
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(iss_param: Option<bool>) -> ServerMetadata {
        ServerMetadata {
            issuer: "https://as.example".into(),
            authorization_endpoint: Some("https://as.example/authorize?tenant=1".into()),
            authorization_response_iss_parameter_supported: iss_param,
            ..Default::default()
        }
    }

    #[test]
    fn authorization_code_url_has_pkce_state_and_params() {
        let p = authorization_url(
            &md(None),
            "agent",
            "http://127.0.0.1:9/cb",
            &TokenParams::new()
                .scope("read")
                .resource("https://api.example"),
            Some("jkt123"),
        )
        .expect("url");
        let q: std::collections::HashMap<_, _> = p.url.query_pairs().into_owned().collect();
        assert_eq!(q["tenant"], "1");
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], p.verifier.challenge());
        assert_eq!(q["state"], p.state);
        assert_eq!(q["scope"], "read");
        assert_eq!(q["resource"], "https://api.example");
        assert_eq!(q["dpop_jkt"], "jkt123");
        assert!(!q.contains_key("code_verifier"));
    }

    #[test]
    fn authorization_code_callback_checks_state_and_iss() {
        let p = authorization_url(
            &md(Some(true)),
            "a",
            "http://127.0.0.1/cb",
            &TokenParams::new(),
            None,
        )
        .expect("url");
        let cb = |q: &str| Url::parse(&format!("http://127.0.0.1/cb?{q}")).expect("url");
        let ok = format!("code=c1&state={}&iss=https%3A%2F%2Fas.example", p.state);
        assert_eq!(p.code_from_callback(&cb(&ok)).expect("code"), "c1");
        let bad_state = "code=c1&state=nope&iss=https%3A%2F%2Fas.example";
        assert!(p.code_from_callback(&cb(bad_state)).is_err());
        let mixup = format!("code=c1&state={}&iss=https%3A%2F%2Fevil.example", p.state);
        let e = p.code_from_callback(&cb(&mixup)).expect_err("mixup");
        assert!(e.to_string().contains("RFC 9207"));
        let missing_iss = format!("code=c1&state={}", p.state);
        assert!(p.code_from_callback(&cb(&missing_iss)).is_err());
        let denied = format!(
            "error=access_denied&error_description=no&state={}&iss=https%3A%2F%2Fas.example",
            p.state
        );
        let e = p.code_from_callback(&cb(&denied)).expect_err("denied");
        assert_eq!(
            e.oauth_error().map(|o| o.error.clone()),
            Some(OAuthErrorCode::AccessDenied)
        );
        // Without advertised support a missing iss is tolerated.
        let p = authorization_url(
            &md(None),
            "a",
            "http://127.0.0.1/cb",
            &TokenParams::new(),
            None,
        )
        .expect("url");
        assert!(p
            .code_from_callback(&cb(&format!("code=c&state={}", p.state)))
            .is_ok());
    }

    #[tokio::test]
    async fn authorization_code_loopback_listener_receives_redirect() {
        let l = LoopbackRedirect::bind().await.expect("bind");
        let uri = l.redirect_uri().to_owned();
        assert!(uri.starts_with("http://127.0.0.1:"));
        let waiter = tokio::spawn(l.wait());
        let client = reqwest::Client::new();
        let base = uri.trim_end_matches("/callback");
        let r = client
            .get(format!("{base}/favicon.ico"))
            .send()
            .await
            .expect("404");
        assert_eq!(r.status(), 404);
        let r = client
            .get(format!("{uri}?code=abc&state=xyz"))
            .send()
            .await
            .expect("cb");
        assert_eq!(r.status(), 200);
        let got = waiter.await.expect("join").expect("url");
        assert_eq!(got.query(), Some("code=abc&state=xyz"));
    }
}
