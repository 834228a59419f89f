//! The nonce retry against scripted answers (no network): the sender records what each
//! answer says about its origin, as the transport's observer does.

use std::sync::Mutex;

use bytes::Bytes;

use super::*;
use crate::transport::origin::OriginObserver as _;

fn url() -> Url {
    Url::parse("https://rs.example/data").unwrap()
}

fn answer(status: u16, nonce: Option<&str>, www: Option<&str>, body: &str) -> HttpResponse {
    let mut b = http::Response::builder().status(status);
    if let Some(n) = nonce {
        b = b.header("dpop-nonce", n);
    }
    if let Some(w) = www {
        b = b.header("www-authenticate", w);
    }
    if !body.is_empty() {
        b = b.header("content-type", "application/json");
    }
    b.body(Bytes::from(body.to_owned())).unwrap()
}

const AS_NONCE: &str = r#"{"error":"use_dpop_nonce"}"#;
const RS_NONCE: &str = r#"DPoP error="use_dpop_nonce""#;

/// Run the retry over `script`; returns the final status and the nonce each proof carried.
async fn run(
    nonces: &NonceCache,
    dpop: bool,
    replayable: bool,
    script: Vec<HttpResponse>,
) -> (u16, Vec<Option<String>>) {
    let url = url();
    let script = Mutex::new(script.into_iter());
    let used = Mutex::new(Vec::new());
    let slot = NonceSlot::new(&url, NonceRole::Resource);
    let answered = send_with_nonce_retry(
        nonces,
        &slot,
        dpop,
        || replayable,
        |nonce| {
            used.lock()
                .unwrap()
                .push(nonce.current().map(|n| n.to_string()));
            let resp = script.lock().unwrap().next().expect("script exhausted");
            nonces.observe(&url, &OriginFacts::of(&resp));
            async move { Ok(resp) }
        },
    )
    .await
    .unwrap();
    let status = answered.response.status().as_u16();
    assert_eq!(answered.error.is_some(), status >= 400);
    (status, used.into_inner().unwrap())
}

#[tokio::test]
async fn nonce_retry_as_400_json_then_success() {
    let c = NonceCache::new();
    let (status, used) = run(
        &c,
        true,
        true,
        vec![
            answer(400, Some("n1"), None, AS_NONCE),
            answer(200, Some("n2"), None, ""),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(used, vec![None, Some("n1".into())]);
    // Nonces on successful answers are remembered too.
    assert_eq!(c.get(&url()).as_deref(), Some("n2"));
}

#[tokio::test]
async fn nonce_retry_resource_401_and_400_then_success() {
    for status in [401, 400] {
        let c = NonceCache::new();
        let (end, used) = run(
            &c,
            true,
            true,
            vec![
                answer(status, Some("r1"), Some(RS_NONCE), ""),
                answer(200, None, None, ""),
            ],
        )
        .await;
        assert_eq!(end, 200, "{status}");
        assert_eq!(used, vec![None, Some("r1".into())]);
    }
}

#[tokio::test]
async fn nonce_unchanged_is_not_retried() {
    let c = NonceCache::new();
    c.set(&url(), "n1");
    let (status, used) = run(
        &c,
        true,
        true,
        vec![answer(401, Some("n1"), Some(RS_NONCE), "")],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(used, vec![Some("n1".into())]);
    // No nonce at all on the refusal: nothing to retry with either.
    let c = NonceCache::new();
    let (status, used) = run(&c, true, true, vec![answer(400, None, None, AS_NONCE)]).await;
    assert_eq!((status, used.len()), (400, 1));
}

#[tokio::test]
async fn nonce_server_demanding_new_nonces_gets_one_retry() {
    let c = NonceCache::new();
    let (status, used) = run(
        &c,
        true,
        true,
        vec![
            answer(400, Some("n1"), None, AS_NONCE),
            answer(400, Some("n2"), None, AS_NONCE),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(used.len(), 2);
    // The failed retry's nonce is kept for the next request.
    assert_eq!(c.get(&url()).as_deref(), Some("n2"));
}

#[tokio::test]
async fn nonce_no_retry_for_bearer_or_unreplayable_requests() {
    for (dpop, replayable) in [(false, true), (true, false)] {
        let c = NonceCache::new();
        let (status, used) = run(
            &c,
            dpop,
            replayable,
            vec![answer(401, Some("r1"), Some(RS_NONCE), "")],
        )
        .await;
        assert_eq!((status, used.len()), (401, 1), "{dpop} {replayable}");
        assert_eq!(c.get(&url()).as_deref(), Some("r1"));
    }
}

#[tokio::test]
async fn nonce_proof_reads_the_nonce_current_at_each_transport_attempt() {
    // A sender that retries itself (as the transport does on a 503) signs each proof with the
    // nonce current at that attempt, and the retry decision compares against the last one.
    let c = NonceCache::new();
    let url = url();
    let used = Mutex::new(Vec::new());
    let slot = NonceSlot::new(&url, NonceRole::Resource);
    let answered = send_with_nonce_retry(
        &c,
        &slot,
        true,
        || true,
        |nonce| {
            let first = answer(503, Some("n1"), None, "");
            c.observe(&url, &OriginFacts::of(&first));
            used.lock()
                .unwrap()
                .push(nonce.current().map(|n| n.to_string()));
            let second = answer(401, Some("n1"), Some(RS_NONCE), "");
            async move { Ok(second) }
        },
    )
    .await
    .unwrap();
    // The 401 brought the nonce the second transport attempt already carried: no retry.
    assert_eq!(answered.response.status(), 401);
    assert_eq!(used.into_inner().unwrap(), vec![Some("n1".into())]);
}

#[test]
fn dpop_proof_nonce_names_the_origin_of_its_url_for_both_roles() {
    let nonces = NonceCache::new();
    for u in [
        "https://rs.example/data",
        "http://127.0.0.1:8080/a?b",
        "https://[::1]:9/x",
    ] {
        let url = Url::parse(u).unwrap();
        for role in [NonceRole::Resource, NonceRole::AuthorizationServer] {
            let slot = NonceSlot::new(&url, role);
            let n = ProofNonce::new(&nonces, &slot);
            assert_eq!(n.origin(), &*OriginKey::of(&url), "{u} {role:?}");
        }
    }
    // The nonce it reads is the one stored for its origin and role.
    let url = url();
    nonces.set(&url, "rs-nonce");
    nonces.set_token_endpoint_nonce(&url, "as-nonce");
    let (rs, at) = (
        NonceSlot::new(&url, NonceRole::Resource),
        NonceSlot::new(&url, NonceRole::AuthorizationServer),
    );
    let (rs, at) = (ProofNonce::new(&nonces, &rs), ProofNonce::new(&nonces, &at));
    assert_eq!(rs.current().as_deref(), Some("rs-nonce"));
    assert_eq!(at.current().as_deref(), Some("as-nonce"));
    assert_eq!(rs.used().as_deref(), Some("rs-nonce"));
}
