//! The [`TestServer`]: an axum app on `127.0.0.1:<ephemeral port>`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::config::{TestClient, TestServerConfig};
use super::grants::{DEVICE_CODE, JWT_BEARER, TOKEN_EXCHANGE};
use super::http_util::{json_no_store, no_store};
use super::state::{bump, lock, now, secs, RefreshRecord, Shared, Stats, USER};
use crate::Scope;

/// An in-process OAuth 2 authorization server and protected resource for examples and tests.
///
/// It listens on `127.0.0.1` on a port of the operating system's choosing, and stops when
/// dropped. See the [module documentation](super) for what it implements.
///
/// ```no_run
/// # async fn demo() {
/// use agent_oauth::testkit::TestServer;
/// let server = TestServer::start().await;
/// println!("issuer: {}, resource: {}", server.issuer(), server.resource_url());
/// # }
/// ```
pub struct TestServer {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

impl Drop for TestServer {
    /// Stops accepting connections and closes idle keep-alive connections at once (so pooled
    /// client connections stop reaching the server); requests in flight get up to a second to
    /// finish before the server task is aborted.
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let abort = self.task.abort_handle();
                handle.spawn(async move {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    abort.abort();
                });
            }
            Err(_) => self.task.abort(),
        }
    }
}

type S = State<Arc<Shared>>;

impl TestServer {
    /// Start with the default configuration ([`TestServerConfig::default`]), which registers:
    ///
    /// | client_id | authentication | secret |
    /// |---|---|---|
    /// | `agent` | `client_secret_basic` | `agent-secret` |
    /// | `agent-post` | `client_secret_post` | `agent-post-secret` |
    /// | `public-agent` | `none` | |
    ///
    /// each allowed every default scope and redirect URI `http://127.0.0.1/cb` (any port).
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, or outside a Tokio runtime.
    pub async fn start() -> TestServer {
        Self::start_with(TestServerConfig::default()).await
    }

    /// Start with `config`.
    ///
    /// # Panics
    ///
    /// When no loopback port can be bound, or outside a Tokio runtime.
    pub async fn start_with(config: TestServerConfig) -> TestServer {
        #[allow(clippy::expect_used)]
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("testkit: cannot bind a port on 127.0.0.1");
        #[allow(clippy::expect_used)]
        let addr = listener
            .local_addr()
            .expect("testkit: bound socket has no local address");
        let shared = Arc::new(Shared::new(config, format!("http://{addr}")));
        let app = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!(error = %e, "testkit server stopped");
            }
        });
        TestServer {
            shared,
            task,
            shutdown: Some(tx),
        }
    }

    /// The issuer identifier, `http://127.0.0.1:<port>`; metadata is under
    /// `<issuer>/.well-known/`.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The server's public signing key (EC P-256 JWK with `kid`), also served at `/jwks`: what
    /// another test server needs to [trust](TestServerConfig::with_trusted_issuer) the ID-JAGs
    /// this one issues.
    pub fn public_jwk(&self) -> serde_json::Value {
        self.shared.public_jwk()
    }

    /// The protected resource, `<issuer>/api`.
    pub fn resource_url(&self) -> String {
        self.shared.resource()
    }

    /// The MCP resource, `<issuer>/mcp` (see the [module documentation](super)).
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.shared.issuer)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Make the next `n` token endpoint requests fail with `status` (and `Retry-After:
    /// retry_after` seconds when given). The body is an OAuth error: `temporarily_unavailable`
    /// for 503, `server_error` otherwise.
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        let mut f = lock(&self.shared.fault);
        f.remaining = n;
        f.status = status;
        f.retry_after = retry_after;
    }

    /// Delay every token endpoint response by `d` from now on.
    pub fn set_latency(&self, d: Duration) {
        *lock(&self.shared.latency) = d;
    }

    /// Approve the pending device authorization with this user code (case and dashes
    /// ignored) for the user `agent-user`. False when there is no such pending code.
    pub fn approve_device(&self, user_code: &str) -> bool {
        self.shared.decide_device(user_code, true)
    }

    /// Deny the pending device authorization with this user code. False when there is no
    /// such pending code.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.shared.decide_device(user_code, false)
    }

    /// Revoke every grant: all access and refresh tokens issued so far stop working.
    pub fn revoke_all(&self) {
        let mut inner = self.shared.inner();
        let ids: Vec<u64> = inner.grants.keys().copied().collect();
        for id in ids {
            self.shared.revoke_grant(&mut inner, id);
        }
    }

    /// Give the server the client ID metadata document served at `url`, as if it had fetched
    /// it (it never fetches): with
    /// [`with_client_id_metadata_documents`](TestServerConfig::with_client_id_metadata_documents),
    /// `url` is then a `client_id` every endpoint accepts while the document passes
    /// [`validate_client_id_metadata_document`](crate::registration::validate_client_id_metadata_document)
    /// (checked at each use). Its method is `none`, or `private_key_jwt` with the first key of
    /// its `jwks`. A document given again for the same URL replaces the first.
    pub fn add_client_id_metadata_document(&self, url: &str, document: Value) {
        lock(&self.shared.metadata_documents)
            .insert(url.to_owned(), document.to_string().into_bytes());
    }

    /// The clients registered at `/register` so far, in order, with their secrets.
    pub fn registered_clients(&self) -> Vec<TestClient> {
        lock(&self.shared.registered).clone()
    }

    /// Forget every client registered at `/register`, as a server that dropped them would:
    /// their next token request is refused with `invalid_client`.
    pub fn forget_registered_clients(&self) {
        lock(&self.shared.registered).clear();
    }

    /// Mint a new grant for `agent-user` and `client_id` with `scope`, and return its refresh
    /// token (not sender-constrained, no resource indicators).
    pub fn issue_refresh_token(&self, client_id: &str, scope: &str) -> String {
        self.issue_refresh_token_for(client_id, scope, USER, &[])
    }

    /// As [`issue_refresh_token`](Self::issue_refresh_token), for the user `sub` and with
    /// `resources` (RFC 8707) in the grant: the access tokens refreshed from it carry `sub`
    /// (and the resource at `/api` echoes it).
    pub fn issue_refresh_token_for(
        &self,
        client_id: &str,
        scope: &str,
        sub: &str,
        resources: &[&str],
    ) -> String {
        self.mint_refresh_token(client_id, scope, sub, resources, None)
    }

    /// As [`issue_refresh_token`](Self::issue_refresh_token), bound to the DPoP key with
    /// thumbprint `jkt` (RFC 9449 §5: refreshing it needs a proof of that key).
    pub fn issue_dpop_bound_refresh_token(
        &self,
        client_id: &str,
        scope: &str,
        jkt: &str,
    ) -> String {
        self.mint_refresh_token(client_id, scope, USER, &[], Some(jkt.to_owned()))
    }

    fn mint_refresh_token(
        &self,
        client_id: &str,
        scope: &str,
        sub: &str,
        resources: &[&str],
        jkt: Option<String>,
    ) -> String {
        let mut inner = self.shared.inner();
        let grant_id = Shared::new_grant(&mut inner);
        let t = now();
        Shared::new_refresh(
            &mut inner,
            RefreshRecord {
                grant_id,
                client_id: client_id.to_owned(),
                sub: sub.to_owned(),
                scope: Scope::parse(scope),
                resources: resources.iter().map(|r| (*r).to_owned()).collect(),
                iat: t,
                exp: t.saturating_add(secs(self.shared.config.refresh_token_ttl)),
                consumed: false,
                jkt,
            },
        )
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .route(
            "/.well-known/oauth-protected-resource/api",
            get(resource_metadata),
        )
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .route("/introspect", post(introspect))
        .route("/device/auth", post(device_auth))
        .route("/register", post(register))
        .route("/device", get(device_page))
        .route("/api", any(resource))
        .route("/api/{*rest}", any(resource))
        .merge(super::mcp::routes())
        .fallback(not_found)
        .with_state(shared)
}

impl Shared {
    fn server_metadata(&self) -> Value {
        let e = |p: &str| self.endpoint(p);
        let mut metadata = json!({
            "issuer": self.issuer,
            "authorization_endpoint": e("/authorize"),
            "token_endpoint": e("/token"),
            "jwks_uri": e("/jwks"),
            "revocation_endpoint": e("/revoke"),
            "introspection_endpoint": e("/introspect"),
            "device_authorization_endpoint": e("/device/auth"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": [
                "authorization_code",
                "client_credentials",
                "refresh_token",
                DEVICE_CODE,
                TOKEN_EXCHANGE,
                JWT_BEARER,
            ],
            "authorization_grant_profiles_supported": [
                "urn:ietf:params:oauth:grant-profile:id-jag"
            ],
            "token_endpoint_auth_methods_supported": [
                "none", "client_secret_basic", "client_secret_post", "private_key_jwt"
            ],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
            "revocation_endpoint_auth_methods_supported": [
                "none", "client_secret_basic", "client_secret_post", "private_key_jwt"
            ],
            "introspection_endpoint_auth_methods_supported": [
                "none", "client_secret_basic", "client_secret_post", "private_key_jwt"
            ],
            "code_challenge_methods_supported": ["S256"],
            "dpop_signing_alg_values_supported": ["ES256"],
            "authorization_response_iss_parameter_supported": true,
            "scopes_supported": self.config.scopes,
            "subject_types_supported": ["public"],
        });
        if let Some(m) = metadata.as_object_mut() {
            if self.config.dynamic_registration {
                m.insert("registration_endpoint".into(), json!(e("/register")));
            }
            if self.config.client_id_metadata_documents {
                m.insert("client_id_metadata_document_supported".into(), json!(true));
            }
        }
        metadata
    }
}

async fn metadata(State(s): S) -> Response {
    Json(s.server_metadata()).into_response()
}

async fn resource_metadata(State(s): S) -> Response {
    Json(s.resource_metadata()).into_response()
}

async fn jwks(State(s): S) -> Response {
    bump(&s.counters.jwks_requests);
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    (h, Json(s.jwks())).into_response()
}

async fn authorize(State(s): S, uri: Uri) -> Response {
    s.authorize(uri.query())
}

async fn device_page(State(s): S, uri: Uri) -> Response {
    s.device_page(uri.query())
}

async fn token(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    bump(&s.counters.token_requests);
    let latency = *lock(&s.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(resp) = injected_fault(&s) {
        return resp;
    }
    let result = s.token(&headers, &body);
    let nonce = s.inner().as_nonces.current();
    match result {
        Ok(body) => json_no_store(StatusCode::OK, body, Some(&nonce)),
        Err(e) => e.response(Some(&nonce)),
    }
}

fn injected_fault(s: &Shared) -> Option<Response> {
    let mut f = lock(&s.fault);
    if f.remaining == 0 {
        return None;
    }
    f.remaining -= 1;
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let error = if status == StatusCode::SERVICE_UNAVAILABLE {
        "temporarily_unavailable"
    } else {
        "server_error"
    };
    let mut h = no_store();
    if let Some(v) = f.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(v));
    }
    let body = json!({"error": error, "error_description": "injected fault"});
    Some((status, h, Json(body)).into_response())
}

async fn revoke(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    match s.revoke(&headers, &body) {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => e.response(None),
    }
}

async fn introspect(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    match s.introspect(&headers, &body) {
        Ok(v) => json_no_store(StatusCode::OK, v, None),
        Err(e) => e.response(None),
    }
}

async fn register(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    if !s.config.dynamic_registration {
        return not_found().await;
    }
    match s.register(&headers, &body) {
        Ok(v) => json_no_store(StatusCode::CREATED, v, None),
        Err(e) => e.response(None),
    }
}

async fn device_auth(State(s): S, headers: HeaderMap, body: Bytes) -> Response {
    match s.device_authorization(&headers, &body) {
        Ok(v) => json_no_store(StatusCode::OK, v, None),
        Err(e) => e.response(None),
    }
}

async fn resource(State(s): S, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    s.resource_request(&method, uri.path(), &headers)
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "invalid_request", "error_description": "unrecognized route"})),
    )
        .into_response()
}
