//! Discovery against both servers (see `support::servers`): both well-known forms, the typed
//! metadata, and protected resource metadata found from the resource's 401 (RFC 9728).

use std::sync::Arc;

use url::Url;

use crate::per_server;
use crate::support::prelude::{
    challenges_from_headers, fetch_resource_metadata, resource_metadata_from_challenges,
    AuthorizationServer, Endpoint, Error, HttpTransport, MetadataPolicy, RetryPolicy,
    ServerMetadata,
};
use crate::support::server::guard;
use crate::support::servers::{Kind, Knobs, Server};

const RFC8414: &str = "/.well-known/oauth-authorization-server";
const OPENID: &str = "/.well-known/openid-configuration";
const DEVICE_CODE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// GET `url` with a plain reqwest client and return status and raw body.
async fn raw_get(s: &Server, url: &str) -> (u16, Vec<u8>) {
    let resp = guard(s.http_client().get(url).send())
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

per_server!(discovery_both_well_known_forms_parse);
/// Was `interop_discovery_both_well_known_forms_parse` (oidc-provider only).
async fn discovery_both_well_known_forms_parse(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::default()).await else {
        return;
    };
    let mut docs = Vec::new();
    for path in [RFC8414, OPENID] {
        let (status, body) = raw_get(&s, &s.url(path)).await;
        assert_eq!(status, 200, "{path}");
        let md =
            ServerMetadata::from_json(&body, s.issuer()).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(md.issuer, s.issuer(), "{path}");
        assert_eq!(
            md.token_endpoint.as_deref(),
            Some(&*s.url("/token")),
            "{path}"
        );
        assert_eq!(md.jwks_uri.as_deref(), Some(&*s.url("/jwks")), "{path}");
        docs.push(md);
    }
    assert_eq!(
        docs[0], docs[1],
        "both well-known forms describe the same server"
    );
}

per_server!(discovery_metadata_end_to_end_typed);
/// Was `interop_discovery_metadata_end_to_end_typed` (oidc-provider only).
async fn discovery_metadata_end_to_end_typed(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::default()).await else {
        return;
    };
    let server =
        AuthorizationServer::new(s.issuer(), HttpTransport::new().expect("transport")).expect("as");
    let md = guard(server.metadata()).await.expect("metadata");
    assert_eq!(md.issuer, s.issuer());

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
    assert_eq!(md.endpoint(Endpoint::Token, false), Some(&*s.url("/token")));
    assert_eq!(
        md.endpoint(Endpoint::DeviceAuthorization, false),
        Some(&*s.url("/device/auth"))
    );
    assert!(md.endpoint(Endpoint::Introspection, false).is_some());
    let auth_methods = as_strings(md.token_endpoint_auth_methods_supported.as_ref());
    assert!(
        auth_methods.contains(&"private_key_jwt"),
        "{auth_methods:?}"
    );
    assert!(
        auth_methods.contains(&"client_secret_basic"),
        "{auth_methods:?}"
    );
    if s.oidc_provider().is_some() {
        assert_eq!(
            md.authorization_response_iss_parameter_supported,
            Some(true)
        );
        assert_eq!(
            md.endpoint(Endpoint::Revocation, true),
            Some(&*s.url("/token/revocation")),
            "no mTLS aliases without TLS: the plain endpoint is used"
        );
        assert!(md
            .endpoint(Endpoint::PushedAuthorizationRequest, false)
            .is_some());
        // Members the struct does not name are kept.
        assert!(
            md.extra.contains_key("claims_parameter_supported")
                || md.extra.contains_key("claim_types_supported"),
            "{:?}",
            md.extra.keys().collect::<Vec<_>>()
        );
    }

    // Cached: a second call returns the same document.
    let again = guard(server.metadata()).await.expect("cached");
    assert!(Arc::ptr_eq(&md, &again));
}

per_server!(discovery_resource_metadata_from_challenge);
/// Was `interop_discovery_resource_metadata_from_challenge` (oidc-provider only).
async fn discovery_resource_metadata_from_challenge(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::default()).await else {
        return;
    };
    let api = s.resource();
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
        s.url("/.well-known/oauth-protected-resource/api")
    );
    let metadata_url = MetadataPolicy::SameOrigin
        .check(announced, &requested)
        .expect("same origin");

    let md = guard(fetch_resource_metadata(&t, &requested, Some(&metadata_url)))
        .await
        .expect("resource metadata");
    assert_eq!(md.resource, api);
    assert_eq!(md.authorization_servers(), [s.issuer().to_owned()]);
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
    assert_eq!(as_md.issuer, s.issuer());

    // Metadata fetched for another resource on the same server is refused.
    let other = Url::parse(&s.url("/not-the-api")).expect("url");
    let err = guard(fetch_resource_metadata(
        server.transport(),
        &other,
        Some(&metadata_url),
    ))
    .await
    .expect_err("resource mismatch");
    assert!(matches!(err, Error::Discovery(_)), "{err:?}");
}
