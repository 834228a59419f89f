//! A scripted loopback server for the nonce-retry tests of the layers above: an authorization
//! server (metadata and token endpoint) and resources on one origin, recording the nonce of
//! every DPoP proof it receives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;

/// A transport configuration whose retries wait a few milliseconds only.
pub(crate) fn fast_transport() -> crate::transport::TransportConfig {
    crate::transport::TransportConfig {
        min_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(5),
        ..Default::default()
    }
}

type Seen = Arc<Mutex<HashMap<String, Vec<Option<String>>>>>;

/// The running server.
pub(crate) struct Scripted {
    /// `http://127.0.0.1:port` (the issuer).
    pub(crate) base: String,
    seen: Seen,
}

impl Scripted {
    /// The nonce each DPoP proof sent to `path` carried, in order.
    pub(crate) fn nonces(&self, path: &str) -> Vec<Option<String>> {
        crate::sync::lock(&self.seen)
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

/// The nonce the request's DPoP proof carries, if any.
pub(crate) fn proof_nonce(headers: &HeaderMap) -> Option<String> {
    let proof = headers.get("dpop")?.to_str().ok()?;
    let payload = proof.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["nonce"].as_str().map(str::to_owned)
}

/// Record the proof's nonce for `path` and return how many requests `path` had before.
fn record(seen: &Seen, path: &str, headers: &HeaderMap) -> usize {
    let mut seen = crate::sync::lock(seen);
    let list = seen.entry(path.to_owned()).or_default();
    list.push(proof_nonce(headers));
    list.len() - 1
}

/// The first request answers 503 with a new nonce; later ones succeed with `ok` when their
/// proof carries that nonce and are refused with `use_dpop_nonce` otherwise.
fn nonce_after_503(
    hit: usize,
    headers: &HeaderMap,
    nonce: &'static str,
    ok: Response,
    refusal: Response,
) -> Response {
    let with_nonce = |mut r: Response| {
        r.headers_mut()
            .insert("dpop-nonce", axum::http::HeaderValue::from_static(nonce));
        r
    };
    if hit == 0 {
        return with_nonce(StatusCode::SERVICE_UNAVAILABLE.into_response());
    }
    if proof_nonce(headers).as_deref() == Some(nonce) {
        return ok;
    }
    with_nonce(refusal)
}

/// A loopback listener, its base URL (the issuer) and a router serving the metadata of an
/// authorization server there whose token endpoint is `/token` (client credentials, DPoP with
/// ES256).
pub(crate) async fn listen() -> (tokio::net::TcpListener, String, axum::Router) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let metadata = serde_json::json!({
        "issuer": base,
        "token_endpoint": format!("{base}/token"),
        "dpop_signing_alg_values_supported": ["ES256"],
        "grant_types_supported": ["client_credentials"],
    });
    let app = axum::Router::new().route(
        "/.well-known/oauth-authorization-server",
        axum::routing::get(move || async move { axum::Json(metadata) }),
    );
    (listener, base, app)
}

/// Start the server. Routes: AS metadata, `POST /token` and `/data` (both answering 503 with a
/// nonce first, see `nonce_after_503`), and `/scoped` (403 `insufficient_scope` asking for
/// `read write` first, then 200).
pub(crate) async fn start() -> Scripted {
    let (listener, base, app) = listen().await;
    let seen: Seen = Arc::default();
    let (s1, s2, s3) = (seen.clone(), seen.clone(), seen.clone());
    let app = app
        .route(
            "/token",
            axum::routing::post(move |headers: HeaderMap| async move {
                let hit = record(&s1, "/token", &headers);
                let token = serde_json::json!({
                    "access_token": format!("at-{hit}"),
                    "token_type": "DPoP",
                    "expires_in": 300,
                });
                let refusal = (
                    StatusCode::BAD_REQUEST,
                    axum::Json(serde_json::json!({"error": "use_dpop_nonce"})),
                );
                nonce_after_503(
                    hit,
                    &headers,
                    "as-n",
                    axum::Json(token).into_response(),
                    refusal.into_response(),
                )
            }),
        )
        .route(
            "/data",
            axum::routing::any(move |headers: HeaderMap| async move {
                let hit = record(&s2, "/data", &headers);
                let refusal = (
                    StatusCode::UNAUTHORIZED,
                    [("www-authenticate", r#"DPoP error="use_dpop_nonce""#)],
                );
                nonce_after_503(
                    hit,
                    &headers,
                    "rs-n",
                    "ok".into_response(),
                    refusal.into_response(),
                )
            }),
        )
        .route(
            "/scoped",
            axum::routing::any(move |headers: HeaderMap| async move {
                if record(&s3, "/scoped", &headers) == 0 {
                    let challenge = r#"DPoP error="insufficient_scope", scope="read write""#;
                    return (StatusCode::FORBIDDEN, [("www-authenticate", challenge)])
                        .into_response();
                }
                "ok".into_response()
            }),
        );
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    Scripted { base, seen }
}
