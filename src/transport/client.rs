//! The reqwest client, its limits, and the retry loop.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder as _;
use bytes::BytesMut;
use rand::Rng as _;
use url::Url;

pub use super::config::TransportConfig;
use super::origin::{OriginFacts, OriginObserver};
pub(crate) use super::outgoing::Outgoing;
use super::retry::{parse_retry_after, Decision, RetryPolicy};
use super::secure_url::check_url;
pub(crate) use super::stream::{into_streaming, BodyMode};
use super::stream::{unread, StreamingResponse};
use super::{HttpRequest, HttpResponse};
use crate::clock::{Clock, ClockOffset, ClockSkew, SystemClock};
use crate::deadline::Within;
use crate::error::{Error, Result, TransportErrorKind};
use crate::event::{AgentEvent, EventHook};

/// The HTTP client of an agent. Cheap to clone (`Arc` inside).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: reqwest::Client,
    config: TransportConfig,
    skew: ClockSkew,
    /// `x5t#S256` of the client certificate this transport presents, if any.
    client_x5t: Option<String>,
    /// One estimate per origin: an authorization server and a resource can disagree.
    origin_clocks: super::origin::OriginClocks,
    clock: Arc<dyn Clock>,
    /// Where transport-level events (an ignored clock offset) go, once an agent sets it.
    events: std::sync::OnceLock<EventHook>,
}

impl HttpTransport {
    /// A transport with the default configuration.
    ///
    /// # Errors
    /// [`Error::Config`] when the TLS backend cannot be initialised.
    pub fn new() -> Result<Self> {
        Self::with_config(TransportConfig::default())
    }

    /// A transport with the given configuration.
    ///
    /// # Errors
    /// [`Error::Config`] when the TLS backend cannot be initialised.
    pub fn with_config(config: TransportConfig) -> Result<Self> {
        Self::build(config, Arc::new(SystemClock), |b| b)
    }

    /// A transport that presents `identity` as its TLS client certificate (RFC 8705), trusting
    /// the built-in roots.
    ///
    /// The identity is fixed for the transport's life. To rotate the certificate, build a new
    /// transport (a new connection pool) and drop tokens bound to the old
    /// [`thumbprint`](crate::ClientIdentity::thumbprint).
    ///
    /// # Errors
    /// [`Error::Crypto`] when the TLS stack refuses the identity; [`Error::Config`] when the
    /// client cannot be built.
    #[cfg(feature = "mtls")]
    pub fn with_identity(
        config: TransportConfig,
        identity: &crate::transport::tls::ClientIdentity,
    ) -> Result<Self> {
        Self::with_tls(
            config,
            Some(identity),
            &crate::transport::tls::TrustRoots::new(),
        )
    }

    /// A transport with an optional TLS client identity and extra trust roots (private PKI).
    /// Server certificates are always verified. See [`with_identity`](Self::with_identity)
    /// for rotation.
    ///
    /// # Errors
    /// As [`with_identity`](Self::with_identity).
    #[cfg(feature = "mtls")]
    pub fn with_tls(
        config: TransportConfig,
        identity: Option<&crate::transport::tls::ClientIdentity>,
        roots: &crate::transport::tls::TrustRoots,
    ) -> Result<Self> {
        let x5t = identity.map(|i| i.thumbprint().to_owned());
        let identity = identity.map(|i| i.to_reqwest_identity()).transpose()?;
        let (extra_roots, builtin_roots) = roots.to_reqwest()?;
        let mut transport = Self::build(config, Arc::new(SystemClock), move |mut b| {
            for root in extra_roots {
                b = b.add_root_certificate(root);
            }
            b = b.tls_built_in_root_certs(builtin_roots);
            match identity {
                Some(id) => b.identity(id),
                None => b,
            }
        })?;
        if let Some(inner) = Arc::get_mut(&mut transport.inner) {
            inner.client_x5t = x5t;
        }
        Ok(transport)
    }

    /// Build with a clock and a hook to adjust the reqwest builder (client identities, roots).
    pub(crate) fn build(
        config: TransportConfig,
        clock: Arc<dyn Clock>,
        customize: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self> {
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .user_agent(config.user_agent.clone());
        let client = customize(builder)
            .build()
            .map_err(|e| Error::config(format!("cannot build HTTP client: {e}")))?;
        Ok(HttpTransport {
            inner: Arc::new(Inner {
                client,
                config,
                skew: ClockSkew::new(),
                client_x5t: None,
                origin_clocks: super::origin::OriginClocks::default(),
                clock,
                events: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// The estimated clock offset of the server seen last, learnt from `Date` headers (for
    /// diagnosis: requests use the offset of their own origin, see
    /// [`server_time`](Self::server_time)).
    pub fn clock_skew(&self) -> ClockOffset {
        self.inner.skew.offset()
    }

    /// The estimated clock offset of `url`'s origin, if a response from it carried `Date`.
    pub fn clock_skew_for(&self, url: &Url) -> Option<ClockOffset> {
        self.inner
            .origin_clocks
            .offset(&super::origin::OriginKey::of(url))
    }

    /// Now, as `url`'s server reads its clock: corrected by that origin's offset when known,
    /// else our own clock. Another origin's offset is never used: one server's `Date` must not
    /// set the times of proofs and assertions sent to another.
    pub fn server_time(&self, url: &Url) -> std::time::SystemTime {
        self.server_time_at(&super::origin::OriginKey::of(url))
    }

    /// [`server_time`](Self::server_time) for an origin's key (`OriginKey::of`), when the
    /// caller has it already.
    pub(crate) fn server_time_at(&self, origin_key: &str) -> std::time::SystemTime {
        let now = self.inner.clock.now();
        match self.inner.origin_clocks.offset(origin_key) {
            Some(o) => o.to_server(now),
            None => now,
        }
    }

    /// Send transport events (an ignored clock offset) to `hook` as well as to `tracing`.
    /// The first hook set stays.
    pub(crate) fn set_event_hook(&self, hook: EventHook) {
        let _ = self.inner.events.set(hook);
    }

    fn observe_date(&self, url: &Url, server_date: std::time::SystemTime) {
        let now = self.inner.clock.now();
        let offset_ms = crate::clock::offset_ms(server_date, now);
        if !crate::clock::within_bound(offset_ms) {
            let origin = url.origin().ascii_serialization();
            let offset_secs = offset_ms / 1000;
            tracing::warn!(
                target: "agent_oauth",
                %origin,
                offset_secs,
                "ignoring a Date header further than a day from the local clock"
            );
            EventHook::emit(
                self.inner.events.get(),
                AgentEvent::ClockOffsetIgnored {
                    origin,
                    offset_secs,
                },
            );
            return;
        }
        self.inner.skew.observe_offset_ms(offset_ms);
        self.inner.origin_clocks.observe(url, offset_ms);
    }

    /// `x5t#S256` of the client certificate this transport presents, if any.
    pub fn client_certificate_thumbprint(&self) -> Option<&str> {
        self.inner.client_x5t.as_deref()
    }

    /// The injected clock.
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Check a URL against the transport's HTTPS policy.
    pub(crate) fn check(&self, url: &Url) -> Result<()> {
        check_url(url, self.inner.config.allow_insecure_http)
    }

    /// Send a request built by `make`, retrying as `policy` allows within the deadline.
    ///
    /// `make` is called once per attempt, so each attempt can carry fresh single-use material
    /// (a DPoP proof `jti`, a client assertion). Every response is returned, whatever its status;
    /// only transport failures are errors.
    ///
    /// # Errors
    /// [`Error::InsecureUrl`], [`Error::Transport`], [`Error::Timeout`], [`Error::BodyTooLarge`],
    /// or whatever `make` returns.
    pub async fn execute<F>(&self, policy: RetryPolicy, make: F) -> Result<HttpResponse>
    where
        F: FnMut() -> Result<HttpRequest> + Send,
    {
        self.execute_observed(policy, make, |_, _| {}).await
    }

    /// As [`execute`](Self::execute), and `observe` sees the URL and headers of every response,
    /// including those of attempts that were retried (a `DPoP-Nonce` on a 503 still counts).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn execute_observed<F, O>(
        &self,
        policy: RetryPolicy,
        mut make: F,
        observe: O,
    ) -> Result<HttpResponse>
    where
        F: FnMut() -> Result<HttpRequest> + Send,
        O: Fn(&Url, &http::HeaderMap) + Send + Sync,
    {
        let observe = |u: &Url, r: &HttpResponse| observe(u, r.headers());
        let mut make = || make().and_then(Outgoing::from_http);
        self.execute_deadline(policy, &mut make, &observe, BodyMode::Read)
            .await
    }

    /// As [`execute`](Self::execute), and `observer` learns what every response (retried
    /// attempts included) says about its origin: the facts the transport reads once per
    /// response ([`OriginFacts`]), also attached to the response returned.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub(crate) async fn execute_for<F>(
        &self,
        policy: RetryPolicy,
        make: F,
        observer: &dyn OriginObserver,
    ) -> Result<HttpResponse>
    where
        F: FnMut() -> Result<HttpRequest> + Send,
    {
        self.execute_with(policy, make, observer, BodyMode::Read)
            .await
    }

    /// [`execute_for`](Self::execute_for) or [`execute_for_stream`](Self::execute_for_stream),
    /// as `mode` says.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub(crate) async fn execute_with<F>(
        &self,
        policy: RetryPolicy,
        mut make: F,
        observer: &dyn OriginObserver,
        mode: BodyMode,
    ) -> Result<HttpResponse>
    where
        F: FnMut() -> Result<HttpRequest> + Send,
    {
        let observe = |u: &Url, r: &HttpResponse| observer.observe(u, &OriginFacts::of(r));
        let mut make = || make().and_then(Outgoing::from_http);
        self.execute_deadline(policy, &mut make, &observe, mode)
            .await
    }

    /// As [`execute_with`](Self::execute_with), for requests built as [`Outgoing`] by a caller
    /// that bounds the whole call by the transport's deadline itself
    /// (`session::within_deadline`): no deadline timer of its own.
    ///
    /// # Errors
    /// As [`execute`](Self::execute), but for [`Error::Timeout`], which is the caller's.
    pub(crate) async fn execute_outgoing<F>(
        &self,
        policy: RetryPolicy,
        mut make: F,
        observer: &dyn OriginObserver,
        mode: BodyMode,
    ) -> Result<HttpResponse>
    where
        F: FnMut() -> Result<Outgoing> + Send,
    {
        let observe = |u: &Url, r: &HttpResponse| observer.observe(u, &OriginFacts::of(r));
        self.execute_inner(policy, &mut make, &observe, mode).await
    }

    /// Send a request as [`execute`](Self::execute) does (same retries, backoff and observed
    /// responses), and hand a successful (2xx) response's body over unread, to be read as it
    /// arrives with no size cap: MCP Streamable HTTP answers with `text/event-stream`
    /// ([`BodyStream::sse`](super::BodyStream::sse)).
    ///
    /// Error responses (non-2xx) are read whole under
    /// [`max_body_bytes`](TransportConfig::max_body_bytes) as with `execute`, and returned as
    /// a one-chunk body. For a successful response, the
    /// [`request_timeout`](TransportConfig::request_timeout) and the
    /// [`deadline`](TransportConfig::deadline) end when the headers arrive; a body that then
    /// goes silent for [`stream_idle_timeout`](TransportConfig::stream_idle_timeout) ends with
    /// [`Error::Timeout`].
    ///
    /// ```no_run
    /// # async fn run() -> agent_oauth::Result<()> {
    /// use agent_oauth::{transport::RetryPolicy, HttpTransport};
    ///
    /// let transport = HttpTransport::new()?;
    /// let resp = transport
    ///     .execute_stream(RetryPolicy::Never, || {
    ///         Ok(http::Request::get("https://mcp.example/mcp")
    ///             .header("accept", "text/event-stream")
    ///             .body(Vec::new())
    ///             .expect("request"))
    ///     })
    ///     .await?;
    /// let mut events = resp.into_body().sse();
    /// while let Some(event) = events.next_event().await? {
    ///     println!("{}: {}", event.event, event.data);
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`execute`](Self::execute) (a non-2xx body over the cap is [`Error::BodyTooLarge`]).
    pub async fn execute_stream<F>(&self, policy: RetryPolicy, make: F) -> Result<StreamingResponse>
    where
        F: FnMut() -> Result<HttpRequest> + Send,
    {
        let resp = self
            .execute_for_stream(policy, make, &IgnoreOrigins)
            .await?;
        Ok(into_streaming(resp))
    }

    /// As [`execute_for`](Self::execute_for), leaving a 2xx response's body unread (see
    /// [`execute_stream`](Self::execute_stream)): the returned body is then empty, and
    /// [`into_streaming`] takes the unread one.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub(crate) async fn execute_for_stream<F>(
        &self,
        policy: RetryPolicy,
        make: F,
        observer: &dyn OriginObserver,
    ) -> Result<HttpResponse>
    where
        F: FnMut() -> Result<HttpRequest> + Send,
    {
        self.execute_with(policy, make, observer, BodyMode::Stream)
            .await
    }

    async fn execute_deadline<F>(
        &self,
        policy: RetryPolicy,
        make: &mut F,
        observe: &(dyn Fn(&Url, &HttpResponse) + Send + Sync),
        mode: BodyMode,
    ) -> Result<HttpResponse>
    where
        F: FnMut() -> Result<Outgoing> + Send,
    {
        let deadline = self.inner.config.deadline;
        let attempts = self.execute_inner(policy, make, observe, mode);
        match tokio::time::timeout(deadline, attempts).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(deadline)),
        }
    }

    async fn execute_inner<F>(
        &self,
        policy: RetryPolicy,
        make: &mut F,
        observe: &(dyn Fn(&Url, &HttpResponse) + Send + Sync),
        mode: BodyMode,
    ) -> Result<HttpResponse>
    where
        F: FnMut() -> Result<Outgoing> + Send,
    {
        let cfg = &self.inner.config;
        let mut backoff = backon::ExponentialBuilder::default()
            .with_min_delay(cfg.min_backoff)
            .with_max_delay(cfg.max_backoff)
            .with_max_times(cfg.max_attempts.saturating_sub(1))
            .build();
        loop {
            let (outcome, url) = self.send_once(make()?, mode).await;
            if let (Ok(resp), Some(u)) = (&outcome, &url) {
                observe(u, resp);
            }
            let decision = match &outcome {
                Ok(resp) => {
                    let retry_after = resp
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, self.inner.clock.now()));
                    policy.after_status(resp.status().as_u16(), retry_after)
                }
                Err(Error::Transport { kind, .. }) => policy.after_error(
                    *kind == TransportErrorKind::Connect,
                    *kind == TransportErrorKind::Timeout,
                ),
                Err(_) => Decision::Stop,
            };
            let wait = match decision {
                Decision::Stop => return outcome,
                Decision::Retry(server_wait) => {
                    if server_wait.is_some_and(|w| w > cfg.max_retry_after) {
                        return outcome;
                    }
                    let Some(base) = backoff.next() else {
                        return outcome;
                    };
                    // Full jitter: uniform in [0, base], but never sooner than the server asked.
                    let jittered = full_jitter(base);
                    server_wait.map_or(jittered, |w| w.max(jittered))
                }
            };
            tracing::debug!(target: "agent_oauth", ?wait, "retrying request");
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt: check, send, read what the response says about its origin (recording
    /// `Date`), read the body under the cap, or leave it unread (a 2xx in
    /// [`BodyMode::Stream`]). Returns the URL it was sent to with the outcome (none when it
    /// was not sent).
    ///
    /// The attempt is bounded by `request_timeout` up to its body read (or, for a body left
    /// unread, up to the headers): one timer on the stack, where reqwest's own timeout would
    /// box one and grow an extension map on every request.
    async fn send_once(
        &self,
        request: Outgoing,
        mode: BodyMode,
    ) -> (Result<HttpResponse>, Option<Url>) {
        let cfg = &self.inner.config;
        if let Err(e) = self.check(&request.url) {
            return (Err(e), None);
        }
        let (req, url) = request.into_reqwest();
        let attempt = async {
            let resp = self
                .inner
                .client
                .execute(req)
                .await
                .map_err(transport_error)?;
            // What the response says about its origin, read once: the clock offset is recorded
            // here, the nonce by the caller's observer. A nonce travels with the response (an
            // extension); without one there is nothing to carry, and no map to allocate.
            let facts = OriginFacts::parse(resp.headers());
            if let Some(date) = facts.date {
                self.observe_date(&url, date);
            }
            let mut out = if mode == BodyMode::Stream && resp.status().is_success() {
                unread(resp, cfg.stream_idle_timeout)
            } else {
                read_capped(resp, cfg.max_body_bytes).await?
            };
            if facts.dpop_nonce.is_some() {
                out.extensions_mut().insert(facts);
            }
            Ok(out)
        };
        let outcome = Within::new(cfg.request_timeout, attempt, attempt_timeout).await;
        (outcome, Some(url))
    }
}

/// The observer of [`HttpTransport::execute_stream`]: the transport's own bookkeeping (the
/// clock offset) is all there is.
struct IgnoreOrigins;

impl OriginObserver for IgnoreOrigins {
    fn observe(&self, _url: &Url, _facts: &OriginFacts) {}
}

/// An attempt that got no response (or, when reading it, not all its body) within
/// `request_timeout`.
fn attempt_timeout(limit: Duration) -> Error {
    Error::Transport {
        kind: TransportErrorKind::Timeout,
        source: Some(Arc::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no response within {limit:?}"),
        ))),
    }
}

fn full_jitter(base: Duration) -> Duration {
    let nanos = u64::try_from(base.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
}

/// A reqwest failure as [`Error::Transport`], classified, without the URL (it may carry a query).
pub(super) fn transport_error(e: reqwest::Error) -> Error {
    let kind = if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_timeout() {
        TransportErrorKind::Timeout
    } else {
        TransportErrorKind::Other
    };
    Error::Transport {
        kind,
        source: Some(Arc::new(e.without_url())),
    }
}

/// Read the body, refusing it as soon as it passes `limit` (a declared `Content-Length` over the
/// limit is refused before reading anything).
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<HttpResponse> {
    if resp.content_length().is_some_and(|len| len > limit as u64) {
        return Err(Error::BodyTooLarge { limit });
    }
    // A body in one chunk (most) is kept as it came; only a second chunk starts a copy.
    let mut body = resp
        .chunk()
        .await
        .map_err(transport_error)?
        .unwrap_or_default();
    if body.len() > limit {
        return Err(Error::BodyTooLarge { limit });
    }
    if let Some(second) = resp.chunk().await.map_err(transport_error)? {
        let mut copy = BytesMut::with_capacity(body.len() + second.len());
        copy.extend_from_slice(&body);
        let mut next = Some(second);
        while let Some(chunk) = next {
            if copy.len() + chunk.len() > limit {
                return Err(Error::BodyTooLarge { limit });
            }
            copy.extend_from_slice(&chunk);
            next = resp.chunk().await.map_err(transport_error)?;
        }
        body = copy.freeze();
    }
    let mut out = http::Response::new(body);
    *out.status_mut() = resp.status();
    *out.version_mut() = resp.version();
    *out.headers_mut() = std::mem::take(resp.headers_mut());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// A body sent as the chunks a channel receives.
    struct Chunks(tokio::sync::mpsc::Receiver<Bytes>);

    impl futures_core::Stream for Chunks {
        type Item = std::result::Result<Bytes, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx).map(|c| c.map(Ok))
        }
    }

    /// A body of `chunks`, each sent after its delay.
    fn body_of(chunks: Vec<(Duration, Bytes)>) -> axum::body::Body {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for (delay, c) in chunks {
                tokio::time::sleep(delay).await;
                if tx.send(c).await.is_err() {
                    return;
                }
            }
        });
        axum::body::Body::from_stream(Chunks(rx))
    }

    /// A server answering `/n/<k>` with a body in `k` chunks of 100 bytes (byte `i` of chunk `j`
    /// is `j`), and `/slow` with a first chunk at once and the rest after 2 s.
    async fn chunked_server() -> String {
        let router = axum::Router::new()
            .route(
                "/n/{k}",
                axum::routing::get(
                    |axum::extract::Path(k): axum::extract::Path<u8>| async move {
                        body_of(
                            (0..k)
                                .map(|j| (Duration::from_millis(1), Bytes::from(vec![j; 100])))
                                .collect(),
                        )
                    },
                ),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    body_of(vec![
                        (Duration::ZERO, Bytes::from_static(b"part")),
                        (Duration::from_secs(2), Bytes::from_static(b"part")),
                    ])
                }),
            );
        serve(router).await
    }

    #[tokio::test]
    async fn transport_body_in_chunks_is_read_whole_and_capped_across_chunks() {
        let base = chunked_server().await;
        let t = HttpTransport::with_config(fast_config()).expect("transport");
        for k in [0u8, 1, 2, 3, 10] {
            let resp = t
                .execute(RetryPolicy::Idempotent, || get(&format!("{base}/n/{k}")))
                .await
                .expect("response");
            let want: Vec<u8> = (0..k).flat_map(|j| vec![j; 100]).collect();
            assert_eq!(resp.body().as_ref(), &want[..], "{k} chunks");
        }
        // 11 chunks of 100 bytes pass the 1024-byte cap on the 11th.
        let err = t
            .execute(RetryPolicy::Idempotent, || get(&format!("{base}/n/11")))
            .await
            .expect_err("over the cap");
        assert!(
            matches!(err, Error::BodyTooLarge { limit: 1024 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn transport_request_timeout_covers_reading_the_body() {
        let base = chunked_server().await;
        let t = HttpTransport::with_config(TransportConfig {
            request_timeout: Duration::from_millis(300),
            max_attempts: 1,
            ..fast_config()
        })
        .expect("transport");
        let started = std::time::Instant::now();
        let err = t
            .execute(RetryPolicy::Idempotent, || get(&format!("{base}/slow")))
            .await
            .expect_err("the body is too slow");
        assert!(
            matches!(
                err,
                Error::Transport {
                    kind: TransportErrorKind::Timeout,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    /// Records the nonce of every response observed.
    #[derive(Default)]
    struct SeenNonces(std::sync::Mutex<Vec<Option<String>>>);

    impl OriginObserver for SeenNonces {
        fn observe(&self, _url: &Url, facts: &OriginFacts) {
            crate::sync::lock(&self.0).push(facts.dpop_nonce.clone());
        }
    }

    /// Serve `router` on loopback; the base URL.
    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        base
    }

    fn fast_config() -> TransportConfig {
        TransportConfig {
            min_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            request_timeout: Duration::from_secs(5),
            max_body_bytes: 1024,
            ..Default::default()
        }
    }

    fn get(url: &str) -> Result<HttpRequest> {
        Ok(http::Request::get(url).body(Vec::new()).expect("request"))
    }

    #[tokio::test]
    async fn stream_execute_for_stream_observes_every_attempt_and_leaves_2xx_unread() {
        use axum::response::IntoResponse as _;
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let router = axum::Router::new().route(
            "/x",
            axum::routing::get(move || async move {
                if hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    (
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        [("dpop-nonce", "n-1")],
                    )
                        .into_response()
                } else {
                    ([("dpop-nonce", "n-2")], "hello").into_response()
                }
            }),
        );
        let url = format!("{}/x", serve(router).await);
        let t = HttpTransport::with_config(fast_config()).expect("transport");
        let seen = SeenNonces::default();
        let resp = t
            .execute_for_stream(RetryPolicy::Idempotent, || get(&url), &seen)
            .await
            .expect("response");
        assert_eq!(resp.status(), 200);
        assert!(resp.body().is_empty(), "the 2xx body is left unread");
        assert_eq!(
            OriginFacts::of(&resp).dpop_nonce.as_deref(),
            Some("n-2"),
            "the facts travel with the response"
        );
        assert_eq!(
            *crate::sync::lock(&seen.0),
            vec![Some("n-1".to_owned()), Some("n-2".to_owned())]
        );
        let streaming = into_streaming(resp);
        assert_eq!(streaming.status(), 200);
        let body = streaming
            .into_body()
            .collect_capped(64)
            .await
            .expect("body");
        assert_eq!(body, "hello");
    }

    #[tokio::test]
    async fn stream_execute_for_stream_reads_error_bodies_under_the_cap() {
        let router = axum::Router::new()
            .route(
                "/denied",
                axum::routing::get(|| async {
                    (
                        http::StatusCode::UNAUTHORIZED,
                        [("www-authenticate", r#"Bearer error="invalid_token""#)],
                        "denied",
                    )
                }),
            )
            .route(
                "/big",
                axum::routing::get(|| async { (http::StatusCode::UNAUTHORIZED, "x".repeat(4096)) }),
            );
        let base = serve(router).await;
        let t = HttpTransport::with_config(fast_config()).expect("transport");
        let url = format!("{base}/denied");
        let resp = t
            .execute_for_stream(RetryPolicy::Idempotent, || get(&url), &IgnoreOrigins)
            .await
            .expect("response");
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.body(), "denied", "a non-2xx body is read");
        let mut streaming = into_streaming(resp);
        assert_eq!(streaming.status(), 401);
        assert!(streaming.headers().contains_key("www-authenticate"));
        let chunk = streaming.body_mut().next_chunk().await.expect("chunk");
        assert_eq!(chunk.as_deref(), Some(&b"denied"[..]));
        assert!(streaming
            .body_mut()
            .next_chunk()
            .await
            .expect("end")
            .is_none());

        let url = format!("{base}/big");
        let err = t
            .execute_for_stream(RetryPolicy::Idempotent, || get(&url), &IgnoreOrigins)
            .await
            .expect_err("over the cap");
        assert!(
            matches!(err, Error::BodyTooLarge { limit: 1024 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn stream_execute_for_stream_times_out_waiting_for_headers() {
        let router = axum::Router::new().route(
            "/slow",
            axum::routing::get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
        let url = format!("{}/slow", serve(router).await);
        let t = HttpTransport::with_config(TransportConfig {
            request_timeout: Duration::from_millis(200),
            ..fast_config()
        })
        .expect("transport");
        let err = t
            .execute_for_stream(RetryPolicy::Never, || get(&url), &IgnoreOrigins)
            .await
            .expect_err("timeout");
        assert!(
            matches!(
                err,
                Error::Transport {
                    kind: TransportErrorKind::Timeout,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn stream_into_streaming_of_a_response_built_elsewhere_gives_its_body() {
        let resp = http::Response::new(Bytes::from_static(b"built"));
        let body = into_streaming(resp).into_body();
        let collected = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(body.collect_capped(16))
            .expect("body");
        assert_eq!(collected, "built");
    }

    #[allow(dead_code)]
    fn stream_execute_stream_future_is_send(t: &HttpTransport) {
        fn check<T: Send>(_: T) {}
        check(t.execute_stream(RetryPolicy::Never, || get("https://a.example/")));
    }

    #[test]
    fn transport_full_jitter_stays_in_range() {
        for _ in 0..100 {
            assert!(full_jitter(Duration::from_millis(10)) <= Duration::from_millis(10));
        }
        assert_eq!(full_jitter(Duration::ZERO), Duration::ZERO);
    }
}
