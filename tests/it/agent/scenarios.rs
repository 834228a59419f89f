//! The Agent against both servers (see `support::servers`): discovery from the resource's 401
//! (RFC 9728), a DPoP-bound token with nonces required at the AS and at the resource, and an
//! agent built from the protected resource alone.

use serde_json::json;

use crate::per_server;
use crate::support::prelude::{Agent, DpopMode, Error};
use crate::support::servers::{Kind, Knobs, Server, SERVICE};

fn json(resp: &crate::support::prelude::HttpResponse) -> serde_json::Value {
    serde_json::from_slice(resp.body()).expect("json body")
}

async fn agent(s: &Server) -> Agent {
    Agent::builder()
        .issuer(s.issuer())
        .client_id(SERVICE.id)
        .client_auth(SERVICE.auth())
        .scope("read")
        .build()
        .await
        .expect("agent")
}

per_server!(agent_discovers_resource_from_401_with_dpop_nonces);
/// Was `agent_dpop_by_default_with_resource_nonce` (embedded server) and
/// `interop_agent_discovers_resource_from_401_with_dpop_nonces` (oidc-provider).
async fn agent_discovers_resource_from_401_with_dpop_nonces(kind: Kind) {
    let knobs = Knobs {
        dpop_required: true,
        ..Knobs::nonces()
    };
    let Some(s) = Server::start(kind, knobs).await else {
        return;
    };
    let api = s.resource();
    let agent = agent(&s).await;
    let jkt = agent
        .dpop_key()
        .expect("DPoP on by default: the server lists ES256")
        .thumbprint()
        .to_owned();
    assert!(agent.resources().is_empty());

    let resp = agent
        .get(format!("{api}/items/7"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.log()));
    let body = json(&resp);
    assert_eq!(resp.status(), 200, "{body}");
    assert_eq!(body["ok"], true);
    assert_eq!(s.resource_jkt(&body), jkt.as_str());
    assert_eq!(agent.resources(), vec![api.clone()]);
    let challenges = s.testkit().map(|t| {
        let stats = t.stats();
        assert!(
            stats.nonce_challenges >= 2,
            "AS and resource nonce challenges: {stats:?}"
        );
        stats.nonce_challenges
    });

    // Second call: no discovery, the resource nonce is remembered.
    let resp = agent
        .post(format!("{api}/x"))
        .json(&json!({"x": 1}))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), 200);
    if let (Some(t), Some(before)) = (s.testkit(), challenges) {
        assert_eq!(json(&resp)["method"], "POST");
        assert_eq!(t.stats().nonce_challenges, before, "no new challenge");
    }
}

per_server!(agent_from_protected_resource_alone);
/// Was `agent_from_protected_resource_alone` (embedded server, DPoP off) and
/// `interop_agent_from_protected_resource_alone` (oidc-provider, DPoP with nonces required).
async fn agent_from_protected_resource_alone(kind: Kind) {
    let dpop_with_nonces = Knobs {
        dpop_required: true,
        ..Knobs::nonces()
    };
    for (knobs, dpop) in [
        (Knobs::default(), DpopMode::Off),
        (dpop_with_nonces, DpopMode::Auto),
    ] {
        let Some(s) = Server::start(kind, knobs).await else {
            return;
        };
        let api = s.resource();
        let agent = Agent::builder()
            .protected_resource(&api)
            .trust_issuer(s.issuer())
            .client_id(SERVICE.id)
            .client_auth(SERVICE.auth())
            .scope("read")
            .dpop_mode(dpop)
            .build()
            .await
            .expect("agent from resource metadata");
        assert_eq!(agent.issuer(), Some(s.issuer()));
        assert_eq!(agent.dpop_key().is_some(), matches!(dpop, DpopMode::Auto));
        let resp = agent
            .get(&api)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{dpop:?}: {e:?}\n{}", s.log()));
        assert_eq!(resp.status(), 200, "{dpop:?}");
        // An untrusted issuer is refused.
        let err = Agent::builder()
            .protected_resource(&api)
            .client_id(SERVICE.id)
            .build()
            .await
            .expect_err("untrusted");
        assert!(matches!(err, Error::Discovery(_)), "{err:?}");
    }
}
