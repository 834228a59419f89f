//! DPoP at the token endpoint against both servers (see `support::servers`), with the token
//! endpoint demanding nonces: client credentials and the authorization code flow of a public
//! client with refresh, each token bound to the client's key and usable at the resource only
//! with proofs of that key.

use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

use super::token_endpoint::assert_bound;
use super::{client, jwt_payload, now};
use crate::per_server;
use crate::support::prelude::{ath, DpopKey, Error, TokenParams, TokenType};
use crate::support::servers::{Kind, Knobs, Server, PUBLIC, REDIRECT, SERVICE};

fn as_nonce() -> Knobs {
    Knobs {
        as_dpop_nonce: true,
        ..Knobs::default()
    }
}

fn api_params(s: &Server) -> TokenParams {
    TokenParams::new().scope("read").resource(s.resource())
}

/// `GET url` with `Authorization: DPoP <at>` and a proof (with `ath`) signed by `key`.
async fn dpop_get(s: &Server, url: &str, at: &str, key: &DpopKey) -> (u16, HeaderMap, Value) {
    let proof = key
        .proof(
            "GET",
            &Url::parse(url).unwrap(),
            now(),
            None,
            Some(&ath(at)),
        )
        .unwrap();
    let resp = s
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

per_server!(dpop_token_client_credentials_bound_to_key);
/// Was `dpop_token_client_credentials_bound_to_key` (embedded server) and
/// `interop_dpop_client_credentials_with_nonce` (oidc-provider).
async fn dpop_token_client_credentials_bound_to_key(kind: Kind) {
    let Some(s) = Server::start(kind, as_nonce()).await else {
        return;
    };
    let key = DpopKey::generate();
    let c = client(s.issuer(), SERVICE.id, SERVICE.auth(), Some(&key)).await;
    let params = api_params(&s);
    let token_url = s.token_endpoint();
    assert_eq!(c.nonces().token_endpoint_nonce(&token_url), None);
    let t = c
        .client_credentials(&params)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.log()));
    assert_bound(&t, &key);
    if let Some(t) = s.testkit() {
        assert_eq!(t.stats().grants.client_credentials, 1);
    }
    // The challenge's nonce was kept; the next request uses it.
    assert!(c.nonces().token_endpoint_nonce(&token_url).is_some());
    let again = c.client_credentials(&params).await.unwrap();
    assert_bound(&again, &key);

    // The bound token works at the resource server with a proof of the same key only.
    let at = t.access_token.secret();
    let url = format!("{}/data", s.resource());
    let (status, _, body) = dpop_get(&s, &url, at, &key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.resource_jkt(&body), key.thumbprint());
    let (status, _, _) = dpop_get(&s, &url, at, &DpopKey::generate()).await;
    assert_eq!(status, 401);

    // Control: without a key the same server issues a Bearer token with no binding.
    let t = client(s.issuer(), SERVICE.id, SERVICE.auth(), None)
        .await
        .client_credentials(&params)
        .await
        .unwrap();
    assert_eq!(t.token_type, TokenType::Bearer);
    assert!(jwt_payload(t.access_token.secret()).get("cnf").is_none());
}

per_server!(dpop_token_authorization_code_and_refresh_public_client);
/// Was `dpop_token_authorization_code_bound_with_dpop_jkt` and
/// `dpop_token_refresh_public_client_same_key` (embedded server) and
/// `interop_dpop_authorization_code_and_refresh_public_client` (oidc-provider).
async fn dpop_token_authorization_code_and_refresh_public_client(kind: Kind) {
    let Some(s) = Server::start(kind, as_nonce()).await else {
        return;
    };
    let key = DpopKey::generate();
    let c = client(s.issuer(), PUBLIC.id, PUBLIC.auth(), Some(&key)).await;
    let params = api_params(&s);
    let pending = c.authorization_url(REDIRECT, &params).await.unwrap();
    let jkt: Vec<String> = pending
        .url
        .query_pairs()
        .filter(|(k, _)| k == "dpop_jkt")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(jkt, [key.thumbprint()], "dpop_jkt in {}", pending.url);
    let callback = s.authorize(&pending).await;
    let first = c
        .exchange_code(&pending, &callback)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.log()));
    assert_bound(&first, &key);
    let rt1 = first.refresh_token.clone().expect("refresh token");
    if let Some(t) = s.testkit() {
        assert_eq!(t.stats().grants.authorization_code, 1);
    }

    let second = c
        .refresh(&rt1, &params)
        .await
        .unwrap_or_else(|e| panic!("{e:?}\n{}", s.log()));
    assert_bound(&second, &key);
    let rt2 = second.refresh_token.clone().unwrap();
    assert!(!rt2.ct_eq(&rt1), "both servers rotate refresh tokens");

    // The rotated refresh token is bound to the same key too.
    let third = c.refresh(&rt2, &params).await.unwrap();
    assert_bound(&third, &key);
    let rt3 = third.refresh_token.clone().unwrap();
    if let Some(t) = s.testkit() {
        assert_eq!(t.stats().grants.refresh_token, 2);
    }

    // Another key cannot use the bound refresh token.
    let thief = client(
        s.issuer(),
        PUBLIC.id,
        PUBLIC.auth(),
        Some(&DpopKey::generate()),
    )
    .await;
    let err = thief.refresh(&rt3, &params).await.unwrap_err();
    assert!(matches!(err, Error::ReauthorizationRequired(_)), "{err:?}");
}
