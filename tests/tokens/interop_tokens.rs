//! Token acquisition and rotation against node `oidc-provider` 9, which rotates refresh tokens
//! and revokes the whole grant when a rotated one is presented again. Skipped without Node.js.

use std::sync::Arc;

use agent_oauth::{
    ClientAuth, Error, MemoryStore, OAuthClient, RefreshingSource, TokenCache, TokenKey,
    TokenParams, TokenSet, TokenSource, TokenStore,
};
use serde_json::{json, Value};
use url::Url;

use crate::common::{audiences, claims, client_at, secret_of};
use crate::oidc_provider::OidcProvider;

pub const APP: &str = "app";
pub const APP_SECRET: &str = "app-secret:+/";
const SVC: &str = "svc";
const SVC_SECRET: &str = "svc-secret";
const REDIRECT: &str = "http://127.0.0.1:1/cb";
const RS: &str = "https://rs.example.com/";

/// Server configuration: a service client and a user-facing client with refresh tokens.
pub fn config() -> Value {
    json!({
        "clients": [
            {
                "client_id": SVC,
                "client_secret": SVC_SECRET,
                "grant_types": ["client_credentials"],
                "redirect_uris": [],
                "response_types": []
            },
            {
                "client_id": APP,
                "client_secret": APP_SECRET,
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": [REDIRECT],
                "response_types": ["code"]
            }
        ],
        "resource_indicators": [RS],
        "resource_scopes": "read write",
        "access_token_ttl": 300,
        "refresh_token_ttl": 600,
    })
}

/// The `app` client (secret method chosen from the metadata).
pub fn app_client(p: &OidcProvider) -> OAuthClient {
    client_at(&p.issuer, APP, ClientAuth::client_secret(APP_SECRET))
}

/// A grant with a refresh token: the crate's authorization URL (PKCE, state) driven through
/// the headless login, then the crate's code exchange.
pub async fn authorize(p: &OidcProvider, client: &OAuthClient) -> TokenSet {
    let pending = client
        .authorization_url(
            REDIRECT,
            &TokenParams::new().scope("read write").resource(RS),
        )
        .await
        .unwrap();
    let params: Vec<(String, String)> = pending.url.query_pairs().into_owned().collect();
    let borrowed: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let callback = p.authorize_redirect(&borrowed).await;
    let t = client
        .exchange_code(&pending, &Url::parse(&callback).unwrap())
        .await
        .unwrap();
    assert!(t.refresh_token.is_some(), "no refresh token issued");
    t
}

#[tokio::test]
async fn interop_tokens_client_credentials_with_resource() {
    let Some(p) = OidcProvider::start(config()).await else {
        return;
    };
    let client = client_at(&p.issuer, SVC, ClientAuth::client_secret_basic(SVC_SECRET));
    let t = client
        .client_credentials(&TokenParams::new().scope("read").resource(RS))
        .await
        .unwrap();
    let c = claims(t.access_token.secret());
    assert_eq!(audiences(&c), vec![RS.to_owned()]);
    assert_eq!(c["client_id"], SVC);
    assert_eq!(c["scope"], "read");
    assert_eq!(t.scope.to_string(), "read");
    let lifetime = t.lifetime().unwrap().as_secs();
    assert!((299..=300).contains(&lifetime), "{lifetime}");
    // An unknown resource is refused with a typed error.
    let e = client
        .client_credentials(&TokenParams::new().resource("https://other.example.com/"))
        .await
        .unwrap_err();
    assert_eq!(
        e.oauth_error().map(|o| o.error.as_str().to_owned()),
        Some("invalid_target".to_owned())
    );
}

fn handle_on(p: &OidcProvider, source: &RefreshingSource) -> agent_oauth::TokenHandle {
    let cache = TokenCache::default();
    let source = source.clone();
    cache.handle(&TokenKey::new(&p.issuer, APP), move || {
        Arc::new(source) as Arc<dyn TokenSource>
    })
}

#[tokio::test]
async fn interop_tokens_refresh_rotates_through_refreshing_source() {
    let Some(p) = OidcProvider::start(config()).await else {
        return;
    };
    let client = app_client(&p);
    let first = authorize(&p, &client).await;
    let c = claims(first.access_token.secret());
    assert_eq!(c["sub"], "agent-user");
    assert_eq!(audiences(&c), vec![RS.to_owned()]);
    let store = Arc::new(MemoryStore::new());
    let source = RefreshingSource::new(client.clone(), store.clone(), "g", TokenParams::new());
    source.seed(&first).await.unwrap();
    let handle = handle_on(&p, &source);
    handle.insert(first.clone());
    let mut rts = vec![first.refresh_token.clone().unwrap()];
    for round in 0..4 {
        let t = handle.refresh().await.unwrap();
        assert!(t.token().refresh_token.is_none(), "kept by the grant");
        let stored = store.load("g").unwrap().unwrap();
        // Persisted: the store holds the new refresh token (with the access token handed out).
        let rt = stored.value.refresh_token.clone().unwrap();
        assert!(
            rts.iter().all(|old| !old.ct_eq(&rt)),
            "round {round}: rotated"
        );
        assert_eq!(stored.version, 2 + round);
        assert_eq!(
            stored
                .value
                .access
                .as_ref()
                .map(|a| a.access_token.secret()),
            Some(t.token().access_token.secret())
        );
        // The granted resource is kept across refreshes.
        assert_eq!(
            audiences(&claims(t.token().access_token.secret())),
            vec![RS]
        );
        rts.push(rt);
    }
    // The newest refresh token is live; presenting an old one would kill the grant (checked
    // last, as it does).
    let e = client
        .refresh(&rts[1], &TokenParams::new())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    let e = handle.refresh().await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");
    assert!(store.load("g").unwrap().is_none(), "dead grant removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_tokens_50_concurrent_refreshes_keep_the_grant_alive() {
    let Some(p) = OidcProvider::start(config()).await else {
        return;
    };
    let client = app_client(&p);
    let first = authorize(&p, &client).await;
    let store = Arc::new(MemoryStore::new());
    let source = RefreshingSource::new(client.clone(), store.clone(), "g", TokenParams::new());
    source.seed(&first).await.unwrap();
    let handle = handle_on(&p, &source);
    handle.insert(first.clone());
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (h, s) = (handle.clone(), source.clone());
            tokio::spawn(async move {
                match i % 3 {
                    0 => h.refresh().await.map(|t| secret_of(t.token())),
                    1 => {
                        h.invalidate();
                        h.get().await.map(|t| secret_of(t.token()))
                    }
                    _ => s.refresh_now(None).await.map(|t| secret_of(&t)),
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let stored = store.load("g").unwrap().unwrap();
    println!("50 concurrent refreshes: store version {}", stored.version);
    assert!(stored.version >= 2);
    // A final refresh through the source, and a raw one with the newest token, succeed.
    handle.refresh().await.unwrap();
    let rt = store
        .load("g")
        .unwrap()
        .unwrap()
        .value
        .refresh_token
        .unwrap();
    client.refresh(&rt, &TokenParams::new()).await.unwrap();
}

#[tokio::test]
async fn interop_tokens_revocation_and_introspection() {
    let Some(p) = OidcProvider::start(config()).await else {
        return;
    };
    let client = app_client(&p);
    let t = authorize(&p, &client).await;
    let rt = t.refresh_token.clone().unwrap();
    let i = client
        .introspect(rt.secret(), Some("refresh_token"))
        .await
        .unwrap();
    assert!(i.active, "{i:?}");
    assert_eq!(i.client_id.as_deref(), Some(APP));
    assert_eq!(i.sub.as_deref(), Some("agent-user"));
    client
        .revoke(rt.secret(), Some("refresh_token"))
        .await
        .unwrap();
    let i = client.introspect(rt.secret(), None).await.unwrap();
    assert!(!i.active, "{i:?}");
    let e = client.refresh(&rt, &TokenParams::new()).await.unwrap_err();
    assert!(matches!(e, Error::ReauthorizationRequired(_)), "{e:?}");

    // An opaque access token (no resource): active, then inactive after revocation.
    let svc = client_at(&p.issuer, SVC, ClientAuth::client_secret_basic(SVC_SECRET));
    let at = svc.client_credentials(&TokenParams::new()).await.unwrap();
    let i = svc
        .introspect(at.access_token.secret(), Some("access_token"))
        .await
        .unwrap();
    assert!(i.active, "{i:?}");
    assert_eq!(i.client_id.as_deref(), Some(SVC));
    svc.revoke(at.access_token.secret(), Some("access_token"))
        .await
        .unwrap();
    assert!(
        !svc.introspect(at.access_token.secret(), None)
            .await
            .unwrap()
            .active
    );
}
