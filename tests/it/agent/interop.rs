//! The Agent against node oidc-provider: discovery from the resource's 401 (RFC 9728), a
//! DPoP-bound token with nonces required at the AS and at the resource, and the call.

use crate::support::oidc_provider::OidcProvider;
use crate::support::prelude::{Agent, ClientAuth};
use serde_json::json;

fn config() -> serde_json::Value {
    json!({
        "clients": [{
            "client_id": "dpop-svc",
            "client_secret": "dpop-secret",
            "grant_types": ["client_credentials"],
            "redirect_uris": [],
            "response_types": [],
            "dpop_bound_access_tokens": true
        }],
        "dpop_nonce": true,
        "resource_server": true,
        "resource_nonce": true,
        "dpop_bound_access_tokens_required": true,
    })
}

#[tokio::test]
async fn interop_agent_discovers_resource_from_401_with_dpop_nonces() {
    let Some(p) = OidcProvider::start(config()).await else {
        return;
    };
    let api = p.resource.clone().expect("resource server");
    let agent = Agent::builder()
        .issuer(&p.issuer)
        .client_id("dpop-svc")
        .client_auth(ClientAuth::client_secret("dpop-secret"))
        .scope("read")
        .build()
        .await
        .expect("agent");
    let jkt = agent
        .dpop_key()
        .expect("oidc-provider lists ES256")
        .thumbprint()
        .to_owned();
    assert!(agent.resources().is_empty());

    let resp = agent
        .get(format!("{api}/items/7"))
        .send()
        .await
        .expect("send");
    let body: serde_json::Value = serde_json::from_slice(resp.body()).expect("json");
    assert_eq!(resp.status(), 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(body["cnf"]["jkt"], jkt.as_str());
    assert_eq!(agent.resources(), vec![api.clone()]);

    // Second call: no discovery, the resource nonce is remembered.
    let resp = agent
        .post(&api)
        .json(&json!({"x": 1}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn interop_agent_from_protected_resource_alone() {
    let Some(p) = OidcProvider::start(config()).await else {
        return;
    };
    let api = p.resource.clone().expect("resource server");
    let agent = Agent::builder()
        .protected_resource(&api)
        .trust_issuer(&p.issuer)
        .client_id("dpop-svc")
        .client_auth(ClientAuth::client_secret("dpop-secret"))
        .scope("read")
        .build()
        .await
        .expect("agent from resource metadata");
    assert_eq!(agent.issuer(), p.issuer);
    let resp = agent.get(&api).send().await.expect("send");
    assert_eq!(resp.status(), 200);
}
