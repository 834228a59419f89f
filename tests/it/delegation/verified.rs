//! Verified actor chains: JWT access tokens checked against the authorization server's JWKS
//! (signature, issuer, validity), against both servers; forgeries refused; the delegation
//! policy (`may_act`, chain depth) and audit events, on both servers.

use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::per_server;
use crate::support::prelude::{
    sign_compact, verify_delegation_chain, AccessToken, Agent, AgentEvent, Error, Jwks, RingSigner,
    TestServer, VerificationError,
};
use crate::support::servers::{Kind, Knobs, Registration, Server, SERVICE, SUB_WORKER, WORKER};

async fn agent(issuer: &str, r: Registration, resource: Option<&str>) -> Agent {
    let mut b = Agent::builder()
        .issuer(issuer)
        .client_id(r.id)
        .client_auth(r.auth());
    if let Some(resource) = resource {
        b = b.scope("read write").resource(resource);
    }
    b.build().await.expect("agent")
}

/// The JWKS of the agent's authorization server.
fn jwks_of(agent: &Agent) -> Jwks {
    Jwks::new(agent.client().expect("issuer").server().clone())
}

fn refusal(r: agent_oauth::Result<impl std::fmt::Debug>) -> VerificationError {
    match r {
        Err(Error::Verification(v)) => v,
        other => panic!("expected a verification error, got {other:?}"),
    }
}

/// A token's header and payload, decoded.
fn parts(token: &AccessToken) -> (Value, Value) {
    let mut it = token.secret().split('.');
    let mut next = || serde_json::from_slice(&B64.decode(it.next().unwrap()).unwrap()).unwrap();
    (next(), next())
}

fn b64(v: &Value) -> String {
    B64.encode(v.to_string())
}

/// `header.payload` signed by a key of our own (ES256).
fn signed_by_other_key(header: &Value, payload: &Value) -> AccessToken {
    let signer = RingSigner::generate().unwrap();
    AccessToken::new(sign_compact(&b64(header), payload.to_string().as_bytes(), &signer).unwrap())
}

per_server!(verified_chain_two_level_and_forgeries_refused);
/// A grandchild's token carries a two-level `act` chain that verifies against the server's
/// JWKS; the same claims with another key under the same `kid`, another issuer, `alg: none`
/// or HS256 keyed with the public key are refused.
async fn verified_chain_two_level_and_forgeries_refused(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::nonces()).await else {
        return;
    };
    let api = s.resource();
    let parent = agent(s.issuer(), SERVICE, Some(&api)).await;
    let (a, b) = (
        agent(s.issuer(), WORKER, None).await,
        agent(s.issuer(), SUB_WORKER, None).await,
    );
    let jwks = jwks_of(&parent);
    let child = parent
        .delegate()
        .scope("read write")
        .actor_agent(&a)
        .verify_with(jwks.clone())
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("child: {e}\n{}", s.log()));
    let grandchild = child
        .delegate()
        .scope("read")
        .actor_agent(&b)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("grandchild: {e}\n{}", s.log()));
    let token = grandchild.token().await.unwrap().access_token;
    let chain = verify_delegation_chain(&token, &jwks, s.issuer())
        .await
        .unwrap_or_else(|e| panic!("verify: {e}\n{}", s.log()));
    assert_eq!(chain.issuer, s.issuer());
    assert_eq!(chain.sub.as_deref(), Some(SERVICE.id));
    assert_eq!(chain.depth(), 2);
    assert_eq!(chain.actor_names(), [SUB_WORKER.id, WORKER.id]);
    assert_eq!(
        chain.actors.iter().map(|a| a.depth).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(chain.scope.to_string(), "read");
    assert_eq!(chain.aud, std::slice::from_ref(&api));
    assert_eq!(
        chain.jkt.as_deref(),
        grandchild.dpop_key().map(|k| k.thumbprint())
    );
    assert_eq!(chain.client_id.as_deref(), Some(SERVICE.id));
    // The grandchild inherited verification: its own verified chain is the same.
    assert_eq!(grandchild.verified_chain(), Some(chain.clone()));
    assert_eq!(
        child.verified_chain().map(|c| c.actor_names().join(",")),
        Some(WORKER.id.to_owned())
    );

    // At the embedded server: one fetch served every verification so far.
    if let Some(t) = s.testkit() {
        assert_eq!(t.stats().jwks_requests, 1);
    }

    let (header, payload) = parts(&token);
    let kid = header["kid"].as_str().expect("kid").to_owned();
    // Same kid, another key.
    let forged = signed_by_other_key(&header, &payload);
    assert_eq!(
        refusal(verify_delegation_chain(&forged, &jwks, s.issuer()).await),
        VerificationError::BadSignature
    );
    // Another issuer: the real token is not for the issuer expected, and rewriting `iss`
    // breaks the signature.
    assert!(matches!(
        refusal(verify_delegation_chain(&token, &jwks, "https://other.example").await),
        VerificationError::IssuerMismatch { found: Some(ref f), .. } if f == s.issuer()
    ));
    let mut other_iss = payload.clone();
    other_iss["iss"] = json!("https://other.example");
    let signature = token.secret().rsplit('.').next().unwrap();
    let rewritten = AccessToken::new(format!("{}.{}.{signature}", b64(&header), b64(&other_iss)));
    assert_eq!(
        refusal(verify_delegation_chain(&rewritten, &jwks, "https://other.example").await),
        VerificationError::BadSignature
    );
    // A token of a key we hold, naming the other issuer, under the real kid: no key of the
    // JWKS signed it.
    let foreign = signed_by_other_key(&header, &other_iss);
    assert!(
        verify_delegation_chain(&foreign, &jwks, "https://other.example")
            .await
            .is_err()
    );
    // `alg: none`, with and without a signature part.
    for sig in ["", "c2ln"] {
        let none = AccessToken::new(format!(
            "{}.{}.{sig}",
            b64(&json!({"alg": "none", "kid": kid, "typ": "at+jwt"})),
            b64(&payload)
        ));
        assert_eq!(
            refusal(verify_delegation_chain(&none, &jwks, s.issuer()).await),
            VerificationError::AlgorithmNotAllowed("none".into())
        );
    }
    // HS256 keyed with the server's public key, as published.
    let body = s
        .http_client()
        .get(s.url("/jwks"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let published: Value = serde_json::from_slice(&body).unwrap();
    let public = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the token's key is published")
        .clone();
    for secret in [public.to_string(), public["x"].as_str().unwrap().to_owned()] {
        let input = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "kid": kid, "typ": "at+jwt"})),
            b64(&payload)
        );
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, input.as_bytes());
        let hs = AccessToken::new(format!("{input}.{}", B64.encode(tag.as_ref())));
        assert_eq!(
            refusal(verify_delegation_chain(&hs, &jwks, s.issuer()).await),
            VerificationError::AlgorithmNotAllowed("HS256".into())
        );
    }

    if let Some(t) = s.testkit() {
        // An unknown kid makes exactly one refetch; a flood of them right after makes none.
        let before = t.stats().jwks_requests;
        for i in 0..5 {
            let mut h = header.clone();
            h["kid"] = json!(format!("rotated-{i}"));
            let unknown = signed_by_other_key(&h, &payload);
            assert_eq!(
                refusal(verify_delegation_chain(&unknown, &jwks, s.issuer()).await),
                VerificationError::UnknownKey(Some(format!("rotated-{i}")))
            );
            assert_eq!(t.stats().jwks_requests, before + 1, "after unknown kid {i}");
        }
        // The real token still verifies from the cache.
        assert!(verify_delegation_chain(&token, &jwks, s.issuer())
            .await
            .is_ok());
        assert_eq!(t.stats().jwks_requests, before + 1);
    }
}

per_server!(verified_chain_may_act_and_depth_enforced_with_audit_events);
/// The service's tokens say `may_act: {"sub": "worker"}`: a delegation that requires it
/// accepts the worker (as an agent or by its token) and refuses others before sending; a
/// chain deeper than the cap, or a token that does not verify with the configured keys, is
/// refused after the exchange; the audit events carry the verified chains.
async fn verified_chain_may_act_and_depth_enforced_with_audit_events(kind: Kind) {
    let knobs = Knobs {
        service_may_act_worker: true,
        ..Knobs::default()
    };
    let Some(s) = Server::start(kind, knobs).await else {
        return;
    };
    let api = s.resource();
    let events: Arc<Mutex<Vec<AgentEvent>>> = Arc::default();
    let log = events.clone();
    let parent = Agent::builder()
        .issuer(s.issuer())
        .client_id(SERVICE.id)
        .client_auth(SERVICE.auth())
        .scope("read write")
        .resource(&api)
        .on_event(move |e| log.lock().unwrap().push(e.clone()))
        .build()
        .await
        .unwrap();
    let worker = agent(s.issuer(), WORKER, None).await;
    let sub_worker = agent(s.issuer(), SUB_WORKER, None).await;
    // The embedded server counts exchanges; oidc-provider does not.
    let exchanges = || s.testkit().map(|t| t.stats().grants.token_exchange);

    // may_act names the worker: accepted, and the issued token's actor is the worker.
    let child = parent
        .delegate()
        .scope("read write")
        .actor_agent(&worker)
        .require_may_act(true)
        .max_chain_depth(1)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("may_act names the worker: {e}\n{}", s.log()));
    let chain = child.verified_chain().expect("verified");
    assert_eq!(chain.actor_names(), [WORKER.id]);
    assert!(chain.may_act_names(WORKER.id));

    // The actor given as a token (a JWT, for the resource): named by its verified `sub`.
    let worker_api = agent(s.issuer(), WORKER, Some(&api)).await;
    let worker_token = worker_api
        .access_token(Some(&api))
        .await
        .unwrap()
        .token()
        .clone();
    let by_token = parent
        .delegate()
        .scope("read")
        .actor(
            worker_token.access_token.secret(),
            "urn:ietf:params:oauth:token-type:access_token",
        )
        .require_may_act(true)
        .spawn()
        .await
        .expect("may_act names the actor token's sub");
    assert_eq!(
        by_token.verified_chain().unwrap().actor_names(),
        [WORKER.id]
    );
    // A forged actor token is refused before anything is sent.
    let before = exchanges();
    let (header, payload) = parts(&worker_token.access_token);
    let forged_actor = signed_by_other_key(&header, &payload);
    let err = parent
        .delegate()
        .actor(
            forged_actor.secret(),
            "urn:ietf:params:oauth:token-type:access_token",
        )
        .require_may_act(true)
        .spawn()
        .await
        .expect_err("forged actor token");
    assert!(
        matches!(&err, Error::Delegation(m) if m.contains("the actor token does not verify: signature")),
        "{err:?}"
    );
    assert_eq!(exchanges(), before);

    // Refused before anything is sent: another actor, no actor.
    let before = exchanges();
    let err = parent
        .delegate()
        .actor_agent(&sub_worker)
        .require_may_act(true)
        .spawn()
        .await
        .expect_err("may_act does not name sub-worker");
    assert!(
        matches!(&err, Error::Delegation(m) if m.contains("may_act does not name the child `sub-worker`")),
        "{err:?}"
    );
    let err = parent
        .delegate()
        .require_may_act(true)
        .spawn()
        .await
        .expect_err("no actor");
    assert!(
        matches!(&err, Error::Delegation(m) if m.contains("names no actor")),
        "{err:?}"
    );
    assert_eq!(exchanges(), before);

    // A parent token without may_act.
    let plain_parent = Agent::builder()
        .issuer(s.issuer())
        .client_id(WORKER.id)
        .client_auth(WORKER.auth())
        .scope("read")
        .resource(&api)
        .build()
        .await
        .unwrap();
    let err = plain_parent
        .delegate()
        .actor_agent(&sub_worker)
        .require_may_act(true)
        .spawn()
        .await
        .expect_err("no may_act");
    assert!(
        matches!(&err, Error::Delegation(m) if m.contains("has none")),
        "{err:?}"
    );
    assert_eq!(exchanges(), before);

    // Depth: a grandchild with its own actor has a chain of two, over a cap of one. The
    // exchange happened, the token is refused (and revoked).
    let err = child
        .delegate()
        .scope("read")
        .actor_agent(&sub_worker)
        .max_chain_depth(1)
        .spawn()
        .await
        .expect_err("depth 2 > 1");
    assert!(
        matches!(&err, Error::Delegation(m) if m.contains("depth 2, more than max_chain_depth 1")),
        "{err:?}"
    );
    assert_eq!(exchanges(), before.map(|n| n + 1));
    let grandchild = child
        .delegate()
        .scope("read")
        .actor_agent(&sub_worker)
        .max_chain_depth(2)
        .spawn()
        .await
        .expect("depth 2 allowed");
    assert_eq!(
        grandchild.verified_chain().unwrap().actor_names(),
        [SUB_WORKER.id, WORKER.id]
    );

    // Tokens verified with another server's keys: the issued token is refused (and revoked).
    let other = TestServer::start().await;
    let other_jwks = Jwks::new(
        agent_oauth::AuthorizationServer::new(
            other.issuer(),
            agent_oauth::HttpTransport::new().unwrap(),
        )
        .unwrap(),
    );
    let before = exchanges();
    let err = parent
        .delegate()
        .scope("read")
        .verify_with(other_jwks)
        .spawn()
        .await
        .expect_err("not this server's keys");
    assert!(
        matches!(&err, Error::Delegation(m) if m.contains("the issued token does not verify")),
        "{err:?}"
    );
    assert_eq!(exchanges(), before.map(|n| n + 1));

    // Audit events carry the verified chains, never tokens.
    let log = events.lock().unwrap().clone();
    let chains: Vec<(Option<String>, Option<Vec<String>>)> = log
        .iter()
        .filter_map(|e| match e {
            AgentEvent::TokenExchanged {
                verified_sub,
                verified_actors,
                ..
            } => Some((verified_sub.clone(), verified_actors.clone())),
            _ => None,
        })
        .collect();
    // The child, the child by actor token, the grandchild (refusals emit nothing).
    let svc = Some(SERVICE.id.to_owned());
    let worker_only = Some(vec![WORKER.id.to_owned()]);
    let two = Some(vec![SUB_WORKER.id.to_owned(), WORKER.id.to_owned()]);
    assert_eq!(
        chains,
        [
            (svc.clone(), worker_only.clone()),
            (svc.clone(), worker_only),
            (svc, two)
        ]
    );
    let token = grandchild.token().await.unwrap().access_token;
    assert!(!format!("{log:?}").contains(token.secret()));
}
