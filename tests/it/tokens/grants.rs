//! Every grant and client authentication method against the embedded test server, and how
//! the client reacts to injected faults.

use std::time::{Duration, Instant};

use crate::support::prelude::{
    AssertionKey, AuthorizationServer, ClientAuth, Error, OAuthClient, OAuthErrorCode,
    ServerMetadata, TokenParams,
};
use crate::support::prelude::{TestClient, TestClientAuth, TestServer, TestServerConfig};
use url::Url;

use super::common::{agent, audiences, claims, client_at, es256_key, fast_transport};

const REDIRECT: &str = "http://127.0.0.1/cb";

#[tokio::test]
async fn grant_client_credentials_basic_secret_with_reserved_characters() {
    // `:` would split user and password, `+` would decode as a space, `%` would start an escape:
    // RFC 6749 §2.3.1 form-urlencodes both parts before base64.
    let secret = "s3:cr+t/%2B= ü";
    let server = TestServer::start_with(TestServerConfig::default().with_client(TestClient::new(
        "agent:1+",
        TestClientAuth::SecretBasic(secret.to_owned()),
    )))
    .await;
    let client = client_at(
        server.issuer(),
        "agent:1+",
        ClientAuth::client_secret_basic(secret),
    );
    let t = client
        .client_credentials(&TokenParams::new().scope("read"))
        .await
        .unwrap();
    let c = claims(t.access_token.secret());
    assert_eq!(c["client_id"], "agent:1+");
    assert_eq!(c["sub"], "agent:1+");
    assert_eq!(server.stats().grants.client_credentials, 1);
}

#[tokio::test]
async fn grant_client_credentials_post() {
    let server = TestServer::start().await;
    let client = client_at(
        server.issuer(),
        "agent-post",
        ClientAuth::client_secret_post("agent-post-secret"),
    );
    let t = client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap();
    assert_eq!(claims(t.access_token.secret())["client_id"], "agent-post");
    // The same client with the basic method is refused: the method really was `post`.
    let wrong = client_at(
        server.issuer(),
        "agent-post",
        ClientAuth::client_secret_basic("agent-post-secret"),
    );
    let e = wrong
        .client_credentials(&TokenParams::new())
        .await
        .unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidClient)
    );
}

#[tokio::test]
async fn grant_client_credentials_private_key_jwt() {
    let (pem, jwk) = es256_key();
    let server = TestServer::start_with(TestServerConfig::default().with_client(TestClient::new(
        "jwt-agent",
        TestClientAuth::PrivateKeyJwt(jwk),
    )))
    .await;
    let key = AssertionKey::from_pem("ES256", &pem).unwrap();
    let client = client_at(
        server.issuer(),
        "jwt-agent",
        ClientAuth::private_key_jwt(key),
    );
    // Twice: the server refuses a replayed assertion `jti`, so each request minted a new one.
    for _ in 0..2 {
        let t = client
            .client_credentials(&TokenParams::new().scope("read"))
            .await
            .unwrap();
        assert_eq!(claims(t.access_token.secret())["client_id"], "jwt-agent");
    }
    assert_eq!(server.stats().grants.client_credentials, 2);

    // Another key is refused.
    let (other_pem, _) = es256_key();
    let impostor = client_at(
        server.issuer(),
        "jwt-agent",
        ClientAuth::private_key_jwt(AssertionKey::from_pem("ES256", &other_pem).unwrap()),
    );
    let e = impostor
        .client_credentials(&TokenParams::new())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401), "{e}");
}

#[tokio::test]
async fn grant_client_secret_selects_the_method_from_metadata() {
    let server = TestServer::start().await;
    // The test server advertises client_secret_basic: `client_secret` picks it.
    let basic = client_at(
        server.issuer(),
        "agent",
        ClientAuth::client_secret("agent-secret"),
    );
    basic.client_credentials(&TokenParams::new()).await.unwrap();
    // ...which the post-only client refuses: proof that basic was chosen.
    let post_client = client_at(
        server.issuer(),
        "agent-post",
        ClientAuth::client_secret("agent-post-secret"),
    );
    let e = post_client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(401));

    // The same server described as supporting only client_secret_post: post is chosen.
    let body = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        server.issuer()
    ))
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    let mut doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    doc["token_endpoint_auth_methods_supported"] = serde_json::json!(["client_secret_post"]);
    let md = ServerMetadata::from_json(doc.to_string().as_bytes(), server.issuer()).unwrap();
    let as_post = AuthorizationServer::from_metadata(md, fast_transport()).unwrap();
    let client = OAuthClient::builder(as_post, "agent-post")
        .auth(ClientAuth::client_secret("agent-post-secret"))
        .build();
    let t = client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap();
    assert_eq!(claims(t.access_token.secret())["client_id"], "agent-post");
}

/// Follow the authorization URL once, without following the redirect: the Location is the
/// callback.
async fn authorize(url: &Url) -> Url {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(url.clone()).send().await.unwrap();
    assert!(resp.status().is_redirection(), "{}", resp.status());
    let location = resp.headers()["location"].to_str().unwrap();
    Url::parse(location).unwrap()
}

#[tokio::test]
async fn grant_authorization_code_with_pkce_end_to_end() {
    let server = TestServer::start().await;
    let client = client_at(server.issuer(), "public-agent", ClientAuth::none());
    let pending = client
        .authorization_url(
            REDIRECT,
            &TokenParams::new()
                .scope("read offline_access")
                .resource(server.resource_url()),
        )
        .await
        .unwrap();
    let q: std::collections::HashMap<_, _> = pending.url.query_pairs().into_owned().collect();
    assert_eq!(q["code_challenge_method"], "S256");
    let callback = authorize(&pending.url).await;
    assert!(callback.as_str().starts_with(REDIRECT));
    let t = client.exchange_code(&pending, &callback).await.unwrap();
    let c = claims(t.access_token.secret());
    assert_eq!(c["sub"], "agent-user");
    assert_eq!(c["client_id"], "public-agent");
    assert_eq!(audiences(&c), vec![server.resource_url()]);
    assert!(t.refresh_token.is_some());
    assert_eq!(server.stats().grants.authorization_code, 1);
    // The code is single-use: a second exchange fails (and revokes the first tokens).
    let e = client.exchange_code(&pending, &callback).await.unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidGrant)
    );
}

#[tokio::test]
async fn grant_authorization_code_state_mismatch_is_rejected_before_spending_the_code() {
    let server = TestServer::start().await;
    let client = agent(&server);
    let pending = client
        .authorization_url(REDIRECT, &TokenParams::new().scope("read"))
        .await
        .unwrap();
    let callback = authorize(&pending.url).await;
    let mut forged = callback.clone();
    let pairs: Vec<(String, String)> = callback
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                "attacker-state".to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let before = server.stats().token_requests;
    let e = client.exchange_code(&pending, &forged).await.unwrap_err();
    assert!(matches!(e, Error::InvalidResponse(_)), "{e:?}");
    assert!(e.to_string().contains("state"), "{e}");
    assert_eq!(
        server.stats().token_requests,
        before,
        "nothing sent on a mismatch"
    );
    // The genuine callback still works: the code was not spent.
    client.exchange_code(&pending, &callback).await.unwrap();
}

fn device_server() -> TestServerConfig {
    TestServerConfig::default().with_device_interval(Duration::from_secs(1))
}

#[tokio::test]
async fn grant_device_flow_approved_by_api() {
    let server = std::sync::Arc::new(TestServer::start_with(device_server()).await);
    let client = agent(&server);
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let approver = {
        let server = server.clone();
        tokio::spawn(async move {
            let code = rx.await.unwrap();
            // Let the client see `authorization_pending` first.
            let s = server.clone();
            assert!(
                super::common::eventually(Duration::from_secs(10), move || {
                    s.stats().token_requests >= 1
                })
                .await
            );
            assert!(server.approve_device(&code));
        })
    };
    let t = client
        .device_flow(&TokenParams::new().scope("read"), |auth| {
            assert_eq!(auth.interval, Duration::from_secs(1));
            tx.send(auth.user_code.clone()).unwrap();
        })
        .await
        .unwrap();
    approver.await.unwrap();
    let c = claims(t.access_token.secret());
    assert_eq!(c["sub"], "agent-user");
    assert_eq!(c["scope"], "read");
    assert!(t.refresh_token.is_some());
    let stats = server.stats();
    assert_eq!(stats.grants.device_code, 1);
    assert!(
        stats.token_requests >= 2,
        "pending, then approved: {stats:?}"
    );
}

#[tokio::test]
async fn grant_device_flow_access_denied() {
    let server = TestServer::start_with(device_server()).await;
    let client = agent(&server);
    let auth = client
        .device_authorization(&TokenParams::new().scope("read"))
        .await
        .unwrap();
    assert!(server.deny_device(&auth.user_code));
    let e = client.poll_device_token(&auth).await.unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::AccessDenied)
    );
    assert_eq!(server.stats().token_requests, 1, "denial ends the polling");
}

#[tokio::test]
async fn grant_device_flow_slow_down_adds_five_seconds() {
    // The server wants at least 1 s between polls. A client that polls every 300 ms gets
    // `pending`, then `slow_down`; it must then wait interval + 5 s, so its third poll (after
    // approval) succeeds. Without the back-off it would poll again after 300 ms and get
    // `slow_down` again, making more requests.
    let server = std::sync::Arc::new(TestServer::start_with(device_server()).await);
    let client = agent(&server);
    let mut auth = client
        .device_authorization(&TokenParams::new().scope("read"))
        .await
        .unwrap();
    auth.interval = Duration::from_millis(300);
    let approver = {
        let server = server.clone();
        let code = auth.user_code.clone();
        tokio::spawn(async move {
            let s = server.clone();
            assert!(
                super::common::eventually(Duration::from_secs(10), move || {
                    s.stats().token_requests >= 2
                })
                .await
            );
            assert!(server.approve_device(&code));
        })
    };
    let started = Instant::now();
    client.poll_device_token(&auth).await.unwrap();
    approver.await.unwrap();
    assert_eq!(
        server.stats().token_requests,
        3,
        "pending, slow_down, then success after the longer wait"
    );
    // The wait after slow_down was at least 5.3 s (a lower bound only).
    assert!(started.elapsed() >= Duration::from_millis(5_900));
}

#[tokio::test]
async fn grant_503_with_retry_after_is_retried() {
    let server = TestServer::start().await;
    let client = agent(&server);
    server.fail_next(1, 503, Some(1));
    let started = Instant::now();
    client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap();
    assert_eq!(server.stats().token_requests, 2);
    assert_eq!(server.stats().grants.client_credentials, 1);
    // Retry-After: 1 was honoured (the configured backoff is at most 50 ms).
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn grant_503_gives_up_after_max_attempts() {
    let server = TestServer::start().await;
    let client = agent(&server);
    let max = client.server().transport().config().max_attempts as u64;
    assert_eq!(max, 3);
    server.fail_next(5, 503, None);
    let e = client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503), "{e:?}");
    assert_eq!(
        e.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::TemporarilyUnavailable)
    );
    assert!(e.is_retryable());
    assert_eq!(server.stats().token_requests, max);
    // Two faults are left; the next call eats them and succeeds on its last attempt.
    client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap();
    assert_eq!(server.stats().token_requests, max + 3);
}

#[tokio::test]
async fn grant_429_is_retried_then_reported() {
    let server = TestServer::start().await;
    let client = agent(&server);
    server.fail_next(1, 429, Some(0));
    client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap();
    assert_eq!(server.stats().token_requests, 2);
    server.fail_next(3, 429, None);
    let e = client
        .client_credentials(&TokenParams::new())
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(429), "{e:?}");
    assert_eq!(server.stats().token_requests, 5);
}

#[tokio::test]
async fn grant_refresh_is_not_retried_on_5xx() {
    // A refresh that reached the server may have rotated the token: never repeated.
    let server = TestServer::start().await;
    let client = agent(&server);
    let rt = server.issue_refresh_token("agent", "read");
    server.fail_next(1, 503, None);
    let e = client
        .refresh(
            &crate::support::prelude::RefreshToken::new(rt),
            &TokenParams::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert_eq!(server.stats().token_requests, 1);
}

#[tokio::test]
async fn grant_invalid_client_is_typed_and_does_not_leak_the_secret() {
    let server = TestServer::start().await;
    let secret = "wrong-secret-9f8e7d6c5b4a";
    for auth in [
        ClientAuth::client_secret_basic(secret),
        ClientAuth::client_secret(secret),
    ] {
        let client = client_at(server.issuer(), "agent", auth);
        let before = server.stats().token_requests;
        let e = client
            .client_credentials(&TokenParams::new())
            .await
            .unwrap_err();
        let Error::OAuth(o) = &e else {
            panic!("expected Error::OAuth, got {e:?}");
        };
        assert_eq!(o.error, OAuthErrorCode::InvalidClient);
        assert_eq!(e.status(), Some(401));
        assert!(!e.is_retryable());
        for text in [e.to_string(), format!("{e:?}"), format!("{client:?}")] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(server.stats().token_requests, before + 1, "not retried");
    }
}
