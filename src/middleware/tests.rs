use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::dpop::testing::{self, fast_transport};
use crate::event::AgentEvent;
use crate::ClientAuth;

async fn agent(s: &testing::Scripted, upgrade: bool, rejected: Arc<AtomicUsize>) -> Agent {
    Agent::builder()
        .issuer(&s.base)
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("secret"))
        .scope("read")
        .resource(format!("{}/scoped", s.base))
        .allow_scope_upgrade(upgrade)
        .transport_config(fast_transport())
        .on_event(move |e| {
            if matches!(e, AgentEvent::TokenRejected { error, .. } if error == "insufficient_scope")
            {
                rejected.fetch_add(1, Ordering::SeqCst);
            }
        })
        .build()
        .await
        .expect("agent")
}

#[tokio::test]
async fn middleware_insufficient_scope_is_handled_like_the_agent() {
    for upgrade in [true, false] {
        let s = testing::start().await;
        let rejected = Arc::new(AtomicUsize::new(0));
        let agent = agent(&s, upgrade, rejected.clone()).await;
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(AgentMiddleware::new(agent))
            .build();
        let resp = client
            .get(format!("{}/scoped", s.base))
            .send()
            .await
            .expect("send");
        // The rejection is an audit event, as for the agent's own requests.
        assert_eq!(rejected.load(Ordering::SeqCst), 1, "{upgrade}");
        if upgrade {
            // One more token, with the union of the scopes, and one replay.
            assert_eq!(resp.status(), 200);
            assert_eq!(s.nonces("/scoped").len(), 2);
            assert_eq!(s.nonces("/token").len(), 3);
        } else {
            assert_eq!(resp.status(), 403);
            assert_eq!(s.nonces("/scoped").len(), 1);
        }
    }
}

#[test]
fn middleware_replay_copy_keeps_method_headers_version_timeout_and_body() {
    let url = url::Url::parse("https://api.example/v1/items?q=1").unwrap();
    let mut req = reqwest::Request::new(http::Method::DELETE, url.clone());
    req.headers_mut()
        .insert("x-request-id", http::HeaderValue::from_static("abc"));
    *req.version_mut() = http::Version::HTTP_2;
    *req.timeout_mut() = Some(std::time::Duration::from_secs(7));
    let copy = Spare::First(req.try_clone().unwrap())
        .copy()
        .unwrap()
        .into_request(&url);
    assert!(matches!(
        Spare::First(req.try_clone().unwrap()).copy(),
        Some(Spare::Copy(Replay::Bodyless { .. }))
    ));
    assert_eq!(copy.method(), http::Method::DELETE);
    assert_eq!(copy.url(), &url);
    assert_eq!(copy.headers(), req.headers());
    assert_eq!(copy.version(), http::Version::HTTP_2);
    assert_eq!(copy.timeout(), Some(&std::time::Duration::from_secs(7)));

    // Without a timeout, none is set on the copy.
    let plain = reqwest::Request::new(http::Method::GET, url.clone());
    assert_eq!(
        Spare::First(plain)
            .copy()
            .unwrap()
            .into_request(&url)
            .timeout(),
        None
    );

    // A body that can be replayed is copied with the request.
    let mut post = reqwest::Request::new(http::Method::POST, url.clone());
    *post.body_mut() = Some(reqwest::Body::from("payload"));
    let copy = Spare::First(post).copy().unwrap().into_request(&url);
    assert_eq!(
        copy.body().and_then(reqwest::Body::as_bytes),
        Some(&b"payload"[..])
    );

    // A streaming body cannot be replayed.
    let stream = futures_util_stream();
    let mut streaming = reqwest::Request::new(http::Method::POST, url.clone());
    *streaming.body_mut() = Some(reqwest::Body::wrap_stream(stream));
    assert!(Spare::First(streaming).copy().is_none());
}

#[test]
fn middleware_first_attempt_keeps_the_request_as_it_came() {
    let url = url::Url::parse("https://api.example/v1/items").unwrap();
    let mut req = reqwest::Request::new(http::Method::PATCH, url.clone());
    req.headers_mut()
        .insert("x-request-id", http::HeaderValue::from_static("abc"));
    *req.version_mut() = http::Version::HTTP_11;
    *req.timeout_mut() = Some(std::time::Duration::from_secs(3));
    let headers = req.headers().clone();
    // The first attempt sends the request itself (not rebuilt on the call's URL: another URL
    // given here is ignored); its replay copy, made first, is its parts.
    let spare = Spare::First(req);
    assert!(matches!(
        spare.copy(),
        Some(Spare::Copy(Replay::Bodyless { .. }))
    ));
    let other = url::Url::parse("https://other.example/").unwrap();
    let first = spare.into_request(&other);
    assert_eq!(first.method(), http::Method::PATCH);
    assert_eq!(first.url(), &url);
    assert_eq!(first.headers(), &headers);
    assert_eq!(first.version(), http::Version::HTTP_11);
    assert_eq!(first.timeout(), Some(&std::time::Duration::from_secs(3)));
    assert!(first.body().is_none());

    // With a body (a streaming one included, which cannot be copied): the request itself.
    let mut streaming = reqwest::Request::new(http::Method::POST, url.clone());
    *streaming.body_mut() = Some(reqwest::Body::wrap_stream(futures_util_stream()));
    let spare = Spare::First(streaming);
    assert!(spare.copy().is_none());
    let first = spare.into_request(&url);
    assert_eq!(first.method(), http::Method::POST);
    assert!(first.body().is_some());
}

/// A chain that never answers.
struct Stall;

#[async_trait::async_trait]
impl Middleware for Stall {
    async fn handle(
        &self,
        _req: reqwest::Request,
        _extensions: &mut Extensions,
        _next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn middleware_deadline_bounds_a_chain_that_never_answers() {
    let s = testing::start().await;
    let deadline = std::time::Duration::from_millis(400);
    let agent = Agent::builder()
        .issuer(&s.base)
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("secret"))
        .scope("read")
        .resource(format!("{}/scoped", s.base))
        .transport_config(crate::transport::TransportConfig {
            deadline,
            ..fast_transport()
        })
        .build()
        .await
        .expect("agent");
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AgentMiddleware::new(agent))
        .with(Stall)
        .build();
    let started = std::time::Instant::now();
    // Bounded from outside too, so that a deadline that does not hold fails the test.
    let err = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        client.get(format!("{}/scoped", s.base)).send(),
    )
    .await
    .expect("the agent's deadline ends the call")
    .expect_err("the chain never answers");
    let elapsed = started.elapsed();
    let reqwest_middleware::Error::Middleware(e) = err else {
        panic!("not the agent's error: {err:?}");
    };
    assert!(
        matches!(e.downcast_ref::<Error>(), Some(Error::Timeout(d)) if *d == deadline),
        "{e:?}"
    );
    // The token was fetched inside the same deadline; generous slack for a loaded machine.
    assert!(elapsed >= deadline, "{elapsed:?}");
    assert!(elapsed < std::time::Duration::from_secs(5), "{elapsed:?}");
}

fn futures_util_stream(
) -> impl futures_core::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static
{
    struct Once(Option<bytes::Bytes>);
    impl futures_core::Stream for Once {
        type Item = Result<bytes::Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.take().map(Ok))
        }
    }
    Once(Some(bytes::Bytes::from_static(b"chunk")))
}

/// Records, for each attempt the agent sends through it, the caller's extension and how many
/// attempts before it left their mark in the extensions.
#[derive(Clone, Default)]
struct ExtensionProbe(Arc<std::sync::Mutex<Vec<Seen>>>);

/// One attempt's view: the caller's mark, and the attempts before it.
type Seen = (Option<u32>, u32);

#[derive(Clone)]
struct CallerMark(u32);

#[derive(Clone)]
struct Attempts(u32);

#[async_trait::async_trait]
impl Middleware for ExtensionProbe {
    async fn handle(
        &self,
        req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let mark = extensions.get::<CallerMark>().map(|m| m.0);
        let before = extensions.get::<Attempts>().map_or(0, |a| a.0);
        self.0.lock().unwrap().push((mark, before));
        extensions.insert(Attempts(before + 1));
        next.run(req, extensions).await
    }
}

#[tokio::test]
async fn middleware_extensions_reach_every_attempt_and_keep_what_attempts_added() {
    let s = testing::start().await;
    let agent = agent(&s, true, Arc::new(AtomicUsize::new(0))).await;
    let probe = ExtensionProbe::default();
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(AgentMiddleware::new(agent))
        .with(probe.clone())
        .build();
    let resp = client
        .get(format!("{}/scoped", s.base))
        .with_extension(CallerMark(7))
        .send()
        .await
        .expect("send");
    // The scope upgrade replays the request: both attempts see the caller's extension, and
    // the second sees what the first added.
    assert_eq!(resp.status(), 200);
    assert_eq!(*probe.0.lock().unwrap(), vec![(Some(7), 0), (Some(7), 1)]);
}

mod plain;
