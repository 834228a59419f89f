//! Delegation (RFC 8693) against both servers (see `support::servers`), with DPoP nonces
//! demanded at the token endpoint and at the resource: narrowing, binding to the child's key,
//! the `act` chain two levels deep, and widening refused locally and by the server.

use serde_json::json;

use super::{call_with_key, json};
use crate::per_server;
use crate::support::prelude::{
    unverified_delegation_chain, Agent, DpopKey, Error, OAuthErrorCode, TokenExchangeRequest,
    TokenParams, TokenType,
};
use crate::support::servers::{Kind, Knobs, Registration, Server, SERVICE, SUB_WORKER, WORKER};

async fn start(kind: Kind) -> Option<Server> {
    Server::start(kind, Knobs::nonces()).await
}

/// The parent: [`SERVICE`] with `read write` at the resource.
async fn parent(s: &Server) -> Agent {
    Agent::builder()
        .issuer(s.issuer())
        .client_id(SERVICE.id)
        .client_auth(SERVICE.auth())
        .scope("read write")
        .resource(s.resource())
        .build()
        .await
        .expect("parent agent")
}

/// An agent whose token is only used as an actor token.
async fn actor(s: &Server, r: Registration) -> Agent {
    Agent::builder()
        .issuer(s.issuer())
        .client_id(r.id)
        .client_auth(r.auth())
        .build()
        .await
        .expect("actor agent")
}

fn exchanges(s: &Server) -> Option<u64> {
    s.testkit().map(|t| t.stats().grants.token_exchange)
}

per_server!(delegation_narrowing_accepted_and_bound_to_child_key);
/// Was `delegation_narrowing_accepted_and_bound_to_child_key` and
/// `delegation_child_token_refused_with_parent_key` (embedded server) and the first half of
/// `interop_delegation_narrowing_chain_and_binding` (oidc-provider).
async fn delegation_narrowing_accepted_and_bound_to_child_key(kind: Kind) {
    let Some(s) = start(kind).await else { return };
    let api = s.resource();
    let parent = parent(&s).await;
    let helper = actor(&s, WORKER).await;
    let child = parent
        .delegate()
        .scope("read")
        .actor_agent(&helper)
        .param("task_id", "t-42")
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("spawn: {e}\n{}", s.log()));
    assert_eq!(child.label(), WORKER.id);
    assert_eq!(child.scope().to_string(), "read");
    assert_eq!(child.resources(), vec![api.clone()]);
    let token = child.token().await.unwrap();
    assert_eq!(token.token_type, TokenType::Dpop);
    assert_eq!(token.scope.to_string(), "read");
    assert!(token.refresh_token.is_none());

    let child_jkt = child.dpop_key().expect("child key").thumbprint().to_owned();
    let parent_jkt = parent
        .dpop_key()
        .expect("parent key")
        .thumbprint()
        .to_owned();
    assert_ne!(child_jkt, parent_jkt);
    let chain = unverified_delegation_chain(&token.access_token).expect("JWT");
    assert_eq!(chain.jkt.as_deref(), Some(child_jkt.as_str()));
    assert_eq!(chain.sub.as_deref(), Some(SERVICE.id));
    assert_eq!(chain.actors, [WORKER.id]);
    assert_eq!(chain.aud, std::slice::from_ref(&api));
    assert_eq!(child.unverified_chain(), Some(chain));

    let resp = child
        .get(format!("{api}/reports"))
        .send()
        .await
        .expect("child call");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    let body = json(&resp);
    assert_eq!(s.resource_jkt(&body), child_jkt.as_str());
    assert_eq!(body["scope"], "read");
    assert_eq!(body["act"], json!({ "sub": WORKER.id }));

    // Tokens never leave the child's resources.
    let err = child
        .get("https://elsewhere.example.com/api")
        .send()
        .await
        .expect_err("foreign origin");
    assert!(matches!(err, Error::Config(_)), "{err:?}");

    // By hand: the child's token with the parent's key is refused by the resource, with the
    // child's key accepted.
    let url = format!("{api}/by-hand");
    let nonce = resp
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parent.nonces().get(&url::Url::parse(&api).unwrap()));
    let (status, headers, body) = call_with_key(
        &url,
        &token.access_token,
        parent.dpop_key().unwrap(),
        nonce.as_deref(),
    )
    .await;
    assert_eq!(
        status, 401,
        "parent's key must not work with the child's token: {body}"
    );
    let www = headers["www-authenticate"].to_str().unwrap();
    assert!(www.contains("invalid"), "{www}");
    if s.oidc_provider().is_some() {
        assert_eq!(body["error"], "invalid_token", "{body}");
        assert!(www.contains("does not match"), "{headers:?}");
    }
    let nonce = headers
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(nonce);
    let (status, _, body) = call_with_key(
        &url,
        &token.access_token,
        child.dpop_key().unwrap(),
        nonce.as_deref(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

per_server!(delegation_grandchild_has_two_level_act_chain);
/// Was `delegation_grandchild_has_two_level_act_chain` (embedded server) and the second half
/// of `interop_delegation_narrowing_chain_and_binding` (oidc-provider).
async fn delegation_grandchild_has_two_level_act_chain(kind: Kind) {
    let Some(s) = start(kind).await else { return };
    let parent = parent(&s).await;
    let a = actor(&s, WORKER).await;
    let b = actor(&s, SUB_WORKER).await;
    let child = parent
        .delegate()
        .scope("read write")
        .actor_agent(&a)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("spawn: {e}\n{}", s.log()));

    // Narrowing is relative to the child now.
    let before = exchanges(&s);
    let narrower = parent.delegate().scope("read").spawn().await.unwrap();
    let err = narrower
        .delegate()
        .scope("write")
        .spawn()
        .await
        .expect_err("wider than the child");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");
    assert_eq!(exchanges(&s), before.map(|n| n + 1));

    let grandchild = child
        .delegate()
        .scope("read")
        .actor_agent(&b)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("grandchild: {e}\n{}", s.log()));
    let token = grandchild.token().await.unwrap();
    let chain = unverified_delegation_chain(&token.access_token).unwrap();
    assert_eq!(chain.sub.as_deref(), Some(SERVICE.id));
    assert_eq!(chain.actors, [SUB_WORKER.id, WORKER.id]);
    assert_eq!(chain.scope.to_string(), "read");
    assert_eq!(grandchild.unverified_chain(), Some(chain.clone()));
    let jkt = grandchild.dpop_key().unwrap().thumbprint();
    assert_eq!(chain.jkt.as_deref(), Some(jkt));
    assert_ne!(Some(jkt), child.dpop_key().map(DpopKey::thumbprint));

    let resp = grandchild
        .get(format!("{}/items", s.resource()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(&resp)["act"],
        json!({ "sub": SUB_WORKER.id, "act": { "sub": WORKER.id } })
    );
}

per_server!(delegation_widening_rejected_locally_and_by_server);
/// Was `delegation_widening_rejected_locally_and_by_server` (embedded server) and
/// `interop_delegation_widening_rejected_locally_and_by_server` (oidc-provider).
async fn delegation_widening_rejected_locally_and_by_server(kind: Kind) {
    let Some(s) = start(kind).await else { return };
    let api = s.resource();
    let parent = parent(&s).await;
    // The parent's own token (its first request) is not part of what is counted.
    parent.access_token(Some(&api)).await.unwrap();
    let child = parent.delegate().scope("read").spawn().await.unwrap();
    let before = exchanges(&s);

    // Locally: wider than the parent, wider than the child, a foreign resource or audience,
    // a scope smuggled in a parameter.
    let err = parent
        .delegate()
        .scope("read admin")
        .spawn()
        .await
        .expect_err("wider scope");
    match &err {
        Error::Delegation(m) => assert!(m.contains("admin"), "{m}"),
        e => panic!("expected a delegation error, got {e:?}"),
    }
    let err = child
        .delegate()
        .scope("write")
        .spawn()
        .await
        .expect_err("wider than the child");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");
    for resource in ["https://other.example.com/api", "https://rs.example.com/"] {
        let err = parent
            .delegate()
            .resource(resource)
            .spawn()
            .await
            .expect_err("uncovered resource");
        assert!(matches!(err, Error::Delegation(_)), "{err:?}");
    }
    let err = parent
        .delegate()
        .audience("https://other.example.com/")
        .spawn()
        .await
        .expect_err("uncovered audience");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");
    let err = parent
        .delegate()
        .scope("read")
        .param("scope", "admin")
        .spawn()
        .await
        .expect_err("scope smuggled in a parameter");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");
    assert_eq!(exchanges(&s), before, "nothing was sent");

    // Without the local check the server refuses too: wider than the parent, and wider than
    // the child's token used as the subject.
    let subject = parent.access_token(Some(&api)).await.unwrap();
    let child_subject = child.token().await.unwrap();
    for (subject, scope) in [
        (subject.token().access_token.secret(), "read admin"),
        (child_subject.access_token.secret(), "read write"),
    ] {
        let request = TokenExchangeRequest::new(subject)
            .params(TokenParams::new().scope(scope).resource(api.as_str()));
        let err = parent
            .client()
            .expect("configured issuer")
            .token_exchange(&request, Some(&DpopKey::generate()))
            .await
            .expect_err("server refuses widening");
        assert_eq!(
            err.oauth_error().map(|o| o.error.clone()),
            Some(OAuthErrorCode::InvalidScope),
            "{scope}: {err:?}"
        );
    }
}
