//! Token acquisition, rotation, revocation and introspection against both servers (see
//! `support::servers`); both rotate refresh tokens and revoke the whole grant when a rotated
//! one is presented again.

use std::sync::Arc;

use url::Url;

use super::common::{audiences, claims, client_at, secret_of};
use crate::per_server;
use crate::support::prelude::{
    ClientAuth, Error, MemoryStore, OAuthClient, RefreshingSource, TokenCache, TokenKey,
    TokenParams, TokenSet, TokenSource, TokenStore,
};
use crate::support::servers::{Kind, Knobs, Registration, Server, APP, REDIRECT, SERVICE};

fn client(s: &Server, r: Registration) -> OAuthClient {
    client_at(s.issuer(), r.id, r.auth())
}

/// [`SERVICE`] with `client_secret_basic` named explicitly (both servers support it).
fn service_basic(s: &Server) -> OAuthClient {
    let secret = SERVICE.secret.unwrap_or_default();
    client_at(
        s.issuer(),
        SERVICE.id,
        ClientAuth::client_secret_basic(secret),
    )
}

/// A grant with a refresh token for [`APP`]: the crate's authorization URL (PKCE, state)
/// approved at the server, then the crate's code exchange.
pub(super) async fn authorize(s: &Server, client: &OAuthClient) -> TokenSet {
    let pending = client
        .authorization_url(
            REDIRECT,
            &TokenParams::new()
                .scope("read write")
                .resource(s.resource()),
        )
        .await
        .unwrap();
    let callback: Url = s.authorize(&pending).await;
    let t = client
        .exchange_code(&pending, &callback)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.log()));
    assert!(t.refresh_token.is_some(), "no refresh token issued");
    t
}

per_server!(grant_client_credentials_scope_and_resource_reach_the_token);
/// Was `grant_scope_and_resource_reach_the_token` (embedded server) and
/// `interop_tokens_client_credentials_with_resource` (oidc-provider).
async fn grant_client_credentials_scope_and_resource_reach_the_token(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::default()).await else {
        return;
    };
    let client = service_basic(&s);
    let t = client
        .client_credentials(
            &TokenParams::new()
                .scope("write read")
                .resource(s.resource()),
        )
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.log()));
    let c = claims(t.access_token.secret());
    assert_eq!(audiences(&c), vec![s.resource()]);
    assert_eq!(c["client_id"], SERVICE.id);
    let scope = crate::support::prelude::Scope::parse(c["scope"].as_str().unwrap());
    assert_eq!(scope.to_string(), "read write");
    assert_eq!(t.scope.to_string(), "read write");
    let lifetime = t.lifetime().unwrap().as_secs();
    assert!((299..=300).contains(&lifetime), "{lifetime}");
    if s.oidc_provider().is_some() {
        // An unknown resource is refused with a typed error (the embedded server issues
        // tokens for any resource).
        let e = client
            .client_credentials(&TokenParams::new().resource("https://other.example.com/"))
            .await
            .unwrap_err();
        assert_eq!(
            e.oauth_error().map(|o| o.error.as_str().to_owned()),
            Some("invalid_target".to_owned())
        );
    }
    if let Some(server) = s.testkit() {
        assert_eq!(c["scope"], "read write");
        // Without a resource the audience is the issuer (and a different token).
        let t2 = client
            .client_credentials(&TokenParams::new().scope("read"))
            .await
            .unwrap();
        let c2 = claims(t2.access_token.secret());
        assert_eq!(audiences(&c2), vec![server.issuer().to_owned()]);
        assert_eq!(c2["scope"], "read");
    }
}

per_server!(grant_revocation_and_introspection);
/// Was `grant_revocation_and_introspection` (embedded server) and
/// `interop_tokens_revocation_and_introspection` (oidc-provider).
async fn grant_revocation_and_introspection(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::default()).await else {
        return;
    };
    // An access token (without a resource: opaque at oidc-provider): active, then inactive
    // after revocation.
    let svc = service_basic(&s);
    let t = svc
        .client_credentials(&TokenParams::new().scope("read"))
        .await
        .unwrap();
    let at = t.access_token.secret();
    let i = svc.introspect(at, Some("access_token")).await.unwrap();
    assert!(i.active, "{i:?}");
    assert_eq!(i.client_id.as_deref(), Some(SERVICE.id));
    if s.testkit().is_some() {
        // oidc-provider's introspection of an opaque token names no scope.
        assert_eq!(i.scope.as_deref(), Some("read"));
    }
    svc.revoke(at, Some("access_token")).await.unwrap();
    assert!(!svc.introspect(at, None).await.unwrap().active);

    // A refresh token: revoking it revokes the grant, and the refresh grant then reports
    // that the user must authorize again.
    let app = client(&s, APP);
    let rt = authorize(&s, &app).await.refresh_token.unwrap();
    let i = app
        .introspect(rt.secret(), Some("refresh_token"))
        .await
        .unwrap();
    assert!(i.active, "{i:?}");
    assert_eq!(i.client_id.as_deref(), Some(APP.id));
    assert_eq!(i.sub.as_deref(), Some("agent-user"));
    app.revoke(rt.secret(), Some("refresh_token"))
        .await
        .unwrap();
    if let Some(t) = s.testkit() {
        assert_eq!(t.stats().revoked_grants, 1);
    }
    let i = app.introspect(rt.secret(), None).await.unwrap();
    assert!(!i.active, "{i:?}");
    let e = app.refresh(&rt, &TokenParams::new()).await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    // Unknown tokens are fine to revoke (RFC 7009 §2.2).
    app.revoke("no-such-token", None).await.unwrap();
}

per_server!(refresh_rotates_through_refreshing_source_and_persists_before_returning);
/// Was `refresh_rotates_three_times_and_persists_before_returning` (embedded server) and
/// `interop_tokens_refresh_rotates_through_refreshing_source` (oidc-provider).
async fn refresh_rotates_through_refreshing_source_and_persists_before_returning(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::default()).await else {
        return;
    };
    let client = client(&s, APP);
    let first = authorize(&s, &client).await;
    let c = claims(first.access_token.secret());
    assert_eq!(c["sub"], "agent-user");
    assert_eq!(audiences(&c), vec![s.resource()]);
    let store = Arc::new(MemoryStore::new());
    let source = RefreshingSource::new(client.clone(), store.clone(), "g", TokenParams::new());
    source.seed(&first).await.unwrap();
    let cache = TokenCache::default();
    let handle = {
        let source = source.clone();
        cache.handle(&TokenKey::new(s.issuer(), APP.id), move || {
            Arc::new(source) as Arc<dyn TokenSource>
        })
    };
    handle.insert(first.clone());
    let mut rts = vec![first.refresh_token.clone().unwrap()];
    for round in 0..4 {
        let t = handle.refresh().await.unwrap();
        // The refresh token stays with the grant: the cached token carries none.
        assert!(
            t.token().refresh_token.is_none(),
            "round {round}: kept by the grant"
        );
        // By the time the access token is in our hands, the store already holds the new
        // refresh token and access token, at the next version.
        let stored = store.load("g").await.unwrap().unwrap();
        let rt = stored.value.refresh_token.clone().unwrap();
        assert!(
            rts.iter().all(|old| !old.ct_eq(&rt)),
            "round {round}: rotated and persisted"
        );
        assert_eq!(
            stored
                .value
                .access
                .as_ref()
                .map(|a| a.access_token.secret().to_owned()),
            Some(t.token().access_token.secret().to_owned())
        );
        assert_eq!(stored.version, 2 + round);
        // The granted resource is kept across refreshes.
        assert_eq!(
            audiences(&claims(t.token().access_token.secret())),
            vec![s.resource()]
        );
        rts.push(rt);
    }
    if let Some(t) = s.testkit() {
        let stats = t.stats();
        assert_eq!(stats.grants.refresh_token, 4);
        assert_eq!(stats.revoked_grants, 0);
    }
    // The newest refresh token is live; presenting an old one kills the grant (checked last,
    // as it does).
    let e = client
        .refresh(&rts[1], &TokenParams::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    let e = handle.refresh().await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    assert!(
        store.load("g").await.unwrap().is_none(),
        "dead grant removed"
    );
}

per_server!(
    refresh_50_concurrent_refreshes_keep_the_grant_alive,
    flavor = "multi_thread",
    worker_threads = 2
);
/// Was `interop_tokens_50_concurrent_refreshes_keep_the_grant_alive` (oidc-provider only).
async fn refresh_50_concurrent_refreshes_keep_the_grant_alive(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::default()).await else {
        return;
    };
    let client = client(&s, APP);
    let first = authorize(&s, &client).await;
    let store = Arc::new(MemoryStore::new());
    let source = RefreshingSource::new(client.clone(), store.clone(), "g", TokenParams::new());
    source.seed(&first).await.unwrap();
    let cache = TokenCache::default();
    let handle = {
        let source = source.clone();
        cache.handle(&TokenKey::new(s.issuer(), APP.id), move || {
            Arc::new(source) as Arc<dyn TokenSource>
        })
    };
    handle.insert(first.clone());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (h, src) = (handle.clone(), source.clone());
            tokio::spawn(async move {
                match i % 3 {
                    0 => h.refresh().await.map(|t| secret_of(t.token())),
                    1 => {
                        h.invalidate();
                        h.get().await.map(|t| secret_of(t.token()))
                    }
                    _ => src.refresh_now(None).await.map(|t| secret_of(&t)),
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stored = store.load("g").await.unwrap().unwrap();
    println!("50 concurrent refreshes: store version {}", stored.version);
    assert!(stored.version >= 2);
    if let Some(t) = s.testkit() {
        let stats = t.stats();
        assert_eq!(stats.revoked_grants, 0, "{stats:?}");
    }
    // A final refresh through the source, and a raw one with the newest token, succeed.
    let t = handle.refresh().await.unwrap();
    assert!(t.token().refresh_token.is_none(), "kept by the grant");
    let rt = store
        .load("g")
        .await
        .unwrap()
        .unwrap()
        .value
        .refresh_token
        .unwrap();
    client.refresh(&rt, &TokenParams::new()).await.unwrap();
}
