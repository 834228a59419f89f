//! The plain path ([`call`](super::super::call)): a later call with a cached token goes out
//! directly, and an answer that does not end the call is handed to the protected-call loop,
//! which treats it as its own first attempt's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::*;
use crate::dpop::testing::proof_nonce;

/// One scripted answer of the resource: status, `WWW-Authenticate`, `DPoP-Nonce`.
type Answer = (u16, Option<&'static str>, Option<&'static str>);

#[derive(Default)]
struct Script {
    /// The resource's next answers (then 200).
    answers: VecDeque<Answer>,
    /// Each resource request: its `Authorization` and the nonce its proof carried.
    seen: Vec<(String, Option<String>)>,
    /// The scope of each token request.
    tokens: Vec<String>,
}

type Shared = Arc<Mutex<Script>>;

/// An authorization server issuing `token_type` tokens `at-0`, `at-1`, ... with the scope
/// asked, and the scripted resource `/r`, on one origin.
async fn start(token_type: &'static str) -> (String, Shared) {
    let (listener, base, app) = crate::dpop::testing::listen().await;
    let shared = Shared::default();
    let (s1, s2) = (shared.clone(), shared.clone());
    let app = app
        .route(
            "/token",
            axum::routing::post(move |body: String| async move {
                let scope = url::form_urlencoded::parse(body.as_bytes())
                    .find(|(k, _)| k == "scope")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let n = {
                    let mut s = crate::sync::lock(&s1);
                    s.tokens.push(scope.clone());
                    s.tokens.len() - 1
                };
                axum::Json(serde_json::json!({
                    "access_token": format!("at-{n}"),
                    "token_type": token_type,
                    "expires_in": 300,
                    "scope": scope,
                }))
            }),
        )
        .route(
            "/r",
            axum::routing::any(move |headers: HeaderMap| async move {
                let (status, challenge, nonce) = {
                    let mut s = crate::sync::lock(&s2);
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    s.seen.push((auth, proof_nonce(&headers)));
                    s.answers.pop_front().unwrap_or((200, None, None))
                };
                let mut r: Response =
                    (StatusCode::from_u16(status).expect("status"), "r").into_response();
                if let Some(c) = challenge {
                    r.headers_mut()
                        .insert("www-authenticate", c.parse().expect("header"));
                }
                if let Some(n) = nonce {
                    r.headers_mut()
                        .insert("dpop-nonce", n.parse().expect("header"));
                }
                r
            }),
        );
    tokio::spawn(async move {
        axum::serve(listener, app).await.ok();
    });
    (base, shared)
}

struct Run {
    client: reqwest_middleware::ClientWithMiddleware,
    url: String,
    shared: Shared,
    rejected: Arc<Mutex<Vec<String>>>,
}

impl Run {
    async fn new(token_type: &'static str) -> Self {
        let (base, shared) = start(token_type).await;
        let rejected = Arc::new(Mutex::new(Vec::new()));
        let seen = rejected.clone();
        let agent = Agent::builder()
            .issuer(&base)
            .client_id("agent")
            .client_auth(ClientAuth::client_secret("secret"))
            .scope("read")
            .resource(format!("{base}/r"))
            .allow_scope_upgrade(true)
            .dpop_mode(if token_type == "DPoP" {
                crate::DpopMode::Auto
            } else {
                crate::DpopMode::Off
            })
            .transport_config(fast_transport())
            .on_event(move |e| {
                if let AgentEvent::TokenRejected { error, .. } = e {
                    crate::sync::lock(&seen).push(error.clone());
                }
            })
            .build()
            .await
            .expect("agent");
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AgentMiddleware::new(agent))
            .build();
        Run {
            client,
            url: format!("{base}/r"),
            shared,
            rejected,
        }
    }

    /// Script the resource's next answers, make one call, and return its status, the
    /// requests it made (their `Authorization` and proof nonce) and the tokens it fetched.
    async fn call(&self, answers: &[Answer]) -> (u16, Vec<(String, Option<String>)>, usize) {
        let (requests, tokens) = {
            let mut s = crate::sync::lock(&self.shared);
            s.answers.extend(answers.iter().copied());
            (s.seen.len(), s.tokens.len())
        };
        let resp = self.client.get(&self.url).send().await.expect("send");
        let s = crate::sync::lock(&self.shared);
        assert!(s.answers.is_empty(), "every scripted answer was asked for");
        (
            resp.status().as_u16(),
            s.seen[requests..].to_vec(),
            s.tokens.len() - tokens,
        )
    }

    fn rejected(&self) -> Vec<String> {
        crate::sync::lock(&self.rejected).clone()
    }
}

fn sent(auth: &str, nonce: Option<&str>) -> (String, Option<String>) {
    (auth.to_owned(), nonce.map(str::to_owned))
}

#[tokio::test]
async fn middleware_plain_path_hands_dpop_answers_that_need_the_loop_to_it() {
    let run = Run::new("DPoP").await;
    // The first call fetches the token; the resource sends no nonce.
    assert_eq!(run.call(&[]).await, (200, vec![sent("DPoP at-0", None)], 1));
    // A later call: one request with the cached token, no token request.
    assert_eq!(run.call(&[]).await, (200, vec![sent("DPoP at-0", None)], 0));

    // The resource starts asking for a nonce: the loop retries once, with it.
    let challenge = Some(r#"DPoP error="use_dpop_nonce""#);
    assert_eq!(
        run.call(&[(401, challenge, Some("n1"))]).await,
        (
            200,
            vec![sent("DPoP at-0", None), sent("DPoP at-0", Some("n1"))],
            0
        )
    );
    // The same nonce refused again: the proof carried it, so no retry (the loop knows what
    // the first attempt signed with).
    assert_eq!(
        run.call(&[(401, challenge, Some("n1"))]).await,
        (401, vec![sent("DPoP at-0", Some("n1"))], 0)
    );
    // A resource answering 400 with a new nonce (as some do): retried with it.
    assert_eq!(
        run.call(&[(400, challenge, Some("n2"))]).await,
        (
            200,
            vec![sent("DPoP at-0", Some("n1")), sent("DPoP at-0", Some("n2"))],
            0
        )
    );

    // invalid_token: the token the first attempt carried is renewed once, the call replayed.
    let invalid = Some(r#"DPoP error="invalid_token""#);
    assert_eq!(
        run.call(&[(401, invalid, None)]).await,
        (
            200,
            vec![sent("DPoP at-0", Some("n2")), sent("DPoP at-1", Some("n2"))],
            1
        )
    );
    // insufficient_scope: a token with the union of the scopes, the call replayed.
    let scope = Some(r#"DPoP error="insufficient_scope", scope="read write""#);
    assert_eq!(
        run.call(&[(403, scope, None)]).await,
        (
            200,
            vec![sent("DPoP at-1", Some("n2")), sent("DPoP at-2", Some("n2"))],
            1
        )
    );
    assert_eq!(crate::sync::lock(&run.shared).tokens[2], "read write");
    // Each rejection is reported once, as on the loop's own attempts.
    assert_eq!(
        run.rejected(),
        ["use_dpop_nonce", "invalid_token", "insufficient_scope"]
    );

    // Answers naming no OAuth error end the call as they are: one request each.
    for status in [404, 500, 302] {
        let (got, requests, tokens) = run.call(&[(status, None, None)]).await;
        assert_eq!((got, requests.len(), tokens), (status, 1, 0), "{status}");
    }
    // A 403 without a challenge is handed back too (after the loop's look at it).
    assert_eq!(run.call(&[(403, None, None)]).await.0, 403);
    assert_eq!(run.rejected().len(), 3);
}

#[tokio::test]
async fn middleware_plain_path_hands_bearer_rejections_to_the_loop() {
    let run = Run::new("Bearer").await;
    assert_eq!(
        run.call(&[]).await,
        (200, vec![sent("Bearer at-0", None)], 1)
    );
    assert_eq!(
        run.call(&[]).await,
        (200, vec![sent("Bearer at-0", None)], 0)
    );
    let invalid = Some(r#"Bearer error="invalid_token""#);
    assert_eq!(
        run.call(&[(401, invalid, None)]).await,
        (
            200,
            vec![sent("Bearer at-0", None), sent("Bearer at-1", None)],
            1
        )
    );
    // A nonce asked of a Bearer token is no cue to retry: the answer is handed back.
    let nonce = Some(r#"Bearer error="use_dpop_nonce""#);
    assert_eq!(
        run.call(&[(401, nonce, Some("n1"))]).await,
        (401, vec![sent("Bearer at-1", None)], 0)
    );
    let scope = Some(r#"Bearer error="insufficient_scope", scope="read write""#);
    assert_eq!(
        run.call(&[(403, scope, None)]).await,
        (
            200,
            vec![sent("Bearer at-1", None), sent("Bearer at-2", None)],
            1
        )
    );
    assert_eq!(
        run.rejected(),
        ["invalid_token", "use_dpop_nonce", "insufficient_scope"]
    );
}
