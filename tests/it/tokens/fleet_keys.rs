//! Replicas sharing one DPoP-bound grant: the stored grant records its key's thumbprint;
//! replicas loading the same key (PKCS#8 PEM from a shared secret) refresh it in turn, and a
//! replica with another key gets a typed error instead of sending a refresh the server would
//! refuse.

use std::sync::Arc;

use crate::support::prelude::{
    AuthorizationServer, ClientAuth, DpopKey, Error, MemoryStore, OAuthClient, RefreshingSource,
    TestServer, TokenParams, TokenStore,
};

use super::common::{fast_transport, grant_with_refresh_token};

const KEY: &str = "fleet-grant";

fn replica(server: &TestServer, key: DpopKey) -> OAuthClient {
    let authz = AuthorizationServer::new(server.issuer(), fast_transport()).unwrap();
    OAuthClient::builder(authz, "agent")
        .auth(ClientAuth::client_secret_basic("agent-secret"))
        .dpop(key)
        .build()
}

#[tokio::test]
async fn fleet_key_replicas_sharing_a_pkcs8_key_refresh_and_another_key_is_refused() {
    let server = TestServer::start().await;
    // The fleet's key, kept as a PKCS#8 PEM secret; each replica loads it.
    let fleet_key = DpopKey::generate();
    let pem = fleet_key.to_pkcs8_pem().unwrap();
    let load = || DpopKey::from_pkcs8_pem(pem.expose_secret()).unwrap();
    assert_eq!(load().thumbprint(), fleet_key.thumbprint());

    let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    let source = |client| RefreshingSource::new(client, store.clone(), KEY, TokenParams::new());
    let a = source(replica(&server, load()));
    let b = source(replica(&server, load()));
    let rt = server.issue_dpop_bound_refresh_token(
        "agent",
        "read offline_access",
        fleet_key.thumbprint(),
    );
    a.seed(&grant_with_refresh_token(&rt)).await.unwrap();
    let stored = store.load(KEY).await.unwrap().unwrap();
    assert_eq!(
        stored.value.dpop_jkt.as_deref(),
        Some(fleet_key.thumbprint()),
        "the grant records its key"
    );

    // Replicas with the shared key take turns.
    let t1 = a.refresh_now(None).await.unwrap();
    let t2 = b.refresh_now(Some(t1.clone())).await.unwrap();
    assert!(!t1.access_token.ct_eq(&t2.access_token));
    let t3 = a.refresh_now(Some(t2.clone())).await.unwrap();
    assert_eq!(server.stats().grants.refresh_token, 3);

    // A replica started with its own key: typed error, nothing sent, the grant unharmed.
    let stranger = DpopKey::generate();
    let c = source(replica(&server, stranger.clone()));
    let e = c
        .refresh_now(Some(t3.clone()))
        .await
        .expect_err("another key");
    match &e {
        Error::DpopKeyMismatch { stored, ours } => {
            assert_eq!(stored, fleet_key.thumbprint());
            assert_eq!(ours.as_deref(), Some(stranger.thumbprint()));
        }
        other => panic!("expected DpopKeyMismatch, got {other:?}"),
    }
    assert!(e.to_string().contains(fleet_key.thumbprint()), "{e}");
    assert_eq!(server.stats().grants.refresh_token, 3, "nothing sent");
    assert_eq!(server.stats().revoked_grants, 0);
    // A replica without DPoP at all is refused the same way.
    let bearer = RefreshingSource::new(
        super::common::agent(&server),
        store.clone(),
        KEY,
        TokenParams::new(),
    );
    let e = bearer.refresh_now(Some(t3.clone())).await.unwrap_err();
    assert!(
        matches!(e, Error::DpopKeyMismatch { ours: None, .. }),
        "{e:?}"
    );
    // The fleet goes on.
    b.refresh_now(Some(t3)).await.unwrap();
    assert_eq!(server.stats().grants.refresh_token, 4);
}
