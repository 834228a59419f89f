//! Discovery against a real authorization server: Node oidc-provider 9 run by
//! `support::oidc_provider`. Each test prints a skip line and returns when Node.js is missing
//! (and `CI` is unset).

use std::sync::{Arc, Mutex};

use crate::support::prelude::{
    challenges_from_headers, fetch_resource_metadata, resource_metadata_from_challenges,
    AuthorizationServer, Endpoint, Error, HttpTransport, MetadataPolicy, RetryPolicy,
    ServerMetadata,
};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use url::Url;

use crate::support::oidc_provider::OidcProvider;
use crate::support::server::{guard, TestHttp};

const RFC8414: &str = "/.well-known/oauth-authorization-server";
const OPENID: &str = "/.well-known/openid-configuration";
const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

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

fn as_strings(v: Option<&Vec<String>>) -> Vec<&str> {
    v.map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn interop_discovery_both_well_known_forms_parse() {
    let Some(p) = start(json!({}), "interop_discovery_both_well_known_forms_parse").await else {
        return;
    };
    let mut docs = Vec::new();
    for path in [RFC8414, OPENID] {
        let (status, body) = raw_get(&p, &p.url(path)).await;
        assert_eq!(status, 200, "{path}");
        let md =
            ServerMetadata::from_json(&body, &p.issuer).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(md.issuer, p.issuer, "{path}");
        assert_eq!(
            md.token_endpoint.as_deref(),
            Some(&*p.url("/token")),
            "{path}"
        );
        assert_eq!(md.jwks_uri.as_deref(), Some(&*p.url("/jwks")), "{path}");
        docs.push(md);
    }
    assert_eq!(
        docs[0], docs[1],
        "both well-known forms describe the same server"
    );
}

#[tokio::test]
async fn interop_discovery_metadata_end_to_end_typed() {
    let Some(p) = start(json!({}), "interop_discovery_metadata_end_to_end_typed").await else {
        return;
    };
    let server =
        AuthorizationServer::new(&p.issuer, HttpTransport::new().expect("transport")).expect("as");
    let md = guard(server.metadata()).await.expect("metadata");
    assert_eq!(md.issuer, p.issuer);

    let dpop = as_strings(md.dpop_signing_alg_values_supported.as_ref());
    assert!(dpop.contains(&"ES256"), "{dpop:?}");
    assert!(md.supports_dpop_alg("ES256"));
    assert!(!md.supports_dpop_alg("none"));

    let grants = as_strings(md.grant_types_supported.as_ref());
    for g in [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        DEVICE_CODE,
    ] {
        assert!(grants.contains(&g), "{g} missing from {grants:?}");
    }

    assert_eq!(
        as_strings(md.code_challenge_methods_supported.as_ref()),
        ["S256"]
    );
    assert_eq!(
        md.authorization_response_iss_parameter_supported,
        Some(true)
    );
    assert_eq!(md.endpoint(Endpoint::Token, false), Some(&*p.url("/token")));
    assert_eq!(
        md.endpoint(Endpoint::DeviceAuthorization, false),
        Some(&*p.url("/device/auth"))
    );
    assert_eq!(
        md.endpoint(Endpoint::Revocation, true),
        Some(&*p.url("/token/revocation")),
        "no mTLS aliases without TLS: the plain endpoint is used"
    );
    assert!(md.endpoint(Endpoint::Introspection, false).is_some());
    assert!(md
        .endpoint(Endpoint::PushedAuthorizationRequest, false)
        .is_some());
    let auth_methods = as_strings(md.token_endpoint_auth_methods_supported.as_ref());
    assert!(
        auth_methods.contains(&"private_key_jwt"),
        "{auth_methods:?}"
    );
    assert!(
        auth_methods.contains(&"client_secret_basic"),
        "{auth_methods:?}"
    );
    // Members the struct does not name are kept.
    assert!(
        md.extra.contains_key("claims_parameter_supported")
            || md.extra.contains_key("claim_types_supported"),
        "{:?}",
        md.extra.keys().collect::<Vec<_>>()
    );

    // Cached: a second call returns the same document.
    let again = guard(server.metadata()).await.expect("cached");
    assert!(Arc::ptr_eq(&md, &again));
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

#[tokio::test]
async fn interop_discovery_resource_metadata_from_challenge() {
    let Some(p) = start(
        json!({ "resource_server": true }),
        "interop_discovery_resource_metadata_from_challenge",
    )
    .await
    else {
        return;
    };
    let api = p.resource.clone().expect("resource URL");
    let requested = Url::parse(&format!("{api}/hello")).expect("url");
    let t = HttpTransport::new().expect("transport");

    // An unauthenticated call gets a 401 naming the metadata URL.
    let target = requested.to_string();
    let resp = guard(t.execute(RetryPolicy::Idempotent, || {
        Ok(http::Request::get(target.as_str())
            .body(Vec::new())
            .expect("request"))
    }))
    .await
    .expect("response");
    assert_eq!(resp.status(), 401);
    let challenges = challenges_from_headers(resp.headers()).expect("challenges");
    let announced = resource_metadata_from_challenges(&challenges).expect("resource_metadata");
    assert_eq!(
        announced,
        p.url("/.well-known/oauth-protected-resource/api")
    );
    let metadata_url = MetadataPolicy::SameOrigin
        .check(announced, &requested)
        .expect("same origin");

    let md = guard(fetch_resource_metadata(&t, &requested, Some(&metadata_url)))
        .await
        .expect("resource metadata");
    assert_eq!(md.resource, api);
    assert_eq!(md.authorization_servers(), std::slice::from_ref(&p.issuer));
    assert_eq!(
        md.dpop_signing_alg_values_supported.as_deref(),
        Some(&["ES256".to_owned()][..])
    );

    // The well-known URL derived from the resource itself gives the same document.
    let api_url = Url::parse(&api).expect("url");
    let same = guard(fetch_resource_metadata(&t, &api_url, None))
        .await
        .expect("well-known");
    assert_eq!(same, md);

    // And the named authorization server is discoverable.
    let server = AuthorizationServer::new(&md.authorization_servers()[0], t).expect("as");
    let as_md = guard(server.metadata()).await.expect("AS metadata");
    assert_eq!(as_md.issuer, p.issuer);

    // Metadata fetched for another resource on the same server is refused.
    let other = Url::parse(&p.url("/not-the-api")).expect("url");
    let err = guard(fetch_resource_metadata(
        server.transport(),
        &other,
        Some(&metadata_url),
    ))
    .await
    .expect_err("resource mismatch");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");
}
