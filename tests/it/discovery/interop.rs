//! Discovery against node oidc-provider 9 run by `support::oidc_provider`, where it needs the
//! provider's `issuer_override`: the OpenID fallback behind a proxy and a mix-up issuer. Each test prints a skip line and returns when Node.js is missing
//! (and `CI` is unset).

use std::sync::{Arc, Mutex};

use crate::support::prelude::{AuthorizationServer, Error, HttpTransport, ServerMetadata};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::support::oidc_provider::OidcProvider;
use crate::support::server::{guard, TestHttp};

const RFC8414: &str = "/.well-known/oauth-authorization-server";
const OPENID: &str = "/.well-known/openid-configuration";

async fn start(config: Value, test: &str) -> Option<OidcProvider> {
    let p = OidcProvider::start(config).await;
    if p.is_none() {
        println!("{test}: skipped (node not installed)");
    }
    p
}

/// GET `url` with a plain reqwest client and return status and raw body.
async fn raw_get(p: &OidcProvider, url: &str) -> (u16, Vec<u8>) {
    let resp = guard(p.http_client().get(url).send())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let body = guard(resp.bytes()).await.expect("body").to_vec();
    (status, body)
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    client: reqwest::Client,
    seen: Arc<Mutex<Vec<String>>>,
}

/// Forwards GETs to the provider, except the RFC 8414 well-known URL, which is 404 (a server
/// that only implements OpenID discovery).
async fn forward(State(p): State<Proxy>, uri: Uri) -> Response {
    let path = uri.path().to_owned();
    p.seen.lock().expect("seen lock").push(path.clone());
    if path.starts_with(RFC8414) {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let target = format!(
        "{}{}",
        p.upstream,
        uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    match p.client.get(target).send().await {
        Ok(r) => {
            let status = StatusCode::from_u16(r.status().as_u16())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let content_type = r.headers().get("content-type").cloned();
            let body = r.bytes().await.unwrap_or_default();
            let mut resp = (status, body).into_response();
            if let Some(ct) = content_type {
                resp.headers_mut().insert("content-type", ct);
            }
            resp
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

#[tokio::test]
async fn interop_discovery_openid_fallback_end_to_end() {
    // The proxy's origin is the issuer (advertised by the provider through
    // `issuer_override`), and it hides the RFC 8414 document, so the client must fall back.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let Some(p) = start(
        json!({ "issuer_override": issuer }),
        "interop_discovery_openid_fallback_end_to_end",
    )
    .await
    else {
        return;
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = axum::Router::new().fallback(forward).with_state(Proxy {
        upstream: p.issuer.clone(),
        client: p.http_client(),
        seen: Arc::clone(&seen),
    });
    let _proxy = TestHttp::start_on(listener, router);

    let server =
        AuthorizationServer::new(&issuer, HttpTransport::new().expect("transport")).expect("as");
    let md = guard(server.metadata())
        .await
        .expect("metadata via OpenID discovery");
    assert_eq!(md.issuer, issuer);
    assert_eq!(md.token_endpoint.as_deref(), Some(&*p.url("/token")));
    assert!(md.supports_dpop_alg("ES256"));
    assert_eq!(*seen.lock().expect("seen lock"), [RFC8414, OPENID]);
}

#[tokio::test]
async fn interop_discovery_mismatched_issuer_rejected() {
    const EVIL: &str = "https://as.example.com";
    let Some(p) = start(
        json!({ "issuer_override": EVIL }),
        "interop_discovery_mismatched_issuer_rejected",
    )
    .await
    else {
        return;
    };
    for path in [RFC8414, OPENID] {
        let (status, body) = raw_get(&p, &p.url(path)).await;
        assert_eq!(status, 200, "{path}");
        let err = ServerMetadata::from_json(&body, &p.issuer).expect_err(path);
        assert!(matches!(err, Error::Discovery(_)), "{path}: {err:?}");
        assert!(err.to_string().contains("issuer mismatch"), "{err}");
        // The document itself is fine: only the issuer check rejects it.
        ServerMetadata::from_json(&body, EVIL).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let server =
        AuthorizationServer::new(&p.issuer, HttpTransport::new().expect("transport")).expect("as");
    let err = guard(server.metadata()).await.expect_err("mix-up");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");
    assert!(err.to_string().contains(EVIL), "{err}");
}
