//! Delegation against node oidc-provider with the RFC 8693 grant of `tests/interop/server.mjs`
//! (scope subset, audience, `act` nesting, DPoP binding to the proof key) and its DPoP-checking
//! resource at `/api`, DPoP nonces required at both.

use crate::support::prelude::TokenExchangeRequest;
use crate::support::prelude::{
    delegation_chain, Agent, ClientAuth, DpopKey, Error, OAuthErrorCode, TokenParams, TokenType,
};
use serde_json::json;

use super::{call_with_key, json};
use crate::support::oidc_provider::OidcProvider;

const TE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

async fn provider() -> Option<OidcProvider> {
    let svc = |id: &str, secret: &str| {
        json!({
            "client_id": id,
            "client_secret": secret,
            "grant_types": ["client_credentials", TE],
            "redirect_uris": [],
            "response_types": []
        })
    };
    OidcProvider::start(json!({
        "clients": [
            svc("orchestrator", "orchestrator-secret"),
            svc("worker", "worker-secret"),
            svc("sub-worker", "sub-worker-secret"),
        ],
        "token_exchange": true,
        "resource_server": true,
        "dpop_nonce": true,
        "resource_nonce": true,
    }))
    .await
}

async fn agent(p: &OidcProvider, id: &str, secret: &str, api: Option<&str>) -> Agent {
    let mut b = Agent::builder()
        .issuer(&p.issuer)
        .client_id(id)
        .client_auth(ClientAuth::client_secret(secret.to_owned()));
    if let Some(api) = api {
        b = b.scope("read write").resource(api);
    }
    b.build().await.expect("agent")
}

#[tokio::test]
async fn interop_delegation_narrowing_chain_and_binding() {
    let Some(p) = provider().await else {
        return;
    };
    let api = p.resource.clone().expect("resource server");
    let parent = agent(&p, "orchestrator", "orchestrator-secret", Some(&api)).await;
    let worker = agent(&p, "worker", "worker-secret", None).await;
    let sub_worker = agent(&p, "sub-worker", "sub-worker-secret", None).await;
    let parent_jkt = parent
        .dpop_key()
        .expect("oidc-provider supports DPoP")
        .thumbprint()
        .to_owned();

    // Narrowing accepted; the token is bound to the child's key.
    let child = parent
        .delegate()
        .scope("read")
        .actor_agent(&worker)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("spawn: {e}\n{}", p.stderr_log()));
    let token = child.token().await.unwrap();
    assert_eq!(token.token_type, TokenType::Dpop);
    assert_eq!(token.scope.to_string(), "read");
    let child_jkt = child.dpop_key().unwrap().thumbprint().to_owned();
    assert_ne!(child_jkt, parent_jkt);
    let chain = delegation_chain(&token.access_token).expect("JWT");
    assert_eq!(chain.jkt.as_deref(), Some(child_jkt.as_str()));
    assert_eq!(chain.sub.as_deref(), Some("orchestrator"));
    assert_eq!(chain.actors, ["worker"]);

    let resp = child.get(format!("{api}/items")).send().await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "{}",
        String::from_utf8_lossy(resp.body())
    );
    let body = json(&resp);
    assert_eq!(body["scope"], "read");
    assert_eq!(body["cnf"]["jkt"], child_jkt.as_str());
    assert_eq!(body["act"], json!({ "sub": "worker" }));

    // The child's token with the parent's key: refused by the resource.
    let nonce = resp
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parent.nonces().get(&url::Url::parse(&api).unwrap()));
    let (status, headers, body) = call_with_key(
        &format!("{api}/items"),
        &token.access_token,
        parent.dpop_key().unwrap(),
        nonce.as_deref(),
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"], "invalid_token", "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("does not match"),
        "{headers:?}"
    );

    // Two-level act chain.
    let grandchild = child
        .delegate()
        .actor_agent(&sub_worker)
        .spawn()
        .await
        .unwrap_or_else(|e| panic!("grandchild: {e}\n{}", p.stderr_log()));
    let chain = grandchild.chain().unwrap();
    assert_eq!(chain.sub.as_deref(), Some("orchestrator"));
    assert_eq!(chain.actors, ["sub-worker", "worker"]);
    assert_eq!(chain.scope.to_string(), "read");
    assert_eq!(
        chain.jkt.as_deref(),
        Some(grandchild.dpop_key().unwrap().thumbprint())
    );
    let resp = grandchild.get(format!("{api}/items")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        json(&resp)["act"],
        json!({ "sub": "sub-worker", "act": { "sub": "worker" } })
    );
}

#[tokio::test]
async fn interop_delegation_widening_rejected_locally_and_by_server() {
    let Some(p) = provider().await else {
        return;
    };
    let api = p.resource.clone().expect("resource server");
    let parent = agent(&p, "orchestrator", "orchestrator-secret", Some(&api)).await;
    let child = parent.delegate().scope("read").spawn().await.unwrap();

    // Locally: wider than the parent, wider than the child, a foreign resource.
    let err = parent
        .delegate()
        .scope("read admin")
        .spawn()
        .await
        .expect_err("wider than the parent");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");
    let err = child
        .delegate()
        .scope("write")
        .spawn()
        .await
        .expect_err("wider than the child");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");
    let err = parent
        .delegate()
        .resource("https://rs.example.com/")
        .spawn()
        .await
        .expect_err("not a parent resource");
    assert!(matches!(err, Error::Delegation(_)), "{err:?}");

    // By the server, when the local check is bypassed.
    let subject = child.token().await.unwrap();
    let request = TokenExchangeRequest::new(subject.access_token.secret()).params(
        TokenParams::new()
            .scope("read write")
            .resource(api.as_str()),
    );
    let err = parent
        .client()
        .token_exchange(&request, Some(&DpopKey::generate()))
        .await
        .expect_err("server refuses widening");
    assert_eq!(
        err.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidScope),
        "{err:?}"
    );
}
