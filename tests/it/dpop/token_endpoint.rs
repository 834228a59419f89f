//! Every grant through `OAuthClient` with a DPoP key: a proof on the wire, a `DPoP` token bound
//! to the key (`cnf.jkt`), checked against the embedded test server, which verifies proofs with
//! its own code. Plus: Bearer answers, independent proof checks and the proof clock.

use std::time::{Duration, SystemTime};

use crate::support::prelude::{
    ClientAuth, DpopKey, Error, OAuthClient, OAuthErrorCode, TokenParams, TokenSet, TokenType,
};
use crate::support::prelude::{PendingAuthorization, TokenExchangeRequest};
use crate::support::prelude::{TestServer, TestServerConfig};
use url::Url;

use super::scripted::{Reply, Scripted};
use super::{client, cnf_jkt, jwt_payload};

const REDIRECT: &str = "http://127.0.0.1/cb";

/// The confidential client `agent` of the test server.
async fn agent(server: &TestServer, key: Option<&DpopKey>) -> OAuthClient {
    client(
        server.issuer(),
        "agent",
        ClientAuth::client_secret_basic("agent-secret"),
        key,
    )
    .await
}

/// The public client `public-agent` of the test server.
async fn public_agent(server: &TestServer, key: Option<&DpopKey>) -> OAuthClient {
    client(server.issuer(), "public-agent", ClientAuth::none(), key).await
}

fn api_params(server: &TestServer) -> TokenParams {
    TokenParams::new()
        .scope("read")
        .resource(server.resource_url())
}

/// The token is a DPoP token whose JWT binds it to `key`.
pub(super) fn assert_bound(t: &TokenSet, key: &DpopKey) {
    assert_eq!(t.token_type, TokenType::Dpop);
    assert_eq!(cnf_jkt(t.access_token.secret()), key.thumbprint());
    // The token set records the binding too.
    let recorded = t.cnf.as_ref().expect("cnf recorded");
    assert_eq!(recorded.jkt.as_deref(), Some(key.thumbprint()));
}

/// Follow the test server's auto-approving authorization endpoint to the redirect.
async fn authorize(pending: &PendingAuthorization) -> Url {
    let resp = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(pending.url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302, "{:?}", resp.text().await);
    let location = resp.headers()["location"].to_str().unwrap();
    Url::parse(location).unwrap()
}

/// An authorization code flow for `public-agent` bound to `key`: the token set.
async fn code_flow(server: &TestServer, key: &DpopKey) -> TokenSet {
    let c = public_agent(server, Some(key)).await;
    let pending = c
        .authorization_url(REDIRECT, &api_params(server))
        .await
        .unwrap();
    let callback = authorize(&pending).await;
    c.exchange_code(&pending, &callback).await.unwrap()
}

#[tokio::test]
async fn dpop_token_authorization_code_dpop_jkt_binds_the_code() {
    // The code was requested with `dpop_jkt` of one key: redeeming it with another key fails,
    // which it would not if `dpop_jkt` were missing from the authorization URL.
    let server = TestServer::start().await;
    let key = DpopKey::generate();
    let thief = DpopKey::generate();
    let pending = public_agent(&server, Some(&key))
        .await
        .authorization_url(REDIRECT, &api_params(&server))
        .await
        .unwrap();
    let callback = authorize(&pending).await;
    let err = public_agent(&server, Some(&thief))
        .await
        .exchange_code(&pending, &callback)
        .await
        .unwrap_err();
    let oauth = err.oauth_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(oauth.error, OAuthErrorCode::InvalidGrant, "{err:?}");
    assert_eq!(server.stats().grants.authorization_code, 0);
}

#[tokio::test]
async fn dpop_token_device_flow_bound_to_key() {
    let server = TestServer::start_with(
        TestServerConfig::default().with_device_interval(Duration::from_secs(1)),
    )
    .await;
    let key = DpopKey::generate();
    let c = agent(&server, Some(&key)).await;
    let t = c
        .device_flow(&api_params(&server), |auth| {
            assert!(server.approve_device(&auth.user_code));
        })
        .await
        .unwrap();
    assert_bound(&t, &key);
    assert_eq!(server.stats().grants.device_code, 1);
}

#[tokio::test]
async fn dpop_token_refresh_public_client_other_key_fails() {
    let server = TestServer::start().await;
    let key = DpopKey::generate();
    let rt = code_flow(&server, &key).await.refresh_token.unwrap();
    for other in [Some(DpopKey::generate()), None] {
        let err = public_agent(&server, other.as_ref())
            .await
            .refresh(&rt, &api_params(&server))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::ReauthorizationRequired(_)),
            "{other:?}: {err:?}"
        );
    }
    assert_eq!(server.stats().grants.refresh_token, 0);
    // The refresh token is still good with its own key.
    let t = public_agent(&server, Some(&key))
        .await
        .refresh(&rt, &api_params(&server))
        .await
        .unwrap();
    assert_bound(&t, &key);
}

#[tokio::test]
async fn dpop_token_exchange_binds_to_child_key() {
    let server = TestServer::start().await;
    let parent = DpopKey::generate();
    let child = DpopKey::generate();
    let c = agent(&server, Some(&parent)).await;
    let subject = c.client_credentials(&api_params(&server)).await.unwrap();
    assert_bound(&subject, &parent);
    let req = TokenExchangeRequest::new(subject.access_token.secret()).params(api_params(&server));

    let delegated = c.token_exchange(&req, Some(&child)).await.unwrap();
    assert_bound(&delegated, &child);
    assert_ne!(child.thumbprint(), parent.thumbprint());

    // Without the override the exchanged token is bound to the client's own key.
    let own = c.token_exchange(&req, None).await.unwrap();
    assert_bound(&own, &parent);
    assert_eq!(server.stats().grants.token_exchange, 2);
}

#[tokio::test]
async fn dpop_token_exchange_child_proof_on_the_wire() {
    // The scripted server sees the child key in the exchange proof.
    let s = Scripted::start(|_, _| {
        let mut r = Reply::token("exchanged");
        r.body["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token".into();
        r
    })
    .await;
    let parent = DpopKey::generate();
    let child = DpopKey::generate();
    let c = s.client(&parent);
    let t = c
        .token_exchange(&TokenExchangeRequest::new("subject"), Some(&child))
        .await
        .unwrap();
    assert_eq!(t.token_type, TokenType::Dpop);
    s.assert_proofs_valid(&child);
}

#[tokio::test]
async fn dpop_token_bearer_answer_refused_by_default() {
    let s = Scripted::start(|_, _| {
        let mut r = Reply::token("plain");
        r.body["token_type"] = "Bearer".into();
        r
    })
    .await;
    let key = DpopKey::generate();
    let err = s
        .client(&key)
        .client_credentials(&TokenParams::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
    assert!(err.to_string().contains("Bearer"), "{err}");
    assert_eq!(s.count(), 1);
    s.assert_proofs_valid(&key);
}

#[tokio::test]
async fn dpop_token_bearer_accepted_when_allowed() {
    let s = Scripted::start(|_, _| {
        let mut r = Reply::token("plain");
        r.body["token_type"] = "bearer".into();
        r
    })
    .await;
    let key = DpopKey::generate();
    let t = s
        .builder(&key)
        .accept_bearer_with_dpop(true)
        .build()
        .client_credentials(&TokenParams::new())
        .await
        .unwrap();
    assert_eq!(t.token_type, TokenType::Bearer);
    assert_eq!(t.access_token.secret(), "plain");
    s.assert_proofs_valid(&key);
}

#[tokio::test]
async fn dpop_token_proofs_verified_independently() {
    // Several requests, one of them a nonce retry: every proof passes josekit verification,
    // `typ`, `htm`, `htu` (query dropped), integer `iat` near now, long unique `jti`.
    let s = Scripted::start(|i, _| match i {
        1 => Reply::use_nonce("n-1"),
        _ => Reply::token(&format!("at-{i}")),
    })
    .await;
    let key = DpopKey::generate();
    let c = s.client(&key);
    for _ in 0..3 {
        c.client_credentials(&TokenParams::new().scope("read"))
            .await
            .unwrap();
    }
    assert_eq!(s.count(), 4);
    s.assert_proofs_valid(&key);
    let reqs = s.requests();
    assert_eq!(reqs[0].nonce(), None);
    assert_eq!(reqs[1].nonce(), None);
    assert_eq!(reqs[2].nonce(), Some("n-1"));
    assert_eq!(reqs[3].nonce(), Some("n-1"));
    for r in &reqs {
        assert_eq!(r.claims()["htu"], format!("{}/token", s.base));
        assert!(r.claims().get("ath").is_none());
        let jti = r.claims()["jti"].as_str().unwrap();
        assert!(jti.len() >= 22, "{jti}");
    }
}

#[tokio::test]
async fn dpop_token_proof_iat_follows_server_clock() {
    // The server's clock runs 120 s ahead and says so in `Date`. The first proof cannot know;
    // the retry in the same call and every later proof carry the server's time.
    let ahead = Duration::from_secs(120);
    let s = Scripted::start(move |i, _| {
        let date = SystemTime::now() + ahead;
        match i {
            0 => Reply::use_nonce("n-1").with_date(date),
            _ => Reply::token("at").with_date(date),
        }
    })
    .await;
    let key = DpopKey::generate();
    let c = s.client(&key);
    c.client_credentials(&TokenParams::new()).await.unwrap();
    c.client_credentials(&TokenParams::new()).await.unwrap();
    let reqs = s.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[0].iat_drift().abs() <= 5, "{}", reqs[0].iat_drift());
    for r in &reqs[1..] {
        assert!(
            (r.iat_drift() - 120).abs() <= 5,
            "iat drift {} instead of ~120",
            r.iat_drift()
        );
    }
    assert!((c.server().transport().clock_skew().offset_ms() - 120_000).abs() <= 2_000);
}

#[tokio::test]
async fn dpop_token_assertion_follows_server_clock() {
    // Same server, 120 s ahead, with private_key_jwt. The proof's iat is corrected; the client
    // assertion minted in the same attempt must be too, or a server enforcing `exp`
    // (RFC 7523 §3) sees it expired: its 60 s lifetime ends 60 s before the server's now.
    let ahead = Duration::from_secs(120);
    let s = Scripted::start(move |i, r| {
        let server_now = super::now() + 120;
        let date = SystemTime::now() + ahead;
        let exp = jwt_payload(r.param("client_assertion").unwrap())["exp"]
            .as_i64()
            .unwrap();
        if i > 0 && exp <= server_now {
            return Reply::error(401, "invalid_client").with_date(date);
        }
        Reply::token("at").with_date(date)
    })
    .await;
    let assertion_key = DpopKey::generate();
    let auth = ClientAuth::private_key_jwt(
        crate::support::prelude::AssertionKey::from_jwk(
            assertion_key.to_jwk().unwrap().expose_secret(),
        )
        .unwrap(),
    );
    let key = DpopKey::generate();
    let c = s.builder(&key).auth(auth).build();
    c.client_credentials(&TokenParams::new()).await.unwrap();
    let second = c.client_credentials(&TokenParams::new()).await;
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    assert!((reqs[1].iat_drift() - 120).abs() <= 5);
    let a = jwt_payload(reqs[1].param("client_assertion").unwrap());
    let drift = a["iat"].as_i64().unwrap() - reqs[1].received_at;
    assert!(
        (drift - 120).abs() <= 5,
        "assertion iat {drift} s from local now, proof iat {} s: not in the server's clock",
        reqs[1].iat_drift()
    );
    second.unwrap();
}
