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

per_server!(agent_url_first_two_authorization_servers_tokens_stay_home);
/// An agent built without an issuer calls the resources of two servers of the same kind (two
/// oidc-provider processes, or two embedded servers): each resource's 401 names its server,
/// each server gets its own client, and no resource ever sees the other server's token.
async fn agent_url_first_two_authorization_servers_tokens_stay_home(kind: Kind) {
    use crate::support::prelude::{AgentEvent, TrustPolicy};
    use std::sync::{Arc, Mutex};

    let (Some(a), Some(b)) = (
        Server::start(kind, Knobs::default()).await,
        Server::start(kind, Knobs::default()).await,
    ) else {
        return;
    };
    assert_ne!(a.issuer(), b.issuer());
    let rejected: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let seen = rejected.clone();
    let agent = Agent::builder()
        .trust(TrustPolicy::issuers([a.issuer(), b.issuer()]))
        .client_for_issuer(a.issuer(), SERVICE.id, SERVICE.auth())
        .client_for_issuer(b.issuer(), SERVICE.id, SERVICE.auth())
        .scope("read")
        .on_event(move |e| {
            if let AgentEvent::TokenRejected { origin, error, .. } = e {
                seen.lock()
                    .expect("events")
                    .push((origin.clone(), error.clone()));
            }
        })
        .build()
        .await
        .expect("agent");
    for (s, path) in [(&a, "one"), (&b, "two"), (&a, "three"), (&b, "four")] {
        let resp = agent
            .get(format!("{}/{path}", s.resource()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", s.issuer(), s.log()));
        assert_eq!(resp.status(), 200, "{}", s.log());
        let body = json(&resp);
        assert_eq!(body["client_id"], SERVICE.id, "{body}");
    }
    assert_eq!(
        agent.issuers(),
        [a.issuer().to_owned(), b.issuer().to_owned()]
    );
    // Each server issued tokens for its own resource only.
    for s in [&a, &b] {
        let t = agent
            .access_token(Some(&s.resource()))
            .await
            .expect("token");
        let payload = t
            .token()
            .access_token
            .secret()
            .split('.')
            .nth(1)
            .map(str::to_owned);
        let claims: serde_json::Value = payload
            .and_then(|p| {
                use base64::Engine as _;
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .ok()
            })
            .and_then(|b| serde_json::from_slice(&b).ok())
            .expect("a JWT access token");
        assert_eq!(claims["iss"], s.issuer(), "{claims}");
        let aud = claims["aud"].to_string();
        assert!(aud.contains(&s.resource()), "{claims}");
    }
    // Only nonce challenges, never a refused token: each resource only ever saw tokens its
    // own server issued for it (a foreign token fails its issuer and audience checks).
    let rejected = rejected.lock().expect("events").clone();
    assert!(
        rejected.iter().all(|(_, e)| e == "use_dpop_nonce"),
        "{rejected:?}"
    );
}
