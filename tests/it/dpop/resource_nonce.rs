//! Resources that signal `use_dpop_nonce` with 400 instead of 401, and ones that never stop
//! asking: one retry, only when the nonce changed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::prelude::TestServer;
use crate::support::prelude::{Agent, ClientAuth, OAuthErrorCode};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;

#[derive(Clone)]
struct Rs {
    hits: Arc<AtomicUsize>,
    status: StatusCode,
    always_new: bool,
}

fn proof_nonce(headers: &HeaderMap) -> Option<String> {
    let proof = headers.get("dpop")?.to_str().ok()?;
    let payload = proof.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["nonce"].as_str().map(str::to_owned)
}

async fn api(State(rs): State<Rs>, headers: HeaderMap) -> impl IntoResponse {
    let n = rs.hits.fetch_add(1, Ordering::SeqCst);
    let nonce = proof_nonce(&headers);
    if nonce.as_deref() == Some("rs-nonce-1") && !rs.always_new {
        return (StatusCode::OK, HeaderMap::new(), "ok").into_response();
    }
    let mut h = HeaderMap::new();
    let fresh = if rs.always_new {
        format!("rs-nonce-{}", n + 10)
    } else {
        "rs-nonce-1".into()
    };
    h.insert("dpop-nonce", fresh.parse().expect("header"));
    h.insert(
        "www-authenticate",
        r#"DPoP error="use_dpop_nonce", error_description="nonce required""#
            .parse()
            .expect("header"),
    );
    (rs.status, h, "").into_response()
}

async fn serve(rs: Rs) -> String {
    let app = axum::Router::new()
        .route("/data", axum::routing::any(api))
        .with_state(rs);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/data")
}

async fn agent_for(server: &TestServer, resource: &str) -> Agent {
    Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .resource(resource)
        .build()
        .await
        .expect("agent")
}

#[tokio::test]
async fn dpop_nonce_resource_answering_400_is_retried_once() {
    let server = TestServer::start().await;
    let hits = Arc::new(AtomicUsize::new(0));
    let url = serve(Rs {
        hits: hits.clone(),
        status: StatusCode::BAD_REQUEST,
        always_new: false,
    })
    .await;
    let agent = agent_for(&server, &url).await;
    let resp = agent.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // Remembered: the next call goes through first time.
    agent.get(&url).send().await.expect("send");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn dpop_nonce_resource_that_keeps_asking_is_not_looped() {
    let server = TestServer::start().await;
    let hits = Arc::new(AtomicUsize::new(0));
    let url = serve(Rs {
        hits: hits.clone(),
        status: StatusCode::UNAUTHORIZED,
        always_new: true,
    })
    .await;
    let agent = agent_for(&server, &url).await;
    let err = agent.get(&url).send().await.expect_err("never satisfied");
    assert_eq!(
        err.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::UseDpopNonce)
    );
    // First try + one nonce retry, then (as a 401) one fresh token + its nonce retry: bounded.
    let n = hits.load(Ordering::SeqCst);
    assert!(n <= 4, "{n} requests");
}
