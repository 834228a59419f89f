//! Server nonces at the token endpoint (RFC 9449 §8): one retry for a new nonce, never a loop,
//! the nonce cached for the next request, fresh assertion and proof per attempt.

use std::sync::{Arc, Mutex};

use crate::support::prelude::{
    AssertionKey, ClientAuth, DpopKey, Error, NonceCache, OAuthErrorCode, TokenParams, TokenType,
};
use crate::support::prelude::{TestClient, TestClientAuth, TestServer, TestServerConfig};
use serde_json::Value;
use url::Url;

use super::scripted::{Recorded, Reply, Scripted};
use super::{client, cnf_jkt, jwt_payload};

fn expect_use_dpop_nonce(err: &Error) {
    match err {
        Error::OAuth(e) => assert_eq!(e.error, OAuthErrorCode::UseDpopNonce, "{err:?}"),
        other => panic!("expected Error::OAuth(use_dpop_nonce), got {other:?}"),
    }
}

fn nonce_server() -> TestServerConfig {
    TestServerConfig::default().with_require_dpop_nonce(true)
}

#[tokio::test]
async fn dpop_nonce_as_challenge_one_retry_then_cached() {
    let server = TestServer::start_with(nonce_server()).await;
    let key = DpopKey::generate();
    let c = client(
        server.issuer(),
        "agent",
        ClientAuth::client_secret_basic("agent-secret"),
        Some(&key),
    )
    .await;
    let params = TokenParams::new()
        .scope("read")
        .resource(server.resource_url());
    let t = c.client_credentials(&params).await.unwrap();
    assert_eq!(t.token_type, TokenType::Dpop);
    assert_eq!(cnf_jkt(t.access_token.secret()), key.thumbprint());
    let s = server.stats();
    assert_eq!(s.token_requests, 2, "challenge + exactly one retry");
    assert_eq!(s.nonce_challenges, 1);
    let token_url = Url::parse(&format!("{}/token", server.issuer())).unwrap();
    assert!(
        c.nonces().token_endpoint_nonce(&token_url).is_some(),
        "nonce cached"
    );

    // The next request carries the cached nonce: no new challenge.
    let t = c.client_credentials(&params).await.unwrap();
    assert_eq!(t.token_type, TokenType::Dpop);
    let s = server.stats();
    assert_eq!(s.token_requests, 3);
    assert_eq!(s.nonce_challenges, 1);
    assert_eq!(s.grants.client_credentials, 2);
}

#[tokio::test]
async fn dpop_nonce_private_key_jwt_reminted_for_retry_testkit() {
    // The test server refuses a replayed client assertion `jti`; the retry only succeeds
    // because the assertion is minted anew.
    let assertion_key = DpopKey::generate();
    let public: Value = serde_json::from_str(&assertion_key.public_jwk().to_json()).unwrap();
    let server = TestServer::start_with(nonce_server().with_client(TestClient::new(
        "jwt-agent",
        TestClientAuth::PrivateKeyJwt(public),
    )))
    .await;
    let auth = ClientAuth::private_key_jwt(
        AssertionKey::from_jwk(assertion_key.to_jwk().unwrap().expose_secret()).unwrap(),
    );
    let key = DpopKey::generate();
    let c = client(server.issuer(), "jwt-agent", auth, Some(&key)).await;
    let t = c
        .client_credentials(&TokenParams::new().resource(server.resource_url()))
        .await
        .unwrap();
    assert_eq!(cnf_jkt(t.access_token.secret()), key.thumbprint());
    let s = server.stats();
    assert_eq!((s.token_requests, s.nonce_challenges), (2, 1));
}

#[tokio::test]
async fn dpop_nonce_server_always_demanding_new_nonce_no_loop() {
    let s = Scripted::start(|i, _| Reply::use_nonce(&format!("fresh-{i}"))).await;
    let key = DpopKey::generate();
    let c = s.client(&key);
    let err = c.client_credentials(&TokenParams::new()).await.unwrap_err();
    expect_use_dpop_nonce(&err);
    // Give a runaway loop the chance to show itself.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(s.count(), 2, "one retry, not a loop");
    let reqs = s.requests();
    assert_eq!(reqs[0].nonce(), None);
    assert_eq!(reqs[1].nonce(), Some("fresh-0"));
    s.assert_proofs_valid(&key);
}

#[tokio::test]
async fn dpop_nonce_same_nonce_not_retried() {
    let s = Scripted::start(|_, _| Reply::use_nonce("stale")).await;
    let key = DpopKey::generate();
    let nonces = Arc::new(NonceCache::new());
    nonces.set_token_endpoint_nonce(&Url::parse(&s.token_endpoint).unwrap(), "stale");
    let c = s.builder(&key).nonce_cache(nonces).build();
    let err = c.client_credentials(&TokenParams::new()).await.unwrap_err();
    expect_use_dpop_nonce(&err);
    assert_eq!(
        s.count(),
        1,
        "the server repeated the nonce just used: no retry"
    );
    assert_eq!(s.requests()[0].nonce(), Some("stale"));
    s.assert_proofs_valid(&key);
}

#[tokio::test]
async fn dpop_nonce_challenge_without_nonce_not_retried() {
    let s = Scripted::start(|_, _| Reply::error(400, "use_dpop_nonce")).await;
    let key = DpopKey::generate();
    let err = s
        .client(&key)
        .client_credentials(&TokenParams::new())
        .await
        .unwrap_err();
    expect_use_dpop_nonce(&err);
    assert_eq!(s.count(), 1);
}

#[tokio::test]
async fn dpop_nonce_from_failed_retry_is_cached() {
    // Request 0: challenge with n-0. Request 1 (the retry): challenge again with n-1, the call
    // fails. Request 2, a new call, must use n-1.
    let s = Scripted::start(|i, _| match i {
        0 | 1 => Reply::use_nonce(&format!("n-{i}")),
        _ => Reply::token("at"),
    })
    .await;
    let key = DpopKey::generate();
    let c = s.client(&key);
    let err = c.client_credentials(&TokenParams::new()).await.unwrap_err();
    expect_use_dpop_nonce(&err);
    assert_eq!(s.count(), 2);
    let t = c.client_credentials(&TokenParams::new()).await.unwrap();
    assert_eq!(t.access_token.secret(), "at");
    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[1].nonce(), Some("n-0"));
    assert_eq!(
        reqs[2].nonce(),
        Some("n-1"),
        "nonce of the failed retry used"
    );
    s.assert_proofs_valid(&key);
}

#[tokio::test]
async fn dpop_nonce_from_other_error_is_cached() {
    // A nonce on a response that is not a nonce challenge (invalid_scope) is remembered too.
    let s = Scripted::start(|i, _| match i {
        0 => Reply::error(400, "invalid_scope").with_nonce("n-x"),
        _ => Reply::token("at"),
    })
    .await;
    let key = DpopKey::generate();
    let c = s.client(&key);
    let err = c.client_credentials(&TokenParams::new()).await.unwrap_err();
    assert_eq!(
        err.oauth_error().map(|e| e.error.clone()),
        Some(OAuthErrorCode::InvalidScope)
    );
    assert_eq!(s.count(), 1, "no retry for other errors");
    c.client_credentials(&TokenParams::new()).await.unwrap();
    assert_eq!(s.requests()[1].nonce(), Some("n-x"));
}

#[tokio::test]
async fn dpop_nonce_on_a_retried_503_is_used_by_the_next_attempt() {
    // The transport retries the 503 by itself; the nonce it carried must not be lost.
    let s = Scripted::start(|i, _| match i {
        0 => Reply::error(503, "temporarily_unavailable").with_nonce("n-503"),
        _ => Reply::token("at"),
    })
    .await;
    let key = DpopKey::generate();
    s.client(&key)
        .client_credentials(&TokenParams::new())
        .await
        .unwrap();
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2, "one transport retry");
    assert_eq!(reqs[0].nonce(), None);
    assert_eq!(reqs[1].nonce(), Some("n-503"));
}

#[tokio::test]
async fn dpop_nonce_retry_has_fresh_proof_and_assertion() {
    let s = Scripted::start(|i, _| match i {
        0 => Reply::use_nonce("n-0"),
        _ => Reply::token("at"),
    })
    .await;
    let assertion_key = DpopKey::generate();
    let auth = ClientAuth::private_key_jwt(
        AssertionKey::from_jwk(assertion_key.to_jwk().unwrap().expose_secret()).unwrap(),
    );
    let key = DpopKey::generate();
    let c = s.builder(&key).auth(auth).build();
    c.client_credentials(&TokenParams::new()).await.unwrap();
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    s.assert_proofs_valid(&key);
    assert_ne!(reqs[0].claims()["jti"], reqs[1].claims()["jti"]);
    assert_eq!(reqs[1].nonce(), Some("n-0"));

    let assertion = |r: &Recorded| {
        assert_eq!(
            r.param("client_assertion_type"),
            Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        );
        let a = r
            .param("client_assertion")
            .expect("client_assertion")
            .to_owned();
        // Verify each assertion with josekit against the registered public key.
        let jwk =
            josekit::jwk::Jwk::from_bytes(assertion_key.public_jwk().to_json().as_bytes()).unwrap();
        let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
        josekit::jws::deserialize_compact(&a, &verifier).expect("assertion signature");
        jwt_payload(&a)
    };
    let (a0, a1) = (assertion(&reqs[0]), assertion(&reqs[1]));
    assert_eq!(a0["iss"], "agent");
    assert_eq!(a0["aud"], s.base.as_str());
    assert!(a0["jti"].is_string());
    assert_ne!(a0["jti"], a1["jti"], "assertion re-minted for the retry");
}

#[tokio::test]
async fn dpop_nonce_retried_after_403_use_dpop_nonce() {
    // Sloppy servers answer the nonce challenge with 403 (or 401). The client retries on any
    // non-success status whose error is use_dpop_nonce, as long as the nonce is new.
    for status in [403, 401] {
        let s = Scripted::start(move |i, _| match i {
            0 => Reply::error(status, "use_dpop_nonce").with_nonce("n-0"),
            _ => Reply::token("at"),
        })
        .await;
        let key = DpopKey::generate();
        let t = s
            .client(&key)
            .client_credentials(&TokenParams::new())
            .await
            .unwrap_or_else(|e| panic!("{status}: {e:?}"));
        assert_eq!(t.access_token.secret(), "at");
        assert_eq!(s.count(), 2, "{status}");
        assert_eq!(s.requests()[1].nonce(), Some("n-0"));
        s.assert_proofs_valid(&key);
    }
}

#[tokio::test]
async fn dpop_nonce_strict_server_rotating_nonces() {
    // A server that accepts only the nonce it handed out last and rotates it on every
    // challenge: each call costs at most one challenge, and a call made after a rotation
    // recovers with its single retry.
    let current = Arc::new(Mutex::new(0u32));
    let cur = current.clone();
    let s = Scripted::start(move |_, r| {
        let n = format!("n-{}", *cur.lock().unwrap());
        if r.nonce() == Some(n.as_str()) {
            Reply::token("at").with_nonce(&n)
        } else {
            let mut c = cur.lock().unwrap();
            *c += 1;
            Reply::use_nonce(&format!("n-{}", *c))
        }
    })
    .await;
    let key = DpopKey::generate();
    let c = s.client(&key);
    c.client_credentials(&TokenParams::new()).await.unwrap();
    assert_eq!(s.count(), 2);
    c.client_credentials(&TokenParams::new()).await.unwrap();
    assert_eq!(s.count(), 3, "cached nonce accepted first time");
    *current.lock().unwrap() += 10; // the server rotates behind the client's back
    c.client_credentials(&TokenParams::new()).await.unwrap();
    assert_eq!(s.count(), 5);
    s.assert_proofs_valid(&key);
}
