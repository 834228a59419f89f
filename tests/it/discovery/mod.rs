//! Authorization server metadata (RFC 8414 / OpenID Discovery) and protected resource metadata
//! (RFC 9728) against a scripted in-process server, plus property tests of both parsers;
//! `scenarios`: the same against both servers (`support::servers`); `interop`: the OpenID
//! fallback and a mix-up issuer at node oidc-provider.

mod interop;
mod jwks;
mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use crate::support::prelude::{
    challenges_from_headers, dangerous, fetch_resource_metadata, resource_metadata_from_challenges,
    resource_metadata_url, AuthorizationServer, Error, HttpTransport, MetadataPolicy,
    ResourceMetadata, RetryPolicy, ServerMetadata, TransportConfig,
};
use proptest::prelude::*;
use serde_json::{json, Value};
use url::Url;

use crate::support::server::{guard, non_loopback_ipv4, Reply, Scripted};

const RFC8414: &str = "/.well-known/oauth-authorization-server";
const OPENID: &str = "/.well-known/openid-configuration";
const PRM: &str = "/.well-known/oauth-protected-resource";

fn fast_config() -> TransportConfig {
    let mut c = TransportConfig::default();
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(3);
    c.deadline = Duration::from_secs(10);
    c.min_backoff = Duration::from_millis(5);
    c.max_backoff = Duration::from_millis(20);
    c
}

fn transport() -> HttpTransport {
    HttpTransport::with_config(fast_config()).expect("transport")
}

fn as_doc(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA"],
        "x_vendor_extension": {"a": 1}
    })
}

fn url(s: &str) -> Url {
    Url::parse(s).expect("url")
}

// ------------------------------------------------------------------ server metadata

#[tokio::test]
async fn discovery_rfc8414_well_known_path_inserted_for_issuer_with_path() {
    let s = Scripted::start().await;
    let issuer = s.url("/tenants/acme");
    s.route(
        &format!("{RFC8414}/tenants/acme"),
        Reply::json(200, &as_doc(&issuer)),
    );
    let server = AuthorizationServer::new(&issuer, transport()).expect("as");
    assert_eq!(server.issuer(), issuer);
    let md = guard(server.metadata()).await.expect("metadata");
    assert_eq!(md.issuer, issuer);
    assert_eq!(
        md.token_endpoint.as_deref(),
        Some(&*format!("{issuer}/token"))
    );
    assert_eq!(
        md.grant_types_supported.as_deref(),
        Some(
            &[
                "authorization_code".to_owned(),
                "client_credentials".into(),
                "refresh_token".into()
            ][..]
        )
    );
    assert!(md.supports_dpop_alg("EdDSA"));
    assert_eq!(md.extra["x_vendor_extension"], json!({"a": 1}));
    assert_eq!(s.paths(), [format!("{RFC8414}/tenants/acme")]);
    let req = &s.requests()[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.header("accept"), Some("application/json"));
}

#[tokio::test]
async fn discovery_issuer_trailing_slash_is_dropped_from_well_known_path() {
    let s = Scripted::start().await;
    let issuer = s.url("/t/");
    s.route(&format!("{RFC8414}/t"), Reply::json(200, &as_doc(&issuer)));
    let server = AuthorizationServer::new(&issuer, transport()).expect("as");
    let md = guard(server.metadata()).await.expect("metadata");
    assert_eq!(md.issuer, issuer);
    assert_eq!(s.paths(), [format!("{RFC8414}/t")]);
}

#[tokio::test]
async fn discovery_falls_back_to_openid_configuration_on_404_in_mcp_order() {
    let s = Scripted::start().await;
    let issuer = s.url("/realms/agents");
    s.route(
        &format!("/realms/agents{OPENID}"),
        Reply::json(200, &as_doc(&issuer)),
    );
    let server = AuthorizationServer::new(&issuer, transport()).expect("as");
    let md = guard(server.metadata()).await.expect("metadata");
    assert_eq!(md.issuer, issuer);
    assert_eq!(
        s.paths(),
        [
            format!("{RFC8414}/realms/agents"),
            format!("{OPENID}/realms/agents"),
            format!("/realms/agents{OPENID}")
        ]
    );
}

#[tokio::test]
async fn discovery_openid_fallback_for_issuer_without_path() {
    let s = Scripted::start().await;
    let issuer = s.origin();
    s.route(OPENID, Reply::json(200, &as_doc(&issuer)));
    let server = AuthorizationServer::new(&issuer, transport()).expect("as");
    guard(server.metadata()).await.expect("metadata");
    assert_eq!(s.paths(), [RFC8414, OPENID]);
}

#[tokio::test]
async fn discovery_no_document_at_either_url_is_discovery_error() {
    let s = Scripted::start().await;
    let server = AuthorizationServer::new(&s.origin(), transport()).expect("as");
    let err = guard(server.metadata()).await.expect_err("missing");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");
    assert!(err.to_string().contains("404"), "{err}");
    assert_eq!(s.paths(), [RFC8414, OPENID]);
}

#[tokio::test]
async fn discovery_issuer_mismatch_rejected() {
    let s = Scripted::start().await;
    let issuer = s.origin();
    let server = AuthorizationServer::new(&issuer, transport()).expect("as");
    for advertised in [
        "https://evil.example.com".to_owned(),
        format!("{issuer}/"),
        issuer.replace("127.0.0.1", "localhost"),
        format!("{issuer}/other"),
    ] {
        s.route(RFC8414, Reply::json(200, &as_doc(&advertised)));
        let err = guard(server.metadata()).await.expect_err(&advertised);
        assert!(matches!(err, Error::Discovery(_)), "{advertised}: {err:?}");
        assert!(err.to_string().contains("issuer mismatch"), "{err}");
    }
    // A mismatched document is an attack signal, not a missing one: no fallback.
    assert_eq!(s.hits_for(OPENID), 0);
}

#[tokio::test]
async fn discovery_issuer_mismatch_in_openid_fallback_rejected() {
    let s = Scripted::start().await;
    s.route(
        OPENID,
        Reply::json(200, &as_doc("https://evil.example.com")),
    );
    let server = AuthorizationServer::new(&s.origin(), transport()).expect("as");
    let err = guard(server.metadata()).await.expect_err("mix-up");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");
}

#[tokio::test]
async fn discovery_metadata_is_cached() {
    let s = Scripted::start().await;
    s.route(RFC8414, Reply::json(200, &as_doc(&s.origin())));
    let server = AuthorizationServer::new(&s.origin(), transport()).expect("as");
    let first = guard(server.metadata()).await.expect("first");
    let second = guard(server.metadata()).await.expect("second");
    let third = guard(server.clone().metadata()).await.expect("clone");
    assert!(Arc::ptr_eq(&first, &second));
    assert!(Arc::ptr_eq(&first, &third), "clones share the cache");
    assert_eq!(s.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_concurrent_callers_share_one_fetch() {
    let s = Scripted::start().await;
    s.route(
        RFC8414,
        Reply::json(200, &as_doc(&s.origin())).delay(Duration::from_millis(300)),
    );
    let server = AuthorizationServer::new(&s.origin(), transport()).expect("as");
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let server = server.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                server.metadata().await
            })
        })
        .collect();
    let mut docs = Vec::new();
    for t in tasks {
        docs.push(guard(t).await.expect("join").expect("metadata"));
    }
    assert_eq!(s.hits(), 1, "one fetch for 20 concurrent callers");
    assert!(docs.iter().all(|d| Arc::ptr_eq(d, &docs[0])));
}

#[tokio::test]
async fn discovery_invalidate_forces_refetch() {
    let s = Scripted::start().await;
    s.route(RFC8414, Reply::json(200, &as_doc(&s.origin())));
    let server = AuthorizationServer::new(&s.origin(), transport()).expect("as");
    let first = guard(server.metadata()).await.expect("first");
    server.invalidate();
    let second = guard(server.metadata()).await.expect("second");
    assert_eq!(s.hits(), 2);
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(first, second);
    guard(server.metadata()).await.expect("cached again");
    assert_eq!(s.hits(), 2);
}

#[tokio::test]
async fn discovery_zero_ttl_refetches_every_time() {
    let s = Scripted::start().await;
    s.route(RFC8414, Reply::json(200, &as_doc(&s.origin())));
    let server = AuthorizationServer::new(&s.origin(), transport())
        .expect("as")
        .with_ttl(Duration::ZERO);
    guard(server.metadata()).await.expect("first");
    guard(server.metadata()).await.expect("second");
    assert_eq!(s.hits(), 2);
}

#[tokio::test]
async fn discovery_failed_fetch_is_not_cached() {
    let s = Scripted::start().await;
    s.route(
        RFC8414,
        Reply::json(200, &as_doc("https://evil.example.com")),
    );
    let server = AuthorizationServer::new(&s.origin(), transport()).expect("as");
    guard(server.metadata()).await.expect_err("mismatch");
    s.route(RFC8414, Reply::json(200, &as_doc(&s.origin())));
    guard(server.metadata()).await.expect("recovered");
    assert_eq!(s.hits(), 2);
}

#[tokio::test]
async fn discovery_from_metadata_makes_no_request() {
    let s = Scripted::start().await;
    let md = ServerMetadata::from_json(as_doc(&s.origin()).to_string().as_bytes(), &s.origin())
        .expect("md");
    let server = AuthorizationServer::from_metadata(md.clone(), transport()).expect("as");
    let got = guard(server.metadata()).await.expect("metadata");
    assert_eq!(*got, md);
    assert_eq!(s.hits(), 0);
}

#[tokio::test]
async fn discovery_retries_transient_5xx_on_well_known() {
    let s = Scripted::start().await;
    s.push(Reply::status(503));
    s.push(Reply::json(200, &as_doc(&s.origin())));
    let server = AuthorizationServer::new(&s.origin(), transport()).expect("as");
    guard(server.metadata()).await.expect("metadata");
    assert_eq!(s.paths(), [RFC8414, RFC8414]);
}

#[tokio::test]
async fn discovery_http_issuer_off_loopback_refused() {
    let err = AuthorizationServer::new("http://as.example.com", transport()).expect_err("http");
    assert!(matches!(err, Error::InsecureUrl { .. }), "{err:?}");
    let err =
        AuthorizationServer::new("http://10.0.0.1:8080/realm", transport()).expect_err("http");
    assert!(matches!(err, Error::InsecureUrl { .. }), "{err:?}");
    // Loopback and HTTPS are fine without any opt-out.
    AuthorizationServer::new("https://as.example.com", transport()).expect("https");
    AuthorizationServer::new("http://127.0.0.1:1", transport()).expect("loopback");
    AuthorizationServer::new("http://[::1]:1/x", transport()).expect("loopback v6");
    // Not issuer identifiers.
    for bad in [
        "https://as.example.com/?q=1",
        "https://as.example.com/#f",
        "as.example.com",
    ] {
        let err = AuthorizationServer::new(bad, transport()).expect_err(bad);
        assert!(matches!(err, Error::Config(_)), "{bad}: {err:?}");
    }
}

#[tokio::test]
async fn discovery_http_issuer_allowed_with_dangerous_opt_out() {
    let mut c = fast_config();
    dangerous::allow_insecure_http(&mut c);
    let insecure = HttpTransport::with_config(c).expect("transport");
    AuthorizationServer::new("http://as.example.com", insecure.clone()).expect("allowed");

    // End to end on a non-loopback address of this machine, when it has one.
    let Some(ip) = non_loopback_ipv4() else {
        println!("no non-loopback IPv4 address: skipping the end-to-end part");
        return;
    };
    let s = Scripted::start_on(ip.into()).await;
    s.route(RFC8414, Reply::json(200, &as_doc(&s.origin())));
    let err = AuthorizationServer::new(&s.origin(), transport()).expect_err("refused");
    assert!(matches!(err, Error::InsecureUrl { .. }), "{err:?}");
    let server = AuthorizationServer::new(&s.origin(), insecure).expect("allowed");
    let md = guard(server.metadata())
        .await
        .expect("metadata over plain http");
    assert_eq!(md.issuer, s.origin());
    assert_eq!(s.hits(), 1);
}

#[tokio::test]
async fn discovery_huge_metadata_body_is_body_too_large() {
    let s = Scripted::start().await;
    // Valid JSON, 2 MiB, over the default 1 MiB cap: once with Content-Length, once chunked.
    let mut doc = as_doc(&s.origin());
    doc["padding"] = json!("p".repeat(2 * 1024 * 1024));
    s.route(RFC8414, Reply::json(200, &doc));
    let server = AuthorizationServer::new(&s.origin(), HttpTransport::new().expect("transport"))
        .expect("as");
    let err = guard(server.metadata()).await.expect_err("too large");
    assert!(
        matches!(err, Error::BodyTooLarge { limit } if limit == 1024 * 1024),
        "{err:?}"
    );

    s.route(
        RFC8414,
        Reply::status(200)
            .header("content-type", "application/json")
            .stream(2 * 1024 * 1024, 32 * 1024, Duration::ZERO),
    );
    let err = guard(server.metadata())
        .await
        .expect_err("too large, chunked");
    assert!(matches!(err, Error::BodyTooLarge { .. }), "{err:?}");
    assert_eq!(s.hits_for(OPENID), 0);
}

#[tokio::test]
async fn discovery_malformed_metadata_is_invalid_response() {
    let s = Scripted::start().await;
    let server = AuthorizationServer::new(&s.origin(), transport()).expect("as");
    for body in [
        json!({"issuer": 5}).to_string(),
        json!({"issuer": s.origin(), "scopes_supported": "openid"}).to_string(),
        json!(["not", "an", "object"]).to_string(),
        "{\"issuer\":".to_owned(),
        String::new(),
    ] {
        s.route(
            RFC8414,
            Reply::status(200)
                .header("content-type", "application/json")
                .body(body.clone()),
        );
        let err = guard(server.metadata()).await.expect_err(&body);
        assert!(matches!(err, Error::InvalidResponse(_)), "{body}: {err:?}");
    }
}

// ------------------------------------------------------------------ resource metadata

fn prm_doc(resource: &str, issuer: &str) -> Value {
    json!({
        "resource": resource,
        "authorization_servers": [issuer],
        "scopes_supported": ["read", "write"],
        "bearer_methods_supported": ["header"],
        "dpop_signing_alg_values_supported": ["ES256"],
        "dpop_bound_access_tokens_required": true
    })
}

#[tokio::test]
async fn discovery_resource_metadata_from_well_known_url() {
    let s = Scripted::start().await;
    let resource = url(&s.url("/api"));
    assert_eq!(
        resource_metadata_url(&resource).as_str(),
        s.url(&format!("{PRM}/api"))
    );
    s.route(
        &format!("{PRM}/api"),
        Reply::json(200, &prm_doc(resource.as_str(), "https://as.example.com")),
    );
    let md = guard(fetch_resource_metadata(&transport(), &resource, None))
        .await
        .expect("metadata");
    assert_eq!(md.resource, resource.as_str());
    assert_eq!(md.authorization_servers(), ["https://as.example.com"]);
    assert_eq!(md.dpop_bound_access_tokens_required, Some(true));
    assert_eq!(s.paths(), [format!("{PRM}/api")]);
}

/// Request `path` on the resource, expect a 401 and return the `resource_metadata` URL of its
/// challenge, as an agent would.
async fn challenge_metadata_url(t: &HttpTransport, requested: &Url) -> String {
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
    resource_metadata_from_challenges(&challenges)
        .expect("resource_metadata")
        .to_owned()
}

#[tokio::test]
async fn discovery_resource_metadata_from_401_challenge() {
    let s = Scripted::start().await;
    let meta_url = s.url("/meta/prm.json");
    s.route(
        "/api/invoices/42",
        Reply::status(401).header(
            "www-authenticate",
            &format!(r#"Bearer realm="api", resource_metadata="{meta_url}", DPoP algs="ES256""#),
        ),
    );
    s.route(
        "/meta/prm.json",
        Reply::json(200, &prm_doc(&s.url("/api"), "https://as.example.com")),
    );
    let t = transport();
    let requested = url(&s.url("/api/invoices/42"));
    let announced = challenge_metadata_url(&t, &requested).await;
    assert_eq!(announced, meta_url);
    let checked = MetadataPolicy::SameOrigin
        .check(&announced, &requested)
        .expect("same origin");
    let md = guard(fetch_resource_metadata(&t, &requested, Some(&checked)))
        .await
        .expect("metadata");
    assert_eq!(md.resource, s.url("/api"), "prefix of the requested URL");
    assert_eq!(md.scopes_supported.as_deref().map(<[_]>::len), Some(2));
    assert_eq!(s.paths(), ["/api/invoices/42", "/meta/prm.json"]);
}

#[tokio::test]
async fn discovery_resource_metadata_resource_mismatch_rejected() {
    let s = Scripted::start().await;
    let requested = url(&s.url("/api"));
    for resource in [
        "https://other.example.com/api".to_owned(),
        s.url("/api2"),
        s.url("/other"),
        s.url("/api/narrower"),
        "not a url".to_owned(),
    ] {
        s.route(
            &format!("{PRM}/api"),
            Reply::json(200, &prm_doc(&resource, "https://as.example.com")),
        );
        let err = guard(fetch_resource_metadata(&transport(), &requested, None))
            .await
            .expect_err(&resource);
        assert!(matches!(err, Error::Discovery(_)), "{resource}: {err:?}");
    }
}

#[tokio::test]
async fn discovery_resource_metadata_url_serving_other_json_rejected() {
    // A challenge pointing at some JSON document that is not resource metadata (an SSRF probe
    // or a misconfiguration) must not be accepted.
    let s = Scripted::start().await;
    s.route(
        "/api",
        Reply::status(401).header(
            "www-authenticate",
            &format!(r#"Bearer resource_metadata="{}""#, s.url("/status.json")),
        ),
    );
    let t = transport();
    let requested = url(&s.url("/api"));
    let announced = challenge_metadata_url(&t, &requested).await;
    let checked = MetadataPolicy::SameOrigin
        .check(&announced, &requested)
        .expect("same origin");
    for doc in [
        json!({"name": "status page", "version": 1}),
        json!({"resource": 42}),
        json!([{"resource": requested.as_str()}]),
        as_doc(&s.origin()),
    ] {
        s.route("/status.json", Reply::json(200, &doc));
        let err = guard(fetch_resource_metadata(&t, &requested, Some(&checked)))
            .await
            .expect_err(&doc.to_string());
        assert!(
            matches!(err, Error::InvalidResponse(_) | Error::Discovery(_)),
            "{doc}: {err:?}"
        );
    }
    s.route(
        "/status.json",
        Reply::status(200)
            .header("content-type", "text/html")
            .body("<html></html>"),
    );
    let err = guard(fetch_resource_metadata(&t, &requested, Some(&checked)))
        .await
        .expect_err("html");
    assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
}

#[tokio::test]
async fn discovery_resource_metadata_missing_is_discovery_error() {
    let s = Scripted::start().await;
    let err = guard(fetch_resource_metadata(
        &transport(),
        &url(&s.url("/api")),
        None,
    ))
    .await
    .expect_err("404");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");

    s.route(&format!("{PRM}/api"), Reply::status(500));
    let err = guard(fetch_resource_metadata(
        &transport(),
        &url(&s.url("/api")),
        None,
    ))
    .await
    .expect_err("500");
    assert_eq!(err.status(), Some(500), "{err:?}");
}

#[tokio::test]
async fn discovery_resource_metadata_cross_origin_policy() {
    let resource_server = Scripted::start().await;
    let meta_server = Scripted::start().await; // another port: another origin
    let meta_url = meta_server.url("/prm");
    resource_server.route(
        "/api/x",
        Reply::status(401).header(
            "www-authenticate",
            &format!(r#"Bearer resource_metadata="{meta_url}""#),
        ),
    );
    meta_server.route(
        "/prm",
        Reply::json(
            200,
            &prm_doc(&resource_server.url("/api"), "https://as.example.com"),
        ),
    );
    let t = transport();
    let requested = url(&resource_server.url("/api/x"));
    let announced = challenge_metadata_url(&t, &requested).await;

    let err = MetadataPolicy::SameOrigin
        .check(&announced, &requested)
        .expect_err("cross origin");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");
    let err = MetadataPolicy::AllowOrigins(vec!["https://meta.example.com".into()])
        .check(&announced, &requested)
        .expect_err("not listed");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");
    assert_eq!(
        meta_server.hits(),
        0,
        "nothing fetched from a refused origin"
    );

    let allowed = MetadataPolicy::AllowOrigins(vec![format!("{}/", meta_server.origin())])
        .check(&announced, &requested)
        .expect("allowed origin");
    let md = guard(fetch_resource_metadata(&t, &requested, Some(&allowed)))
        .await
        .expect("metadata");
    assert_eq!(md.resource, resource_server.url("/api"));
    assert_eq!(meta_server.hits(), 1);
}

#[tokio::test]
async fn discovery_resource_metadata_huge_body_is_body_too_large() {
    let s = Scripted::start().await;
    s.route(
        &format!("{PRM}/api"),
        Reply::status(200)
            .header("content-type", "application/json")
            .stream(3 * 1024 * 1024, 64 * 1024, Duration::ZERO),
    );
    let err = guard(fetch_resource_metadata(
        &HttpTransport::new().expect("transport"),
        &url(&s.url("/api")),
        None,
    ))
    .await
    .expect_err("too large");
    assert!(matches!(err, Error::BodyTooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn discovery_resource_metadata_insecure_url_refused() {
    let requested = url("http://api.example.com/x");
    let err = guard(fetch_resource_metadata(&transport(), &requested, None))
        .await
        .expect_err("http");
    assert!(matches!(err, Error::InsecureUrl { .. }), "{err:?}");
}

// ------------------------------------------------------------------ property tests

const SERVER_KEYS: &[&str] = &[
    "issuer",
    "token_endpoint",
    "authorization_endpoint",
    "scopes_supported",
    "grant_types_supported",
    "mtls_endpoint_aliases",
    "require_pushed_authorization_requests",
    "dpop_signing_alg_values_supported",
    "tls_client_certificate_bound_access_tokens",
];
const RESOURCE_KEYS: &[&str] = &[
    "resource",
    "authorization_servers",
    "jwks_uri",
    "scopes_supported",
    "bearer_methods_supported",
    "dpop_bound_access_tokens_required",
    "tls_client_certificate_bound_access_tokens",
];

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(SERVER_KEYS).prop_map(str::to_owned),
        3 => prop::sample::select(RESOURCE_KEYS).prop_map(str::to_owned),
        1 => ".{0,12}",
    ]
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        ".{0,24}".prop_map(Value::String),
        Just(Value::String("https://as.example.com".into())),
        Just(Value::String("https://api.example/v1".into())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((arb_key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn is_typed_error(e: &Error) -> bool {
    matches!(e, Error::InvalidResponse(_) | Error::Discovery(_))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn discovery_props_server_metadata_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match ServerMetadata::from_json(&bytes, "https://as.example.com") {
            Ok(md) => prop_assert_eq!(md.issuer, "https://as.example.com"),
            Err(e) => prop_assert!(is_typed_error(&e), "{:?}", e),
        }
    }

    #[test]
    fn discovery_props_server_metadata_never_panics_on_json(value in arb_json()) {
        let body = serde_json::to_vec(&value).expect("serialise");
        match ServerMetadata::from_json(&body, "https://as.example.com") {
            Ok(md) => {
                prop_assert_eq!(&md.issuer, "https://as.example.com");
                // What was accepted serialises and parses back to the same document.
                let again = serde_json::to_vec(&md).expect("serialise metadata");
                let back = ServerMetadata::from_json(&again, "https://as.example.com");
                prop_assert_eq!(back.ok(), Some(md));
            }
            Err(e) => prop_assert!(is_typed_error(&e), "{:?}", e),
        }
    }

    #[test]
    fn discovery_props_server_metadata_shaped_documents(
        issuer in prop_oneof![Just("https://as.example.com".to_owned()), ".{0,20}"],
        rest in prop::collection::vec((arb_key(), arb_json()), 0..6),
    ) {
        let mut obj: serde_json::Map<String, Value> = rest.into_iter().collect();
        obj.insert("issuer".into(), Value::String(issuer.clone()));
        let body = serde_json::to_vec(&Value::Object(obj)).expect("serialise");
        match ServerMetadata::from_json(&body, "https://as.example.com") {
            Ok(md) => prop_assert_eq!(md.issuer, "https://as.example.com"),
            Err(Error::Discovery(_)) => prop_assert_ne!(issuer, "https://as.example.com"),
            Err(e) => prop_assert!(is_typed_error(&e), "{:?}", e),
        }
    }

    #[test]
    fn discovery_props_resource_metadata_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let requested = url("https://api.example/v1/items");
        if let Err(e) = ResourceMetadata::from_json(&bytes, &requested) {
            prop_assert!(is_typed_error(&e), "{:?}", e);
        }
    }

    #[test]
    fn discovery_props_resource_metadata_never_panics_on_json(
        value in arb_json(),
        resource in prop_oneof![
            Just(None),
            Just(Some("https://api.example/v1".to_owned())),
            ".{0,30}".prop_map(Some),
        ],
    ) {
        let requested = url("https://api.example/v1/items");
        let value = match (value, resource) {
            (Value::Object(mut m), Some(r)) => {
                m.insert("resource".into(), Value::String(r));
                Value::Object(m)
            }
            (v, _) => v,
        };
        let body = serde_json::to_vec(&value).expect("serialise");
        match ResourceMetadata::from_json(&body, &requested) {
            Ok(md) => {
                let resource = Url::parse(&md.resource).expect("accepted resource is a URL");
                prop_assert!(crate::support::prelude::resource_matches(&resource, &requested));
            }
            Err(e) => prop_assert!(is_typed_error(&e), "{:?}", e),
        }
    }
}
