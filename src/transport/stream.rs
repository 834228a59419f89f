//! Response bodies read as they arrive, with no size cap: [`BodyStream`] (bytes) and
//! [`SseStream`] (Server-Sent Events), and the [`StreamingResponse`] that carries them.
//!
//! OAuth endpoints keep reading whole bodies under [`TransportConfig::max_body_bytes`]; a
//! protected resource may answer with a body of any length (MCP Streamable HTTP answers with
//! `text/event-stream`), which [`HttpTransport::execute_stream`] hands over unread.
//!
//! [`TransportConfig::max_body_bytes`]: crate::TransportConfig::max_body_bytes
//! [`HttpTransport::execute_stream`]: crate::HttpTransport::execute_stream

use std::collections::VecDeque;
use std::fmt;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use std::sync::{Arc, Mutex};

use super::client::transport_error;
use super::sse::{SseEvent, SseParser};
use super::HttpResponse;
use crate::error::{Error, Result};

type Chunks = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send + Sync>>;

enum Source {
    /// A body still on the wire.
    Wire(Chunks),
    /// A body already read (a non-2xx answer), given as one chunk.
    Read(Option<Bytes>),
}

/// A response body, read chunk by chunk as it arrives, with no size cap.
///
/// Read it with [`next_chunk`](Self::next_chunk), as a [`Stream`] of [`Bytes`], whole under a
/// cap of your choice with [`collect_capped`](Self::collect_capped), or as Server-Sent Events
/// with [`sse`](Self::sse). A body that sends nothing for
/// [`TransportConfig::stream_idle_timeout`](crate::TransportConfig::stream_idle_timeout) ends
/// with [`Error::Timeout`]. After an error the stream ends.
///
/// Dropping it closes the connection.
pub struct BodyStream {
    source: Source,
    /// The length the body declared, if any.
    content_length: Option<u64>,
    idle: Option<Idle>,
    done: bool,
}

/// The idle timer: the stream fails when nothing arrived for `limit` since `last`.
struct Idle {
    limit: Duration,
    last: Instant,
    /// Created on the first wait, so that a body built outside a runtime does not panic.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Idle {
    fn new(limit: Duration) -> Self {
        Idle {
            limit,
            last: Instant::now(),
            sleep: None,
        }
    }

    /// Ready once `limit` passed since the last chunk.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.last.checked_add(self.limit) else {
            return Poll::Pending;
        };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

impl BodyStream {
    /// A body still on the wire; `idle` is the idle timeout, if any.
    pub(crate) fn from_reqwest(resp: reqwest::Response, idle: Option<Duration>) -> Self {
        BodyStream {
            content_length: resp.content_length(),
            source: Source::Wire(Box::pin(resp.bytes_stream())),
            idle: idle.map(Idle::new),
            done: false,
        }
    }

    /// A body already read, given as one chunk (none if empty).
    pub(crate) fn from_bytes(body: Bytes) -> Self {
        BodyStream {
            content_length: Some(body.len() as u64),
            source: Source::Read(Some(body).filter(|b| !b.is_empty())),
            idle: None,
            done: false,
        }
    }

    /// The next chunk of the body, or `None` at its end. Chunks are never empty.
    ///
    /// # Errors
    /// [`Error::Transport`] when the connection fails while reading; [`Error::Timeout`] when
    /// nothing arrived within the idle timeout.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }

    /// Read the whole body, refusing it as soon as it passes `limit` bytes (a declared
    /// `Content-Length` over `limit` is refused before reading anything).
    ///
    /// # Errors
    /// [`Error::BodyTooLarge`], or as [`next_chunk`](Self::next_chunk).
    pub async fn collect_capped(mut self, limit: usize) -> Result<Bytes> {
        if self.content_length.is_some_and(|len| len > limit as u64) {
            return Err(Error::BodyTooLarge { limit });
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            if body.len() + chunk.len() > limit {
                return Err(Error::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    /// Read the body as a `text/event-stream` (WHATWG HTML §9.2), with a new [`SseParser`]
    /// (16 MiB cap per event).
    pub fn sse(self) -> SseStream {
        self.sse_with(SseParser::new())
    }

    /// Read the body as a `text/event-stream` with `parser`: one with another cap, or the
    /// parser of an earlier stream of the same source (a reconnection), whose last event ID
    /// and reconnection time carry over.
    pub fn sse_with(self, parser: SseParser) -> SseStream {
        SseStream {
            body: self,
            parser,
            queue: VecDeque::new(),
            error: None,
            done: false,
        }
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            let polled = match &mut this.source {
                Source::Read(body) => Poll::Ready(body.take().map(Ok)),
                Source::Wire(chunks) => chunks
                    .as_mut()
                    .poll_next(cx)
                    .map(|next| next.map(|chunk| chunk.map_err(transport_error))),
            };
            return match polled {
                Poll::Ready(Some(Ok(chunk))) if chunk.is_empty() => continue,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(idle) = &mut this.idle {
                        idle.last = Instant::now();
                    }
                    Poll::Ready(Some(Ok(chunk)))
                }
                Poll::Ready(end_or_error) => {
                    this.done = true;
                    Poll::Ready(end_or_error)
                }
                Poll::Pending => {
                    let Some(idle) = &mut this.idle else {
                        return Poll::Pending;
                    };
                    ready!(idle.poll_expired(cx));
                    this.done = true;
                    Poll::Ready(Some(Err(Error::Timeout(idle.limit))))
                }
            };
        }
    }
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyStream")
            .field("content_length", &self.content_length)
            .field("idle_timeout", &self.idle.as_ref().map(|i| i.limit))
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A response body read as Server-Sent Events (WHATWG HTML §9.2), as they arrive.
///
/// Read it with [`next_event`](Self::next_event) or as a [`Stream`] of [`SseEvent`]s. At the
/// end of the body an event not ended by a blank line is discarded, as the standard says; the
/// stream then ends. Reconnecting is up to the caller, with [`last_event_id`](Self::last_event_id)
/// as `Last-Event-ID` after waiting [`retry`](Self::retry).
pub struct SseStream {
    body: BodyStream,
    parser: SseParser,
    queue: VecDeque<SseEvent>,
    /// An error to report once the events read before it are delivered.
    error: Option<Error>,
    done: bool,
}

impl SseStream {
    /// The next event, or `None` at the end of the body.
    ///
    /// # Errors
    /// As [`BodyStream::next_chunk`], and [`Error::BodyTooLarge`] when an event or a line
    /// passes the parser's cap. Events completed before an error are delivered first.
    pub async fn next_event(&mut self) -> Result<Option<SseEvent>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }

    /// The last event ID as of the last dispatch, to send as `Last-Event-ID` when reconnecting.
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }

    /// The reconnection time the server asked for (`retry` field), if it sent one.
    pub fn retry(&self) -> Option<Duration> {
        self.parser.retry()
    }

    /// The parser, to read a reconnection's body with [`BodyStream::sse_with`]. Events read from
    /// the body but not yet delivered are dropped.
    pub fn into_parser(mut self) -> SseParser {
        self.parser.finish();
        self.parser
    }
}

impl Stream for SseStream {
    type Item = Result<SseEvent>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(event) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(event)));
            }
            if let Some(error) = this.error.take() {
                this.done = true;
                return Poll::Ready(Some(Err(error)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.body).poll_next(cx)) {
                Some(Ok(chunk)) => {
                    if let Err(e) = this.parser.push_into(&chunk, &mut this.queue) {
                        this.error = Some(e);
                    }
                }
                Some(Err(e)) => this.error = Some(e),
                None => {
                    this.parser.finish();
                    this.done = true;
                }
            }
        }
    }
}

impl fmt::Debug for SseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseStream")
            .field("body", &self.body)
            .field("last_event_id", &self.last_event_id())
            .field("retry", &self.retry())
            .finish_non_exhaustive()
    }
}

/// A response whose body is read as it arrives: status, headers and a [`BodyStream`].
///
/// Returned by [`HttpTransport::execute_stream`](crate::HttpTransport::execute_stream). Its
/// `Debug` shows the status only.
pub struct StreamingResponse {
    status: http::StatusCode,
    headers: http::HeaderMap,
    body: BodyStream,
}

impl StreamingResponse {
    pub(crate) fn new(
        status: http::StatusCode,
        headers: http::HeaderMap,
        body: BodyStream,
    ) -> Self {
        StreamingResponse {
            status,
            headers,
            body,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// The body, to read it while keeping the status and headers.
    pub fn body_mut(&mut self) -> &mut BodyStream {
        &mut self.body
    }

    /// The body.
    pub fn into_body(self) -> BodyStream {
        self.body
    }
}

impl fmt::Debug for StreamingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingResponse")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync + Unpin>() {}
    check::<BodyStream>();
    check::<SseStream>();
    check::<StreamingResponse>();
    check::<SseParser>();
}

/// What the retry loop does with response bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyMode {
    /// Read every body under the cap; `request_timeout` covers headers and body.
    Read,
    /// Leave 2xx bodies unread for the caller ([`into_streaming`]) and read the others as
    /// `Read` does; `request_timeout` and the deadline end with the headers of a 2xx.
    Stream,
}

/// The body of a 2xx response left unread, kept in the response's extensions until
/// [`into_streaming`] takes it (extensions must be `Clone + Send + Sync`). No `Debug`: the
/// reqwest response would show its URL, query included.
#[derive(Clone)]
struct UnreadBody {
    response: Arc<Mutex<Option<reqwest::Response>>>,
    idle_timeout: Option<Duration>,
}

/// The status and headers of `resp`, with its body left unread in the extensions.
pub(super) fn unread(mut resp: reqwest::Response, idle_timeout: Option<Duration>) -> HttpResponse {
    let mut out = http::Response::new(Bytes::new());
    *out.status_mut() = resp.status();
    *out.version_mut() = resp.version();
    *out.headers_mut() = std::mem::take(resp.headers_mut());
    out.extensions_mut().insert(UnreadBody {
        response: Arc::new(Mutex::new(Some(resp))),
        idle_timeout,
    });
    out
}

/// A response of [`HttpTransport::execute_for_stream`](super::HttpTransport::execute_for_stream) as a [`StreamingResponse`]: the unread
/// body of a 2xx, or the body already read (non-2xx, or a response built elsewhere) as one
/// chunk.
pub(crate) fn into_streaming(resp: HttpResponse) -> StreamingResponse {
    let (mut parts, read) = resp.into_parts();
    let unread = parts.extensions.remove::<UnreadBody>().and_then(|u| {
        let resp = crate::sync::lock(&u.response).take();
        resp.map(|r| (r, u.idle_timeout))
    });
    let body = match unread {
        Some((resp, idle_timeout)) => BodyStream::from_reqwest(resp, idle_timeout),
        None => BodyStream::from_bytes(read),
    };
    StreamingResponse::new(parts.status, parts.headers, body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::error::TransportErrorKind;
    use tokio::sync::mpsc;

    type Sent = std::result::Result<Bytes, std::io::Error>;

    /// A body fed by the test through a channel.
    struct Channel(mpsc::Receiver<Sent>);

    impl Stream for Channel {
        type Item = Sent;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Sent>> {
            self.0.poll_recv(cx)
        }
    }

    fn channel_body(idle: Option<Duration>) -> (mpsc::Sender<Sent>, BodyStream) {
        let (tx, rx) = mpsc::channel(16);
        let resp = http::Response::new(reqwest::Body::wrap_stream(Channel(rx)));
        (tx, BodyStream::from_reqwest(resp.into(), idle))
    }

    async fn send(tx: &mpsc::Sender<Sent>, bytes: &'static [u8]) {
        tx.send(Ok(Bytes::from_static(bytes))).await.unwrap();
    }

    #[tokio::test]
    async fn stream_read_body_is_one_chunk_then_the_end() {
        let mut body = BodyStream::from_bytes(Bytes::from_static(b"denied"));
        assert_eq!(body.next_chunk().await.unwrap().unwrap(), "denied");
        assert!(body.next_chunk().await.unwrap().is_none());
        assert!(body.next_chunk().await.unwrap().is_none());
        let mut empty = BodyStream::from_bytes(Bytes::new());
        assert!(empty.next_chunk().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn stream_collect_capped_refuses_past_the_limit() {
        let body = BodyStream::from_bytes(Bytes::from_static(b"0123456789"));
        assert_eq!(body.collect_capped(10).await.unwrap(), "0123456789");
        // Declared too long: refused before reading.
        let body = BodyStream::from_bytes(Bytes::from_static(b"0123456789"));
        let err = body.collect_capped(9).await.unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { limit: 9 }));
        // No declared length: refused while reading.
        let (tx, body) = channel_body(None);
        tokio::spawn(async move {
            for _ in 0..4 {
                send(&tx, b"abcd").await;
            }
        });
        let err = body.collect_capped(10).await.unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { limit: 10 }));
    }

    #[tokio::test]
    async fn stream_chunks_arrive_in_order_and_empty_ones_are_skipped() {
        let (tx, mut body) = channel_body(None);
        tokio::spawn(async move {
            for chunk in [&b"a"[..], b"", b"bc", b"d"] {
                send(&tx, chunk).await;
            }
        });
        let mut seen = Vec::new();
        while let Some(chunk) = body.next_chunk().await.unwrap() {
            assert!(!chunk.is_empty());
            seen.push(chunk);
        }
        assert_eq!(seen, ["a", "bc", "d"]);
    }

    #[tokio::test]
    async fn stream_read_error_is_a_transport_error_and_ends_the_stream() {
        let (tx, mut body) = channel_body(None);
        send(&tx, b"a").await;
        tx.send(Err(std::io::Error::other("reset"))).await.unwrap();
        assert_eq!(body.next_chunk().await.unwrap().unwrap(), "a");
        let err = body.next_chunk().await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Transport {
                    kind: TransportErrorKind::Other,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(body.next_chunk().await.unwrap().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn stream_idle_timeout_ends_a_silent_stream() {
        let idle = Duration::from_secs(60);
        let (tx, mut body) = channel_body(Some(idle));
        // Chunks every 40 s keep it alive well past 60 s in total.
        let sender = tokio::spawn(async move {
            for _ in 0..5 {
                send(&tx, b"x").await;
                tokio::time::sleep(Duration::from_secs(40)).await;
            }
            // Then silence, with the connection still open.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(tx);
        });
        let started = Instant::now();
        for _ in 0..5 {
            assert_eq!(body.next_chunk().await.unwrap().unwrap(), "x");
        }
        let err = body.next_chunk().await.unwrap_err();
        assert!(matches!(err, Error::Timeout(d) if d == idle), "{err:?}");
        // The last chunk came at 160 s; silence for 60 s more ends it.
        assert_eq!(started.elapsed(), Duration::from_secs(220));
        assert!(body.next_chunk().await.unwrap().is_none());
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn stream_without_idle_timeout_waits() {
        let (tx, mut body) = channel_body(None);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
            send(&tx, b"late").await;
        });
        assert_eq!(body.next_chunk().await.unwrap().unwrap(), "late");
    }

    #[tokio::test]
    async fn stream_sse_parses_events_across_chunks() {
        let (tx, body) = channel_body(None);
        tokio::spawn(async move {
            for chunk in [
                &b"retry: 2000\r\nid: 1\r\nevent: a\r"[..],
                b"\ndata: one\r",
                b"\n\r",
                b"\ndata: two\n\ndata: unterminated",
            ] {
                send(&tx, chunk).await;
            }
        });
        let mut events = body.sse();
        let first = events.next_event().await.unwrap().unwrap();
        assert_eq!((first.event.as_str(), first.data.as_str()), ("a", "one"));
        assert_eq!(first.id.as_deref(), Some("1"));
        assert_eq!(first.retry, Some(Duration::from_secs(2)));
        let second = events.next_event().await.unwrap().unwrap();
        assert_eq!(
            (second.event.as_str(), second.data.as_str()),
            ("message", "two")
        );
        assert_eq!(second.id.as_deref(), Some("1"));
        // The unterminated event is discarded at the end of the body.
        assert!(events.next_event().await.unwrap().is_none());
        assert_eq!(events.last_event_id(), Some("1"));
        assert_eq!(events.retry(), Some(Duration::from_secs(2)));
    }

    #[tokio::test]
    async fn stream_sse_delivers_events_before_a_cap_error() {
        let body = BodyStream::from_bytes(Bytes::from_static(
            b"data: ok\n\ndata: 0123456789012345678901234567890123456789\n\n",
        ));
        let mut events = body.sse_with(SseParser::with_max_event_bytes(32));
        assert_eq!(events.next_event().await.unwrap().unwrap().data, "ok");
        let err = events.next_event().await.unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { limit: 32 }));
        assert!(events.next_event().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn stream_sse_parser_carries_over_to_a_reconnection() {
        let first = BodyStream::from_bytes(Bytes::from_static(b"id: 5\nretry: 10\ndata: a\n\n"));
        let mut events = first.sse();
        assert_eq!(events.next_event().await.unwrap().unwrap().data, "a");
        let parser = events.into_parser();
        let second = BodyStream::from_bytes(Bytes::from_static(b"data: b\n\n"));
        let mut events = second.sse_with(parser);
        let b = events.next_event().await.unwrap().unwrap();
        assert_eq!(b.id.as_deref(), Some("5"));
        assert_eq!(b.retry, Some(Duration::from_millis(10)));
    }

    #[test]
    fn stream_streaming_response_debug_shows_the_status_only() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-secret", http::HeaderValue::from_static("s3cr3t"));
        let resp = StreamingResponse::new(
            http::StatusCode::OK,
            headers,
            BodyStream::from_bytes(Bytes::from_static(b"body-bytes")),
        );
        let shown = format!("{resp:?}");
        assert!(shown.contains("200"), "{shown}");
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("body-bytes"),
            "{shown}"
        );
    }
}
