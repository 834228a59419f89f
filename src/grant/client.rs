//! [`OAuthClient`]: one registered client at one authorization server, and the token request
//! every grant goes through.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::request::TokenParams;
use super::response::{parse_token_response, ParseOptions};
use crate::client_auth::ClientAuth;
use crate::discovery::{AuthorizationServer, Endpoint, ServerMetadata};
use crate::dpop::{send_with_nonce_retry, DpopKey, NonceCache, NonceRole, NonceSlot, ServerNonces};
use crate::error::{sanitize, Error, ErrorContext, OAuthError, OAuthErrorCode, Result};
use crate::secret::SentSecrets;
use crate::token::{Binding, TokenSet, TokenType};
use crate::transport::{oauth_error, FormRequest, HttpResponse, HttpTransport, RetryPolicy};

/// A client registered at an authorization server: identity, authentication, optional DPoP key.
///
/// Each grant is a method (`client_credentials`, `refresh`, `exchange_code`, device flow,
/// `token_exchange`, `revoke`, `introspect`). Cheap to clone.
#[derive(Clone)]
pub struct OAuthClient {
    inner: Arc<ClientInner>,
}

struct ClientInner {
    server: AuthorizationServer,
    client_id: String,
    auth: ClientAuth,
    dpop: Option<DpopKey>,
    nonces: Arc<NonceCache>,
    default_expires_in: Option<Duration>,
    accept_bearer: bool,
    mtls: bool,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("issuer", &self.inner.server.issuer())
            .field("client_id", &self.inner.client_id)
            .field("auth", &self.inner.auth)
            .field("dpop", &self.inner.dpop.as_ref().map(DpopKey::thumbprint))
            .finish_non_exhaustive()
    }
}

/// Builds an [`OAuthClient`].
#[derive(Debug)]
#[must_use]
pub struct OAuthClientBuilder {
    server: AuthorizationServer,
    client_id: String,
    auth: ClientAuth,
    dpop: Option<DpopKey>,
    nonces: Option<Arc<NonceCache>>,
    default_expires_in: Option<Duration>,
    accept_bearer: bool,
    mtls: bool,
}

impl OAuthClientBuilder {
    /// How the client authenticates (default: public client).
    pub fn auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Bind every token to this DPoP key (RFC 9449).
    pub fn dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(key);
        self
    }

    /// Share a nonce cache (e.g. with the agent's resource calls).
    pub fn nonce_cache(mut self, nonces: Arc<NonceCache>) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// Lifetime assumed when a response omits `expires_in` (default: unknown, never refreshed
    /// ahead).
    pub fn default_expires_in(mut self, lifetime: Duration) -> Self {
        self.default_expires_in = Some(lifetime);
        self
    }

    /// Accept `Bearer` tokens although a DPoP proof was sent.
    ///
    /// # Security
    /// The token is then not sender-constrained; a thief can replay it.
    pub fn accept_bearer_with_dpop(mut self, accept: bool) -> Self {
        self.accept_bearer = accept;
        self
    }

    /// Send token, revocation, introspection and device requests to `mtls_endpoint_aliases`
    /// (RFC 8705 §5). On by default for the TLS client authentication methods.
    pub fn mtls_endpoints(mut self, mtls: bool) -> Self {
        self.mtls = mtls;
        self
    }

    /// Finish.
    pub fn build(self) -> OAuthClient {
        let mtls = self.mtls || self.auth.uses_mtls();
        OAuthClient {
            inner: Arc::new(ClientInner {
                server: self.server,
                client_id: self.client_id,
                auth: self.auth,
                dpop: self.dpop,
                nonces: self.nonces.unwrap_or_default(),
                default_expires_in: self.default_expires_in,
                accept_bearer: self.accept_bearer,
                mtls,
            }),
        }
    }
}

/// One form request to an AS endpoint, as the executor sends it.
pub(crate) struct EndpointCall<'a> {
    pub endpoint: Endpoint,
    /// What the request does, as errors name it (e.g. `token request (refresh_token)`).
    pub operation: String,
    pub params: Vec<(String, String)>,
    pub policy: RetryPolicy,
    /// Sign the DPoP proof with this key instead of the client's (delegation to a child key).
    pub dpop_override: Option<&'a DpopKey>,
    pub authenticate: bool,
}

impl OAuthClient {
    /// Start building a client with `client_id` at `server`.
    pub fn builder(
        server: AuthorizationServer,
        client_id: impl Into<String>,
    ) -> OAuthClientBuilder {
        OAuthClientBuilder {
            server,
            client_id: client_id.into(),
            auth: ClientAuth::none(),
            dpop: None,
            nonces: None,
            default_expires_in: None,
            accept_bearer: false,
            mtls: false,
        }
    }

    /// The same registration reached through another server handle (a transport with another
    /// client certificate). The nonce cache is shared.
    #[cfg(feature = "mtls")]
    pub(crate) fn with_server(&self, server: AuthorizationServer) -> OAuthClient {
        let i = &self.inner;
        OAuthClient {
            inner: Arc::new(ClientInner {
                server,
                client_id: i.client_id.clone(),
                auth: i.auth.clone(),
                dpop: i.dpop.clone(),
                nonces: i.nonces.clone(),
                default_expires_in: i.default_expires_in,
                accept_bearer: i.accept_bearer,
                mtls: i.mtls,
            }),
        }
    }

    /// The client identifier.
    pub fn client_id(&self) -> &str {
        &self.inner.client_id
    }

    /// The authorization server.
    pub fn server(&self) -> &AuthorizationServer {
        &self.inner.server
    }

    /// The DPoP key tokens are bound to, if any.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.dpop.as_ref()
    }

    /// The DPoP nonce cache.
    pub fn nonces(&self) -> &Arc<NonceCache> {
        &self.inner.nonces
    }

    /// The configured client authentication.
    pub fn auth(&self) -> &ClientAuth {
        &self.inner.auth
    }

    pub(crate) fn transport(&self) -> &HttpTransport {
        self.inner.server.transport()
    }

    /// The URL of `endpoint`, honouring mTLS aliases.
    pub(crate) async fn endpoint_url(
        &self,
        endpoint: Endpoint,
    ) -> Result<(Url, Arc<ServerMetadata>)> {
        let md = self.inner.server.metadata().await?;
        let raw = if self.inner.mtls {
            md.mtls_endpoint(endpoint)?
        } else {
            md.endpoint(endpoint, false).ok_or_else(|| {
                Error::Discovery(format!("the server advertises no {endpoint:?} endpoint"))
            })?
        };
        let url = Url::parse(raw)
            .map_err(|_| Error::Discovery(format!("{endpoint:?} endpoint is not a URL")))?;
        self.transport().check(&url)?;
        Ok((url, md))
    }

    /// A token request for any grant (extension grants included): `grant_type` and its
    /// `params`, plus `opts`. Client authentication and the DPoP proof are minted anew for every
    /// attempt; a `use_dpop_nonce` answer is retried once, only when the nonce changed.
    ///
    /// # Errors
    /// [`Error::OAuth`] for an error response; transport and parse errors.
    pub async fn token_request(
        &self,
        grant_type: &str,
        params: &[(&str, &str)],
        opts: &TokenParams,
        policy: RetryPolicy,
    ) -> Result<TokenSet> {
        let mut form = vec![("grant_type".to_owned(), grant_type.to_owned())];
        form.extend(
            params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        self.send_token_request(form, opts, policy, None, false)
            .await
    }

    /// Send token request parameters (plus `opts`) and parse the token response.
    ///
    /// Client authentication and the DPoP proof are minted anew for every attempt. A
    /// `use_dpop_nonce` answer is retried once, and only when the server sent a nonce other
    /// than the one just used (RFC 9449 §8).
    pub(crate) async fn send_token_request(
        &self,
        mut params: Vec<(String, String)>,
        opts: &TokenParams,
        policy: RetryPolicy,
        dpop_override: Option<&DpopKey>,
        exchange: bool,
    ) -> Result<TokenSet> {
        let dpop_sent = dpop_override.is_some() || self.inner.dpop.is_some();
        let operation = token_operation(
            params
                .iter()
                .find(|(k, _)| k == "grant_type")
                .map_or("", |(_, v)| v.as_str()),
        );
        opts.apply_to(&mut params);
        let parsed = self
            .call(
                EndpointCall {
                    endpoint: Endpoint::Token,
                    operation,
                    params,
                    policy,
                    dpop_override,
                    authenticate: true,
                },
                |resp| {
                    parse_token_response(
                        resp,
                        &ParseOptions {
                            requested_scope: opts.scope.as_ref(),
                            default_expires_in: self.inner.default_expires_in,
                            now: self.transport().clock().now(),
                            dpop_sent,
                            accept_bearer: self.inner.accept_bearer,
                            exchange,
                        },
                    )
                },
            )
            .await;
        let mut parsed = parsed;
        if let Ok(t) = &mut parsed {
            t.cnf = t.unverified_cnf().or_else(|| {
                let key = dpop_override.or(self.inner.dpop.as_ref());
                let jkt = key
                    .filter(|_| t.token_type == TokenType::Dpop)
                    .map(|k| k.thumbprint().to_owned());
                let x5t = self
                    .transport()
                    .client_certificate_thumbprint()
                    .filter(|_| self.inner.mtls)
                    .map(str::to_owned);
                (jkt.is_some() || x5t.is_some()).then_some(Binding {
                    jkt,
                    x5t_s256: x5t,
                    from_token: false,
                })
            });
        }
        if let Ok(t) = &parsed {
            tracing::debug!(target: "agent_oauth", client_id = %self.inner.client_id,
                token = %t.access_token.fingerprint(), token_type = %t.token_type,
                "token issued");
        }
        parsed
    }

    /// POST a form to an AS endpoint with authentication, DPoP and the nonce retry, and read
    /// a successful answer with `parse`.
    ///
    /// Every error, whether an error response or a failure of `parse`, is returned with the
    /// secrets the request sent redacted from the server's text, and names the operation and
    /// the endpoint (without query). A 401 or 403 from the token endpoint without an OAuth
    /// error body is `invalid_client` (RFC 6749 §5.2).
    pub(crate) async fn call<T>(
        &self,
        call: EndpointCall<'_>,
        parse: impl FnOnce(&HttpResponse) -> Result<T>,
    ) -> Result<T> {
        use tracing::Instrument as _;
        let span = tracing::debug_span!(
            target: "agent_oauth",
            "oauth.endpoint",
            endpoint = ?call.endpoint,
            operation = %call.operation,
            client_id = %self.inner.client_id,
        );
        // A refresh answered 401/403 without an OAuth error is about the refresh token as much
        // as the client: it stays an HTTP error, which ends the refresh token (a dead token is
        // often answered that way) instead of being kept as a client failure and re-sent.
        let token_endpoint = call.endpoint == Endpoint::Token
            && call.operation != token_operation(super::refresh::REFRESH_TOKEN);
        let mut sent = SentSecrets::new();
        let mut context = None;
        let result = async {
            let resp = self.call_inner(call, &mut sent, &mut context).await?;
            if !resp.status().is_success() {
                return Err(status_error(&resp, token_endpoint));
            }
            parse(&resp)
        }
        .instrument(span.clone())
        .await;
        result.map_err(|e| {
            let mut e = e.redacted(&sent);
            if let Some(ctx) = &context {
                e = e.with_context(ctx);
            }
            span.in_scope(|| tracing::debug!(target: "agent_oauth", error = %e, "request failed"));
            e
        })
    }

    async fn call_inner(
        &self,
        call: EndpointCall<'_>,
        sent: &mut SentSecrets,
        context: &mut Option<ErrorContext>,
    ) -> Result<HttpResponse> {
        let (url, md) = self.endpoint_url(call.endpoint).await?;
        *context = Some(ErrorContext::new(call.operation, &url));
        let auth = self.inner.auth.resolve(&md)?;
        if let Some(secret) = auth.sent_secret() {
            sent.add(secret.expose_secret());
        }
        // An external client assertion is read (or renewed) once per call, before the attempts.
        let external = if call.authenticate {
            auth.prepare().await?
        } else {
            None
        };
        if let Some(a) = &external {
            sent.add(a.expose_secret());
        }
        let dpop = call.dpop_override.or(self.inner.dpop.as_ref());
        let mut form = FormRequest::new(url.clone());
        form.params = call.params;
        let transport = self.transport();
        let nonces: &NonceCache = &self.inner.nonces;
        let server_nonces = ServerNonces(nonces);
        let server_nonces = &server_nonces;
        let sent = std::sync::Mutex::new(sent);
        let slot = NonceSlot::new(&url, NonceRole::AuthorizationServer);
        let answered = send_with_nonce_retry(
            nonces,
            &slot,
            dpop.is_some(),
            || true,
            |nonce| {
                let (form, auth, url, sent, external) = (&form, &auth, &url, &sent, &external);
                // Client authentication and the proof are minted anew for every attempt,
                // transport retries included, each with the nonce current at that attempt.
                transport.execute_for(
                    call.policy,
                    move || {
                        // The server's time, as far as its `Date` headers tell: both the client
                        // assertion (`iat`/`exp`, RFC 7523 §3) and the proof (`iat`) are judged
                        // by its clock.
                        let now = transport.server_time(url);
                        let mut f = form.clone();
                        if call.authenticate {
                            auth.apply_prepared(
                                &self.inner.client_id,
                                self.inner.server.issuer(),
                                &mut f,
                                now,
                                external.as_ref(),
                            )?;
                        }
                        if let Some(key) = dpop {
                            let iat = crate::clock::unix_secs(now);
                            let value = key.proof_header(
                                "POST",
                                url,
                                iat,
                                nonce.current().as_deref(),
                                None,
                            )?;
                            f.headers.insert(crate::dpop::DPOP_HEADER, value);
                        }
                        register_sent(&f, &mut crate::sync::lock(sent));
                        f.to_http()
                    },
                    server_nonces,
                )
            },
        )
        .await?;
        Ok(answered.response)
    }
}

/// Form members whose values are secrets: credentials, grants, codes, verifiers and tokens.
const SECRET_PARAMS: &[&str] = &[
    "client_secret",
    "client_assertion",
    "refresh_token",
    "code",
    "code_verifier",
    "device_code",
    "subject_token",
    "actor_token",
    "token",
    "assertion",
    "password",
];

/// Register every secret `form` sends: secret members and the `Authorization` credentials.
fn register_sent(form: &FormRequest, sent: &mut SentSecrets) {
    for (k, v) in &form.params {
        if SECRET_PARAMS.contains(&k.as_str()) {
            sent.add(v);
        }
    }
    if let Some(credentials) = form
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map(|(_, c)| c.trim())
    {
        sent.add(credentials);
    }
}

/// The operation name of a token request for `grant_type`: `token request (client_credentials)`,
/// and for URN grant types their last part (`token request (device_code)`).
fn token_operation(grant_type: &str) -> String {
    let short = grant_type
        .rsplit_once("grant-type:")
        .map_or(grant_type, |(_, s)| s);
    format!("token request ({})", sanitize(short, 64))
}

/// The error an unsuccessful answer carries. At the token endpoint a 401 or 403 without an
/// OAuth error is a client authentication failure (`invalid_client`, RFC 6749 §5.2) even when
/// the body is empty.
fn status_error(resp: &HttpResponse, token_endpoint: bool) -> Error {
    match oauth_error(resp) {
        Error::Http {
            status: status @ (401 | 403),
            body,
            ..
        } if token_endpoint => {
            let mut e = OAuthError::new(OAuthErrorCode::InvalidClient, status);
            e.error_description = (!body.is_empty()).then_some(body);
            e.challenges =
                crate::challenge::challenges_from_headers(resp.headers()).unwrap_or_default();
            e.dpop_nonce = crate::transport::origin::OriginFacts::of(resp)
                .dpop_nonce
                .clone();
            e.into()
        }
        other => other,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
