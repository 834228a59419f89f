//! DPoP at oidc-provider's userinfo endpoint with `dpop_nonce: true` (every token and
//! userinfo request must carry a server nonce). Skipped when Node.js is missing (unless `CI` is set).

use crate::support::prelude::{ath, ClientAuth, DpopKey, OAuthClient, TokenParams, TokenType};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use url::Url;

use super::{client, now};
use crate::support::oidc_provider::OidcProvider;

const REDIRECT: &str = "http://127.0.0.1:1/cb";

async fn provider() -> Option<OidcProvider> {
    OidcProvider::start(json!({
        "dpop_nonce": true,
        "resource_server": true,
        "clients": [
            {
                "client_id": "dpop-svc",
                "client_secret": "dpop-secret",
                "grant_types": ["client_credentials"],
                "redirect_uris": [],
                "response_types": [],
                "dpop_bound_access_tokens": true
            },
            {
                "client_id": "public-agent",
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
                "redirect_uris": [REDIRECT],
                "response_types": ["code"]
            }
        ]
    }))
    .await
}

/// Authorization code flow of `c` headless at `p`: the client's own authorization URL (with
/// `dpop_jkt`) driven through oidc-provider's login and consent, then the code exchanged.
async fn code_flow(
    p: &OidcProvider,
    c: &OAuthClient,
    params: &TokenParams,
) -> crate::support::prelude::TokenSet {
    let pending = c.authorization_url(REDIRECT, params).await.unwrap();
    let query: Vec<(String, String)> = pending.url.query_pairs().into_owned().collect();
    let jkt = c.dpop_key().unwrap().thumbprint();
    assert!(
        query.iter().any(|(k, v)| k == "dpop_jkt" && v == jkt),
        "dpop_jkt in {}",
        pending.url
    );
    let pairs: Vec<(&str, &str)> = query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let location = p.authorize_redirect(&pairs).await;
    let callback = Url::parse(&location).unwrap();
    c.exchange_code(&pending, &callback)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", p.stderr_log()))
}

/// `GET url` with `Authorization: DPoP <at>` and a proof (with `ath`) signed by `key`.
async fn dpop_get(p: &OidcProvider, url: &str, at: &str, proof: &str) -> (u16, HeaderMap, Value) {
    let resp = p
        .http_client()
        .get(url)
        .header("authorization", format!("DPoP {at}"))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null);
    (status, headers, body)
}

fn proof(key: &DpopKey, url: &str, at: &str, nonce: Option<&str>) -> String {
    key.proof(
        "GET",
        &Url::parse(url).unwrap(),
        now(),
        nonce,
        Some(&ath(at)),
    )
    .unwrap()
}

/// A resource request with DPoP: on a `use_dpop_nonce` challenge, one retry with the
/// `DPoP-Nonce` the server sent. Returns the last answer and the proof that got it.
async fn dpop_get_with_nonce_retry(
    p: &OidcProvider,
    url: &str,
    at: &str,
    key: &DpopKey,
    nonce: Option<&str>,
) -> (u16, HeaderMap, Value, String) {
    let first = proof(key, url, at, nonce);
    let (s, h, b) = dpop_get(p, url, at, &first).await;
    let challenged = s == 401
        && h.get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|w| w.contains("use_dpop_nonce"));
    match h.get("dpop-nonce").and_then(|v| v.to_str().ok()) {
        Some(n) if challenged && Some(n) != nonce => {
            let retry = proof(key, url, at, Some(n));
            let (s, h, b) = dpop_get(p, url, at, &retry).await;
            (s, h, b, retry)
        }
        _ => (s, h, b, first),
    }
}

#[tokio::test]
async fn interop_dpop_userinfo_with_ath_and_nonce() {
    let Some(p) = provider().await else { return };
    let key = DpopKey::generate();
    let c = client(&p.issuer, "public-agent", ClientAuth::none(), Some(&key)).await;
    // No resource: an opaque access token for the userinfo endpoint.
    let t = code_flow(&p, &c, &TokenParams::new().scope("openid")).await;
    assert_eq!(t.token_type, TokenType::Dpop);
    let at = t.access_token.secret();
    let me = p.url("/me");

    // Without a nonce: challenged, then one retry with the server's nonce succeeds.
    let (s, h, _) = dpop_get(&p, &me, at, &proof(&key, &me, at, None)).await;
    assert_eq!(s, 401);
    let www = h["www-authenticate"].to_str().unwrap();
    assert!(www.contains("use_dpop_nonce"), "{www}");
    assert!(h.contains_key("dpop-nonce"));
    let (s, _, body, used) = dpop_get_with_nonce_retry(&p, &me, at, &key, None).await;
    assert_eq!(s, 200, "{body}\n{}", p.stderr_log());
    assert_eq!(body["sub"], json!("agent-user"));
    let nonce = super::jwt_payload(&used)["nonce"]
        .as_str()
        .expect("the successful proof carried a nonce")
        .to_owned();

    // The same proof again: replay, refused.
    let (s, _, _) = dpop_get(&p, &me, at, &used).await;
    assert_eq!(s, 401, "replayed proof accepted");
    // A fresh proof of the right key with the nonce still works.
    let (s, _, _) = dpop_get(&p, &me, at, &proof(&key, &me, at, Some(&nonce))).await;
    assert_eq!(s, 200);
    // A proof from another key, otherwise valid: refused.
    let other = DpopKey::generate();
    let (s, _, _) = dpop_get(&p, &me, at, &proof(&other, &me, at, Some(&nonce))).await;
    assert_eq!(s, 401, "proof from another key accepted");
    // A proof whose ath is for another token: refused.
    let bad_ath = key
        .proof(
            "GET",
            &Url::parse(&me).unwrap(),
            now(),
            Some(&nonce),
            Some(&ath("another-token")),
        )
        .unwrap();
    let (s, _, _) = dpop_get(&p, &me, at, &bad_ath).await;
    assert_eq!(s, 401, "proof with a wrong ath accepted");
}
