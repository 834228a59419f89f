//! Delegation to child agents (RFC 8693 token exchange): narrowing, binding, act chains and
//! widening against both servers (`scenarios`, see `support::servers`), lifetimes, renewal,
//! revocation and audit events against the embedded server (`testkit_flows`).

mod scenarios;
mod testkit_flows;
mod verified;

use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::prelude::{ath, AccessToken, DpopKey};

/// Call `url` by hand with `token` as a DPoP token and a proof signed by `key` (not
/// necessarily the key the token is bound to). Returns the status and the body.
pub(crate) async fn call_with_key(
    url: &str,
    token: &AccessToken,
    key: &DpopKey,
    nonce: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let proof = key
        .proof(
            "GET",
            &url::Url::parse(url).unwrap(),
            iat,
            nonce,
            Some(&ath(token.secret())),
        )
        .unwrap();
    let resp = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("DPoP {}", token.secret()))
        .header("dpop", proof)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    )
}

pub(crate) fn json(resp: &crate::support::prelude::HttpResponse) -> serde_json::Value {
    serde_json::from_slice(resp.body()).expect("json body")
}
