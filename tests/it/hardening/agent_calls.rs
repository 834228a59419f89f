//! See main.rs. Agent calls end to end: one deadline per call (10), DPoP and mTLS together
//! (13), mTLS endpoints the metadata does not advertise (14), which 401s renew a token (16),
//! resource discovery failures (17), first DPoP nonce per origin and shared nonce caches (19).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::prelude::{
    Agent, AgentBuilder, ClientAuth, DpopMode, Error, NonceCache, OAuthErrorCode, TransportConfig,
};
use crate::support::prelude::{TestServer, TestServerConfig};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine as _;
use serde_json::json;

use crate::support::server::{guard, Reply, Scripted};

fn builder(server: &TestServer) -> AgentBuilder {
    Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
}

fn transport(request_timeout: Duration, deadline: Duration) -> TransportConfig {
    let mut cfg = TransportConfig::default();
    cfg.request_timeout = request_timeout;
    cfg.deadline = deadline;
    cfg
}

// ------------------------------------------------------------------ 10: one deadline per call

#[tokio::test]
async fn hardening_10_send_is_bounded_by_one_deadline_across_exchanges() {
    // Every answer takes 1 s; each exchange is allowed 2 s and the call 2.5 s. The call makes
    // four exchanges: token, resource (401 invalid_token), a new token, resource again.
    let server =
        TestServer::start_with(TestServerConfig::default().with_latency(Duration::from_secs(1)))
            .await;
    let rs = Scripted::start().await;
    rs.route(
        "/api",
        Reply::status(401)
            .header("www-authenticate", r#"Bearer error="invalid_token""#)
            .delay(Duration::from_secs(1)),
    );
    let url = format!("http://{}/api", rs.addr());
    let deadline = Duration::from_millis(2500);
    let agent = builder(&server)
        .resource(&url)
        .dpop_mode(DpopMode::Off)
        .transport_config(transport(Duration::from_secs(2), deadline))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let result = guard(agent.get(&url).send()).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(Error::Timeout(d)) if d == deadline),
        "{result:?} after {took:?}"
    );
    // Generous bound: the deadline plus scheduling slack, well under the 4 s of exchanges.
    assert!(took < deadline + Duration::from_millis(400), "{took:?}");
}

#[tokio::test]
async fn hardening_10_access_token_is_bounded_and_the_fetch_still_completes() {
    // The token endpoint demands a nonce: two token exchanges of 1 s each, 1.5 s allowed.
    let server = TestServer::start_with(
        TestServerConfig::default()
            .with_require_dpop_nonce(true)
            .with_latency(Duration::from_secs(1)),
    )
    .await;
    let deadline = Duration::from_millis(1500);
    let agent = builder(&server)
        .resource(server.resource_url())
        .transport_config(transport(Duration::from_secs(2), deadline))
        .build()
        .await
        .unwrap();
    let resource = server.resource_url();
    let result = guard(agent.access_token(Some(&resource))).await;
    assert!(
        matches!(result, Err(Error::Timeout(d)) if d == deadline),
        "{result:?}"
    );
    // The caller gave up, the fetch did not: the next call joins it and gets its token,
    // without a third token request.
    let token = guard(agent.access_token(Some(&resource))).await.unwrap();
    assert!(!token.token().access_token.secret().is_empty());
    assert_eq!(server.stats().token_requests, 2);
}

// ------------------------------------------------------------------ 13 and 14: mTLS

#[cfg(feature = "mtls")]
mod mtls {
    use super::*;
    use crate::support::mtls_pki::{write, MtlsProvider, Pki};
    use crate::support::prelude::ClientIdentity;

    fn pki_client() -> serde_json::Value {
        json!([{
            "client_id": "mtls-pki",
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=agent,O=Example",
            "tls_client_certificate_bound_access_tokens": true,
            "grant_types": ["client_credentials"],
            "redirect_uris": [],
            "response_types": []
        }])
    }

    #[tokio::test]
    async fn hardening_13_default_dpop_mode_with_a_certificate_binds_by_certificate_at_oidc_provider(
    ) {
        let pki = Pki::new("Test CA");
        let Some(it) = MtlsProvider::start(&pki, pki_client()).await else {
            return;
        };
        let identity = pki.client_identity("agent");
        // Default DPoP mode; the server lists ES256 for DPoP.
        let agent = Agent::builder()
            .issuer(&it.provider.issuer)
            .client_id("mtls-pki")
            .client_auth(ClientAuth::tls_client_auth())
            .client_identity(identity.clone())
            .trust_roots(pki.roots())
            .resource(&it.api)
            .build()
            .await
            .unwrap();
        assert!(agent.dpop_key().is_none());
        let resp = guard(agent.get(format!("{}/whoami", it.api)).send())
            .await
            .unwrap_or_else(|e| panic!("{e:?}\n{}", it.provider.stderr_log()));
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert_eq!(resp.status(), 200, "{body}");
        assert_eq!(body["cnf"]["x5t#S256"], identity.thumbprint());
        assert!(body["cnf"].get("jkt").is_none(), "{body}");

        // DPoP asked for explicitly is still sent with the certificate.
        let explicit = Agent::builder()
            .issuer(&it.provider.issuer)
            .client_id("mtls-pki")
            .client_auth(ClientAuth::tls_client_auth())
            .client_identity(identity)
            .trust_roots(pki.roots())
            .dpop(crate::support::prelude::DpopKey::generate())
            .build()
            .await
            .unwrap();
        assert!(explicit.dpop_key().is_some());
    }

    /// The example binary cargo built next to this test binary (`target/<profile>/examples`).
    fn example_binary(name: &str) -> Option<std::path::PathBuf> {
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?.parent()?.join("examples");
        let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        path.is_file().then_some(path)
    }

    #[tokio::test]
    async fn hardening_13_mtls_example_runs_against_oidc_provider() {
        let Some(bin) = example_binary("mtls_agent") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "examples/mtls_agent was not built (cargo test --all-features builds it)"
            );
            eprintln!("skipped: examples/mtls_agent is not built");
            return;
        };
        let pki = Pki::new("Test CA");
        let Some(it) = MtlsProvider::start(&pki, pki_client()).await else {
            return;
        };
        let client = pki.client("agent");
        let cert = write(&it.dir, "client.pem", &client.cert_pem);
        let key = write(&it.dir, "client.key", &client.key_pem);
        let ca = write(&it.dir, "ca-client.pem", &pki.ca_pem());
        let url = format!("{}/whoami", it.api);
        let out = tokio::process::Command::new(bin)
            .args(["--issuer", &it.provider.issuer, "--client-id", "mtls-pki"])
            .args(["--cert", &cert, "--key", &key, "--ca", &ca, &url])
            .kill_on_drop(true)
            .output();
        let out = guard(out).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{}\nstdout:\n{stdout}\nstderr:\n{stderr}\nprovider:\n{}",
            out.status,
            it.provider.stderr_log()
        );
        assert!(stdout.contains("-> 200 OK"), "{stdout}");
    }

    fn mtls_agent(server: &TestServer) -> AgentBuilder {
        Agent::builder()
            .issuer(server.issuer())
            .client_id("agent")
            .client_auth(ClientAuth::self_signed_tls_client_auth())
            .client_identity(ClientIdentity::self_signed("agent").unwrap())
            .dpop_mode(DpopMode::Off)
    }

    #[tokio::test]
    async fn hardening_14_mtls_auth_without_alias_and_plain_http_endpoint_is_a_typed_error() {
        // The embedded server is plain http and advertises no mtls_endpoint_aliases.
        let server = TestServer::start().await;
        let agent = mtls_agent(&server).build().await.unwrap();
        let err = guard(agent.access_token(None)).await.unwrap_err();
        assert!(matches!(err, Error::Discovery(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("mtls_endpoint_aliases"), "{text}");
        assert!(text.contains("not https"), "{text}");
        // Nothing was sent to an endpoint that cannot see the certificate.
        assert_eq!(server.stats().token_requests, 0);
    }

    #[tokio::test]
    async fn hardening_14_patch_metadata_gives_the_mtls_token_endpoint() {
        let server = TestServer::start().await;
        let mtls_as = Scripted::start().await;
        mtls_as.route(
            "/mtls/token",
            Reply::json(
                200,
                &json!({"access_token": "at-mtls", "token_type": "Bearer", "expires_in": 300}),
            ),
        );
        let alias = format!("http://{}/mtls/token", mtls_as.addr());
        let agent = mtls_agent(&server)
            .patch_metadata(move |md| {
                md.mtls_endpoint_aliases
                    .get_or_insert_with(Default::default)
                    .token_endpoint = Some(alias.clone());
            })
            .build()
            .await
            .unwrap();
        let token = guard(agent.access_token(None)).await.unwrap();
        assert_eq!(token.token().access_token.secret(), "at-mtls");
        assert_eq!(mtls_as.hits_for("/mtls/token"), 1);
        assert_eq!(server.stats().token_requests, 0);
    }
}

// ------------------------------------------------------------------ 16: which 401s renew

async fn scripted_401(challenge: &str) -> (Scripted, String) {
    let rs = Scripted::start().await;
    rs.route(
        "/api",
        Reply::status(401).header("www-authenticate", challenge),
    );
    let url = format!("http://{}/api", rs.addr());
    (rs, url)
}

#[tokio::test]
async fn hardening_16_invalid_request_401_is_a_typed_error_without_renewal() {
    let server = TestServer::start().await;
    let (rs, url) = scripted_401(
        r#"Bearer error="invalid_request", error_description="No bearer token found""#,
    )
    .await;
    let agent = builder(&server)
        .resource(&url)
        .dpop_mode(DpopMode::Off)
        .build()
        .await
        .unwrap();
    let err = guard(agent.get(&url).send()).await.unwrap_err();
    let oauth = err.oauth_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(oauth.error, OAuthErrorCode::InvalidRequest);
    assert_eq!(oauth.status, 401);
    assert_eq!(rs.hits_for("/api"), 1);
    assert_eq!(server.stats().token_requests, 1);
}

#[tokio::test]
async fn hardening_16_invalid_token_and_bare_401_still_renew_once() {
    for challenge in [r#"Bearer error="invalid_token""#, r#"Bearer realm="api""#] {
        let server = TestServer::start().await;
        let (rs, url) = scripted_401(challenge).await;
        let agent = builder(&server)
            .resource(&url)
            .dpop_mode(DpopMode::Off)
            .build()
            .await
            .unwrap();
        let err = guard(agent.get(&url).send()).await.unwrap_err();
        assert_eq!(
            err.oauth_error().map(|o| o.error.clone()),
            Some(OAuthErrorCode::InvalidToken),
            "{challenge}: {err:?}"
        );
        assert_eq!(rs.hits_for("/api"), 2, "{challenge}");
        assert_eq!(server.stats().token_requests, 2, "{challenge}");
    }
}

// ------------------------------------------------------------------ 17: discovery failures

async fn discovery_with_metadata_answer(reply: Reply) -> (Error, String) {
    let server = TestServer::start().await;
    let rs = Scripted::start().await;
    let md_url = format!(
        "http://{}/.well-known/oauth-protected-resource/api",
        rs.addr()
    );
    rs.route(
        "/api/x",
        Reply::status(401).header(
            "www-authenticate",
            &format!(r#"Bearer resource_metadata="{md_url}", scope="read""#),
        ),
    );
    rs.route("/.well-known/oauth-protected-resource/api", reply);
    let agent = builder(&server).build().await.unwrap();
    let err = guard(agent.get(format!("http://{}/api/x", rs.addr())).send())
        .await
        .unwrap_err();
    // (a 500 is retried as usual)
    assert!(rs.hits_for("/.well-known/oauth-protected-resource/api") >= 1);
    (err, md_url)
}

#[tokio::test]
async fn hardening_17_forbidden_metadata_is_a_discovery_error_keeping_the_challenge() {
    let html = "<html><body><h1>403 Forbidden</h1></body></html>";
    let (err, md_url) = discovery_with_metadata_answer(
        Reply::status(403)
            .header("content-type", "text/html")
            .body(html),
    )
    .await;
    let Error::ResourceDiscovery { reason, challenges } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(reason.status(), Some(403), "{reason:?}");
    assert!(err.to_string().contains("403"), "{err}");
    assert!(!err.to_string().contains("<html"), "{err}");
    assert_eq!(challenges.len(), 1);
    assert_eq!(challenges[0].resource_metadata(), Some(md_url.as_str()));
    assert_eq!(challenges[0].scope(), Some("read"));
}

#[tokio::test]
async fn hardening_17_every_metadata_failure_keeps_the_challenge() {
    let replies = [
        Reply::status(404),
        Reply::status(500),
        Reply::json(200, &json!({"resource": "https://elsewhere.example/api"})),
        Reply::status(200)
            .header("content-type", "text/html")
            .body("<p>hi</p>"),
    ];
    for reply in replies {
        let (err, md_url) = discovery_with_metadata_answer(reply).await;
        let Error::ResourceDiscovery { challenges, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(challenges[0].resource_metadata(), Some(md_url.as_str()));
    }
}

// ------------------------------------------------------------------ 19: first nonce, shared cache

fn proof_nonce(headers: &HeaderMap) -> Option<String> {
    let proof = headers.get("dpop")?.to_str().ok()?;
    let payload = proof.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["nonce"].as_str().map(str::to_owned)
}

/// A resource that accepts only proofs with nonce `rs-nonce-1`; counts requests.
async fn nonce_resource() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().route(
        "/data",
        axum::routing::any(move |headers: HeaderMap| {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                if proof_nonce(&headers).as_deref() == Some("rs-nonce-1") {
                    return (StatusCode::OK, "ok").into_response();
                }
                (
                    StatusCode::UNAUTHORIZED,
                    [
                        ("dpop-nonce", "rs-nonce-1"),
                        ("www-authenticate", r#"DPoP error="use_dpop_nonce""#),
                    ],
                    "",
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/data"), hits)
}

#[tokio::test]
async fn hardening_19_concurrent_first_calls_wait_for_the_first_nonce() {
    let server = TestServer::start().await;
    let (url, hits) = nonce_resource().await;
    let agent = builder(&server).resource(&url).build().await.unwrap();
    assert!(agent.dpop_key().is_some());
    guard(agent.access_token(Some(&url))).await.unwrap();
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let agent = agent.clone();
            let url = url.clone();
            tokio::spawn(async move { agent.get(&url).send().await })
        })
        .collect();
    for call in calls {
        let resp = guard(call).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
    }
    let n = hits.load(Ordering::SeqCst);
    // One refused first call, its retry, and 49 calls with the nonce.
    assert!(n <= 52, "{n} requests for 50 calls");
}

/// The embedded server's token endpoint and resource share an origin; the token endpoint needs
/// no nonce, its resource does. The token endpoint's answer says nothing about the resource:
/// concurrent first calls to the resource still wait for the first one's nonce.
#[tokio::test]
async fn hardening_19_first_calls_wait_for_the_resource_nonce_on_the_token_endpoints_origin() {
    let server =
        TestServer::start_with(TestServerConfig::default().with_resource_require_dpop_nonce(true))
            .await;
    let agent = builder(&server)
        .resource(server.resource_url())
        .build()
        .await
        .unwrap();
    assert!(agent.dpop_key().is_some());
    // The token request goes out first and is answered without a nonce.
    guard(agent.access_token(Some(&server.resource_url())))
        .await
        .unwrap();
    let before = server.stats().resource_requests;
    let url = format!("{}/x", server.resource_url());
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let agent = agent.clone();
            let url = url.clone();
            tokio::spawn(async move { agent.get(&url).send().await })
        })
        .collect();
    for call in calls {
        let resp = guard(call).await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
    }
    let n = server.stats().resource_requests - before;
    // One refused first call, its retry, and 49 calls with the nonce.
    assert!(n <= 52, "{n} requests for 50 calls");
}

#[tokio::test]
async fn hardening_19_agents_can_share_a_nonce_cache() {
    let server = TestServer::start().await;
    let (url, hits) = nonce_resource().await;
    let shared = Arc::new(NonceCache::new());
    let first = builder(&server)
        .resource(&url)
        .nonce_cache(shared.clone())
        .build()
        .await
        .unwrap();
    let second = builder(&server)
        .resource(&url)
        .nonce_cache(shared.clone())
        .build()
        .await
        .unwrap();
    assert!(Arc::ptr_eq(first.nonces(), &shared));
    assert!(Arc::ptr_eq(second.nonces(), &shared));
    let resp = guard(first.get(&url).send()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    // The second agent starts with the nonce the first one learnt.
    let resp = guard(second.get(&url).send()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

// ------------------------------------------------------------------ the middleware's loop

#[cfg(feature = "middleware")]
mod middleware {
    use super::*;
    use crate::support::prelude::AgentMiddleware;

    fn client(agent: &Agent) -> reqwest_middleware::ClientWithMiddleware {
        reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AgentMiddleware::new(agent.clone()))
            .build()
    }

    #[tokio::test]
    async fn hardening_16_middleware_does_not_renew_on_invalid_request() {
        let server = TestServer::start().await;
        let (rs, url) = scripted_401(r#"Bearer error="invalid_request""#).await;
        let agent = builder(&server)
            .resource(&url)
            .dpop_mode(DpopMode::Off)
            .build()
            .await
            .unwrap();
        let resp = guard(client(&agent).get(&url).send()).await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(rs.hits_for("/api"), 1);
        assert_eq!(server.stats().token_requests, 1);
    }

    #[tokio::test]
    async fn hardening_19_middleware_concurrent_first_calls_wait_for_the_first_nonce() {
        let server = TestServer::start().await;
        let (url, hits) = nonce_resource().await;
        let agent = builder(&server).resource(&url).build().await.unwrap();
        guard(agent.access_token(Some(&url))).await.unwrap();
        let client = client(&agent);
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let client = client.clone();
                let url = url.clone();
                tokio::spawn(async move { client.get(&url).send().await })
            })
            .collect();
        for call in calls {
            let resp = guard(call).await.unwrap().unwrap();
            assert_eq!(resp.status(), 200);
        }
        let n = hits.load(Ordering::SeqCst);
        assert!(n <= 52, "{n} requests for 50 calls");
    }
}
