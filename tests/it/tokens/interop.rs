//! Token acquisition and rotation against node `oidc-provider` 9, which rotates refresh tokens
//! and revokes the whole grant when a rotated one is presented again. Skipped without Node.js.

use std::sync::Arc;

use crate::support::prelude::{
    ClientAuth, MemoryStore, OAuthClient, RefreshingSource, TokenCache, TokenKey, TokenParams,
    TokenSet, TokenSource, TokenStore,
};
use serde_json::{json, Value};
use url::Url;

use super::common::{client_at, secret_of};
use crate::support::oidc_provider::OidcProvider;

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

fn handle_on(p: &OidcProvider, source: &RefreshingSource) -> crate::support::prelude::TokenHandle {
    let cache = TokenCache::default();
    let source = source.clone();
    cache.handle(&TokenKey::new(&p.issuer, APP), move || {
        Arc::new(source) as Arc<dyn TokenSource>
    })
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
    let t = handle.refresh().await.unwrap();
    let rt = t.token().refresh_token.clone().unwrap();
    client.refresh(&rt, &TokenParams::new()).await.unwrap();
}
