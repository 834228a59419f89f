//! Server-Sent Events (WHATWG HTML, §9.2 "Server-sent events"), read sans-IO.
//!
//! MCP Streamable HTTP answers a request with `text/event-stream`; [`SseParser`] turns the bytes
//! of such a body into [`SseEvent`]s, following the standard's "event stream interpretation"
//! (§9.2.6) to the letter:
//!
//! - the stream is UTF-8: one leading BOM is dropped, invalid bytes become U+FFFD;
//! - lines end with CRLF, LF or CR, and a CR that ends one chunk followed by an LF that starts
//!   the next is one line end;
//! - a line starting with `:` is a comment; a line without `:` is a field name with an empty
//!   value; one space after the `:` is removed;
//! - `event` sets the type, `data` lines are joined with `\n`, `id` sets the last event ID
//!   (ignored if it contains NUL), `retry` sets the reconnection time (ASCII digits only);
//!   other fields are ignored;
//! - a blank line dispatches the event, unless its data is empty; the type defaults to
//!   `message`;
//! - at the end of the stream an event not ended by a blank line is discarded.
//!
//! The parser holds at most one line and one event in memory, each capped
//! ([`SseParser::with_max_event_bytes`]); a stream that exceeds the cap is refused with
//! [`Error::BodyTooLarge`], never buffered without bound.

use std::time::Duration;

use crate::error::{Error, Result};

/// The UTF-8 byte order mark, dropped once at the start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Default cap on one event (and on one line): 16 MiB.
pub(crate) const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The type of an event whose stream named none (WHATWG HTML §9.2.6).
const DEFAULT_EVENT_TYPE: &str = "message";

/// One dispatched event (WHATWG HTML §9.2.6, "dispatch the event").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SseEvent {
    /// The event type: the last `event` field of the event, or `message`.
    pub event: String,
    /// The `data` lines, joined with `\n`.
    pub data: String,
    /// The stream's last event ID when the event was dispatched (the last `id` field seen so
    /// far, this event's or an earlier one's), or `None` when it is empty.
    pub id: Option<String>,
    /// The reconnection time in force when the event was dispatched: the last valid `retry`
    /// field seen so far, or `None` when the server sent none.
    pub retry: Option<Duration>,
}

/// An incremental, sans-IO parser of `text/event-stream` bodies (WHATWG HTML §9.2.6).
///
/// Feed it the body's bytes as they arrive with [`push`](Self::push), in chunks of any size
/// cut anywhere (inside a line, a CRLF or a UTF-8 sequence), then call
/// [`finish`](Self::finish) at the end of the stream. The events are the same however the
/// stream is cut.
///
/// ```
/// use agent_oauth::transport::SseParser;
///
/// let mut parser = SseParser::new();
/// assert!(parser.push(b"event: update\r\ndata: {\"a\"").expect("push").is_empty());
/// let events = parser.push(b":1}\r\nid: 7\r\n\r\n").expect("push");
/// assert_eq!(events[0].event, "update");
/// assert_eq!(events[0].data, r#"{"a":1}"#);
/// assert_eq!(parser.last_event_id(), Some("7"));
/// parser.finish();
/// ```
#[derive(Debug, Clone)]
pub struct SseParser {
    max_event_bytes: usize,
    /// How many bytes of a BOM the stream started with so far.
    bom_matched: usize,
    /// The BOM check is over (stripped, or the stream did not start with one).
    bom_done: bool,
    /// The previous chunk ended with CR: an LF starting the next chunk ends no line.
    after_cr: bool,
    /// The bytes of the line read so far.
    line: Vec<u8>,
    data: String,
    event_type: String,
    /// The "last event ID buffer": set by `id` fields.
    id_buffer: String,
    /// The "last event ID string": the buffer's value at the last dispatch.
    last_event_id: String,
    retry: Option<Duration>,
    /// The cap was exceeded: the stream is refused.
    failed: bool,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser for a new stream, with the default cap (16 MiB per event and per line).
    pub fn new() -> Self {
        Self::with_max_event_bytes(DEFAULT_MAX_EVENT_BYTES)
    }

    /// A parser that refuses an event (its data and type together) or a single line longer
    /// than `max` bytes.
    pub fn with_max_event_bytes(max: usize) -> Self {
        SseParser {
            max_event_bytes: max,
            bom_matched: 0,
            bom_done: false,
            after_cr: false,
            line: Vec::new(),
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            retry: None,
            failed: false,
        }
    }

    /// Read the next `chunk` of the stream and return the events it completed, in order.
    ///
    /// # Errors
    /// [`Error::BodyTooLarge`] when a line or an event grows past the cap. The stream is then
    /// refused: events the same chunk completed before the cap was hit are not returned, and
    /// every later call fails the same way.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>> {
        let mut events = Vec::new();
        self.push_into(chunk, &mut events)?;
        Ok(events)
    }

    /// As [`push`](Self::push), adding the events to `out` as they complete, so that the events
    /// before an error are kept.
    pub(crate) fn push_into(
        &mut self,
        chunk: &[u8],
        out: &mut impl Extend<SseEvent>,
    ) -> Result<()> {
        if self.failed {
            return Err(self.too_large());
        }
        let read = self.read(chunk, out);
        if read.is_err() {
            self.failed = true;
        }
        read
    }

    /// The end of the stream: a line or an event not yet ended is discarded (WHATWG HTML
    /// §9.2.6: "any pending data must be discarded").
    ///
    /// The parser can then read the next stream of the same source (a reconnection): that
    /// stream's leading BOM is dropped again, and the last event ID and the reconnection time
    /// carry over, as a browser's `EventSource` keeps them across reconnections.
    pub fn finish(&mut self) {
        self.bom_matched = 0;
        self.bom_done = false;
        self.after_cr = false;
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.last_event_id);
        self.failed = false;
    }

    /// The last event ID as of the last dispatch, to send as `Last-Event-ID` when reconnecting
    /// (WHATWG HTML §9.2.4); `None` when empty. A blank line updates it even when it dispatches
    /// no event, and an `id` field in an event discarded at the end of the stream does not.
    pub fn last_event_id(&self) -> Option<&str> {
        Some(self.last_event_id.as_str()).filter(|id| !id.is_empty())
    }

    /// The reconnection time the server asked for with its last valid `retry` field, if any.
    /// It takes effect as soon as the field is read, whether or not an event follows.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }

    fn too_large(&self) -> Error {
        Error::BodyTooLarge {
            limit: self.max_event_bytes,
        }
    }

    fn read(&mut self, chunk: &[u8], out: &mut impl Extend<SseEvent>) -> Result<()> {
        let mut rest = chunk;
        while !self.bom_done {
            let Some((&byte, tail)) = rest.split_first() else {
                return Ok(());
            };
            if byte == BOM[self.bom_matched] {
                self.bom_matched += 1;
                self.bom_done = self.bom_matched == BOM.len();
                rest = tail;
            } else {
                // Not a BOM after all: the bytes matched so far are text (never CR or LF).
                self.bom_done = true;
                self.extend_line(&BOM[..self.bom_matched])?;
            }
        }
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            self.extend_line(&rest[..end])?;
            self.end_line(out)?;
            let cr = rest[end] == b'\r';
            rest = &rest[end + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        self.extend_line(rest)
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<()> {
        if self.line.len() + bytes.len() > self.max_event_bytes {
            return Err(self.too_large());
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self, out: &mut impl Extend<SseEvent>) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        // Line ends are ASCII and never part of a UTF-8 sequence, so decoding line by line gives
        // what decoding the whole stream would (U+FFFD per maximal invalid subpart).
        let processed = self.process_line(&String::from_utf8_lossy(&line), out);
        line.clear();
        line.shrink_to(8 * 1024);
        self.line = line;
        processed
    }

    fn process_line(&mut self, line: &str, out: &mut impl Extend<SseEvent>) -> Result<()> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => {
                self.event_type.clear();
                self.event_type.push_str(value);
                self.check_event()?;
            }
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.check_event()?;
            }
            "id" if !value.contains('\0') => {
                self.id_buffer.clear();
                self.id_buffer.push_str(value);
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                let millis = value.parse::<u64>().unwrap_or(u64::MAX);
                self.retry = Some(Duration::from_millis(millis));
            }
            _ => {}
        }
        Ok(())
    }

    fn check_event(&self) -> Result<()> {
        if self.data.len() + self.event_type.len() > self.max_event_bytes {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut impl Extend<SseEvent>) {
        self.last_event_id.clone_from(&self.id_buffer);
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.ends_with('\n') {
            data.pop();
        }
        let event = if self.event_type.is_empty() {
            DEFAULT_EVENT_TYPE.to_owned()
        } else {
            std::mem::take(&mut self.event_type)
        };
        out.extend([SseEvent {
            event,
            data,
            id: self.last_event_id().map(str::to_owned),
            retry: self.retry,
        }]);
    }
}

/// Fuzz hook: the first byte gives a chunk size; the rest is read in chunks of that size and in
/// one push, which must give the same events, the same outcome and the same final state.
pub(crate) fn fuzz(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(first).max(1);
    let run = |chunks: &mut dyn Iterator<Item = &[u8]>| {
        let mut parser = SseParser::with_max_event_bytes(1024);
        let mut events = Vec::new();
        let mut outcome = Ok(());
        for chunk in chunks {
            outcome = parser.push_into(chunk, &mut events);
            if outcome.is_err() {
                break;
            }
        }
        parser.finish();
        let state = (parser.last_event_id().map(str::to_owned), parser.retry());
        (events, outcome.is_ok(), state)
    };
    let whole = run(&mut std::iter::once(stream));
    let chunked = run(&mut stream.chunks(step));
    for event in &whole.0 {
        assert!(!event.event.is_empty());
        assert!(!event.event.contains(['\r', '\n']));
        assert!(!event.data.contains('\r'));
        assert!(event
            .id
            .as_deref()
            .is_none_or(|id| !id.contains(['\0', '\r', '\n'])));
    }
    assert_eq!(whole, chunked, "chunks of {step} bytes");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: data.to_owned(),
            id: id.map(str::to_owned),
            retry: None,
        }
    }

    fn msg(data: &str) -> SseEvent {
        ev("message", data, None)
    }

    /// The events of `chunks` read in order, then the end of the stream.
    fn parse_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(parser.push(chunk).unwrap());
        }
        parser.finish();
        events
    }

    fn parse(stream: &[u8]) -> Vec<SseEvent> {
        parse_chunks([stream])
    }

    #[test]
    fn sse_spec_stock_example_joins_data_lines() {
        // WHATWG HTML §9.2.5: "data: YHOO / data: +2 / data: 10" is one message.
        let events = parse(b"data: YHOO\ndata: +2\ndata: 10\n\n");
        assert_eq!(events, vec![msg("YHOO\n+2\n10")]);
    }

    #[test]
    fn sse_spec_comment_id_and_reset_example() {
        // WHATWG HTML §9.2.6, the first example: a comment, an id that persists, an `id` with
        // no colon that resets it, and a value keeping its second leading space.
        let stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
        assert_eq!(
            parse(stream),
            vec![
                ev("message", "first event", Some("1")),
                msg("second event"),
                msg(" third event"),
            ]
        );
    }

    #[test]
    fn sse_spec_empty_data_and_newline_example() {
        // WHATWG HTML §9.2.6: two events (data "" and data "\n"); the last block is discarded
        // because no blank line follows it.
        let events = parse(b"data\n\ndata\ndata\n\ndata:");
        assert_eq!(events, vec![msg(""), msg("\n")]);
    }

    #[test]
    fn sse_spec_space_after_colon_is_optional() {
        // WHATWG HTML §9.2.6: "data:test" and "data: test" give the same event.
        let events = parse(b"data:test\n\ndata: test\n\n");
        assert_eq!(events, vec![msg("test"), msg("test")]);
    }

    #[test]
    fn sse_spec_unterminated_last_event_is_discarded_at_finish() {
        let mut parser = SseParser::new();
        let events = parser.push(b"data: test\n\ndata: test").unwrap();
        assert_eq!(events, vec![msg("test")]);
        // Even with its line ended, an event needs its blank line.
        assert!(parser.push(b"\nid: 9\n").unwrap().is_empty());
        parser.finish();
        assert_eq!(parser.last_event_id(), None);
        // The next stream starts clean: the discarded data and id do not leak into it.
        assert_eq!(parser.push(b"data: next\n\n").unwrap(), vec![msg("next")]);
    }

    #[test]
    fn sse_spec_event_types_example() {
        let stream = b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n";
        assert_eq!(
            parse(stream),
            vec![
                ev("add", "73857293", None),
                ev("remove", "2153", None),
                ev("add", "113411", None),
            ]
        );
    }

    #[test]
    fn sse_data_only_and_comments() {
        assert_eq!(parse(b"data: a\n\n"), vec![msg("a")]);
        assert_eq!(
            parse(b": keep-alive\n:\ndata: a\n: between\ndata: b\n\n"),
            vec![msg("a\nb")]
        );
        // Only comments: nothing is dispatched.
        assert!(parse(b": one\n\n: two\n\n").is_empty());
    }

    #[test]
    fn sse_field_without_colon_has_an_empty_value() {
        assert_eq!(parse(b"data\n\n"), vec![msg("")]);
        assert_eq!(parse(b"event\ndata: x\n\n"), vec![msg("x")]);
        // Without a colon the whole line is the name: `data x` is an unknown field.
        assert!(parse(b"data x\n\n").is_empty());
    }

    #[test]
    fn sse_only_one_leading_space_is_removed() {
        assert_eq!(parse(b"data:  two\n\n"), vec![msg(" two")]);
        assert_eq!(parse(b"data:\tx\n\n"), vec![msg("\tx")]);
        assert_eq!(parse(b"data: a: b\n\n"), vec![msg("a: b")]);
        assert_eq!(parse(b"data: \n\n"), vec![msg("")]);
    }

    #[test]
    fn sse_unknown_fields_are_ignored() {
        assert_eq!(
            parse(b"foo: bar\nData: no\ndata: yes\n ignored\n\n"),
            vec![msg("yes")]
        );
    }

    #[test]
    fn sse_event_type_defaults_to_message_and_resets() {
        assert_eq!(
            parse(b"event: a\ndata: 1\n\ndata: 2\n\n"),
            vec![ev("a", "1", None), msg("2")]
        );
        // A blank line without data clears the type too.
        assert_eq!(parse(b"event: a\n\ndata: 2\n\n"), vec![msg("2")]);
        // `event:` with an empty value means the default.
        assert_eq!(parse(b"event:\ndata: 3\n\n"), vec![msg("3")]);
    }

    #[test]
    fn sse_line_ends_cr_lf_and_crlf() {
        let expected = vec![msg("a\nb"), msg("c")];
        assert_eq!(parse(b"data: a\ndata: b\n\ndata: c\n\n"), expected);
        assert_eq!(parse(b"data: a\rdata: b\r\rdata: c\r\r"), expected);
        assert_eq!(
            parse(b"data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n"),
            expected
        );
        assert_eq!(parse(b"data: a\rdata: b\n\r\ndata: c\n\r"), expected);
        // LF CR is two line ends, so it dispatches.
        assert_eq!(parse(b"data: a\n\rdata: b\n\n"), vec![msg("a"), msg("b")]);
    }

    #[test]
    fn sse_cr_ending_a_chunk_and_lf_starting_the_next_are_one_line_end() {
        let events = parse_chunks([&b"data: a\r"[..], b"\ndata: b\r\n\r\n"]);
        assert_eq!(events, vec![msg("a\nb")]);
        // Empty chunks in between change nothing.
        let events = parse_chunks([&b"data: a\r"[..], b"", b"", b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(events, vec![msg("a\nb")]);
        // A CR then a CR in the next chunk is two line ends: a blank line.
        let events = parse_chunks([&b"data: a\r"[..], b"\rdata: b\r\r"]);
        assert_eq!(events, vec![msg("a"), msg("b")]);
    }

    #[test]
    fn sse_every_split_point_of_mixed_line_ends_gives_the_same_events() {
        let stream: &[u8] =
            b"\xEF\xBB\xBFevent: e\r\ndata: a\rdata:\xE2\x82\xAC\n\r\nid: 1\r\rdata: b\r\n\r\n: c\rretry: 5\n\ndata: z\r";
        let whole = parse(stream);
        assert_eq!(whole.len(), 2);
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let chunks = [&stream[..i], &stream[i..j], &stream[j..]];
                assert_eq!(parse_chunks(chunks), whole, "split at {i} and {j}");
            }
        }
        let bytes = parse_chunks(stream.chunks(1));
        assert_eq!(bytes, whole, "one byte at a time");
    }

    #[test]
    fn sse_bom_is_stripped_once() {
        assert_eq!(parse(b"\xEF\xBB\xBFdata: a\n\n"), vec![msg("a")]);
        // Split across chunks.
        let chunks = [&b"\xEF"[..], b"\xBB", b"\xBFdata: a\n\n"];
        assert_eq!(parse_chunks(chunks), vec![msg("a")]);
        // A second BOM is part of the field name, so the field is unknown.
        assert!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n").is_empty());
        // A BOM later in the stream is text.
        assert_eq!(parse(b"data: \xEF\xBB\xBFa\n\n"), vec![msg("\u{FEFF}a")]);
        // A partial BOM is text (here, invalid UTF-8 followed by a field).
        assert_eq!(parse(b"\xEF\xBB\ndata: a\n\n"), vec![msg("a")]);
        assert!(parse(b"\xEFdata: a\n\n").is_empty());
    }

    #[test]
    fn sse_bom_is_stripped_again_after_finish() {
        let mut parser = SseParser::new();
        assert_eq!(
            parser.push(b"\xEF\xBB\xBFdata: a\n\n").unwrap(),
            vec![msg("a")]
        );
        parser.finish();
        assert_eq!(
            parser.push(b"\xEF\xBB\xBFdata: b\n\n").unwrap(),
            vec![msg("b")]
        );
    }

    #[test]
    fn sse_invalid_utf8_is_replaced() {
        assert_eq!(parse(b"data: a\xFFb\n\n"), vec![msg("a\u{FFFD}b")]);
        // A truncated sequence is one replacement character (its maximal subpart).
        assert_eq!(parse(b"data: \xE2\x82\n\n"), vec![msg("\u{FFFD}")]);
        assert_eq!(parse(b"data: \xF0\x9F\x98\n\n"), vec![msg("\u{FFFD}")]);
        // Surrogates and overlong forms are invalid byte by byte.
        assert_eq!(
            parse(b"data: \xED\xA0\x80\n\n"),
            vec![msg("\u{FFFD}\u{FFFD}\u{FFFD}")]
        );
        assert_eq!(parse(b"data: \xC0\xAF\n\n"), vec![msg("\u{FFFD}\u{FFFD}")]);
        // A valid sequence cut between chunks is decoded whole.
        let chunks = [&b"data: \xE2"[..], b"\x82", b"\xAC\n\n"];
        assert_eq!(parse_chunks(chunks), vec![msg("€")]);
        // Invalid bytes in a field name make it unknown.
        assert!(parse(b"da\xFFta: x\n\n").is_empty());
    }

    #[test]
    fn sse_id_persists_across_events_until_reset() {
        let events = parse(b"id: 7\ndata: a\n\ndata: b\n\nid:\ndata: c\n\n");
        assert_eq!(
            events,
            vec![
                ev("message", "a", Some("7")),
                ev("message", "b", Some("7")),
                msg("c"),
            ]
        );
    }

    #[test]
    fn sse_id_with_nul_is_ignored() {
        let mut parser = SseParser::new();
        let events = parser.push(b"id: 1\n\ndata: x\nid: a\0b\n\n").unwrap();
        assert_eq!(events, vec![ev("message", "x", Some("1"))]);
        assert_eq!(parser.last_event_id(), Some("1"));
    }

    #[test]
    fn sse_last_event_id_is_set_on_dispatch_even_without_data() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"id: 42\n").unwrap().is_empty());
        // Not dispatched yet.
        assert_eq!(parser.last_event_id(), None);
        assert!(parser.push(b"\n").unwrap().is_empty());
        assert_eq!(parser.last_event_id(), Some("42"));
        // An id in an event discarded at the end of the stream does not count.
        assert!(parser.push(b"id: 43\ndata: x\n").unwrap().is_empty());
        parser.finish();
        assert_eq!(parser.last_event_id(), Some("42"));
        assert_eq!(
            parser.push(b"data: y\n\n").unwrap(),
            vec![ev("message", "y", Some("42"))]
        );
    }

    #[test]
    fn sse_retry_takes_ascii_digits_only() {
        let mut parser = SseParser::new();
        assert!(parser.push(b"retry: 12a\n\n").unwrap().is_empty());
        assert_eq!(parser.retry(), None);
        for ignored in [
            &b"retry:\n"[..],
            b"retry: -1\n",
            b"retry: 1.5\n",
            b"retry:  1\n",
        ] {
            parser.push(ignored).unwrap();
            assert_eq!(parser.retry(), None, "{ignored:?}");
        }
        // Applied as soon as the field is read, without an event.
        assert!(parser.push(b"retry: 3000\n").unwrap().is_empty());
        assert_eq!(parser.retry(), Some(Duration::from_secs(3)));
        let events = parser.push(b"data: x\n\n").unwrap();
        assert_eq!(events[0].retry, Some(Duration::from_secs(3)));
        // An invalid value later leaves the last valid one in force.
        parser.push(b"retry: soon\n").unwrap();
        assert_eq!(parser.retry(), Some(Duration::from_secs(3)));
        // Too many digits saturate rather than fail.
        parser.push(b"retry: 99999999999999999999999\n").unwrap();
        assert_eq!(parser.retry(), Some(Duration::from_millis(u64::MAX)));
    }

    #[test]
    fn sse_event_over_the_cap_is_a_typed_error() {
        let mut parser = SseParser::with_max_event_bytes(16);
        assert_eq!(parser.push(b"data: 0123456789\n\n").unwrap().len(), 1);
        // Data lines adding up past the cap.
        let err = parser
            .push(b"data: 0123456789\ndata: 0123456789\n")
            .unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { limit: 16 }), "{err:?}");
        // The stream stays refused.
        let err = parser.push(b"\n").unwrap_err();
        assert!(matches!(err, Error::BodyTooLarge { limit: 16 }));
    }

    #[test]
    fn sse_line_over_the_cap_is_a_typed_error() {
        let mut parser = SseParser::with_max_event_bytes(64);
        // A line that never ends, fed slowly, is refused once it passes the cap.
        let mut outcome = Ok(Vec::new());
        for _ in 0..100 {
            outcome = parser.push(b": xxxxxxx");
            if outcome.is_err() {
                break;
            }
        }
        assert!(matches!(outcome, Err(Error::BodyTooLarge { limit: 64 })));
        // One huge chunk is refused without a panic.
        let mut parser = SseParser::with_max_event_bytes(1024);
        let huge = vec![b'a'; 1 << 20];
        assert!(parser.push(&huge).is_err());
    }

    const FRAGMENTS: &[&[u8]] = &[
        b"data",
        b"data:",
        b"data: x",
        b"data:y",
        b"event: e",
        b"event",
        b"id: 1",
        b"id",
        b"id: \0",
        b"retry: 5",
        b"retry: 5x",
        b": c",
        b":",
        b"\r",
        b"\n",
        b"\r\n",
        b"\xEF\xBB\xBF",
        b"\xE2\x82\xAC",
        b"\xE2",
        b"\xFF",
        b" ",
    ];

    fn stream_of(parts: &[usize]) -> Vec<u8> {
        parts.iter().flat_map(|&i| FRAGMENTS[i]).copied().collect()
    }

    fn split_at_points(stream: &[u8], points: &[prop::sample::Index]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = points.iter().map(|p| p.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(stream[start..cut].to_vec());
            start = cut;
        }
        chunks.push(stream[start..].to_vec());
        chunks
    }

    proptest! {
        #[test]
        fn sse_any_chunking_yields_the_same_events(
            parts in prop::collection::vec(0..FRAGMENTS.len(), 0..60),
            points in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let stream = stream_of(&parts);
            let chunks = split_at_points(&stream, &points);
            let whole = parse(&stream);
            prop_assert_eq!(parse_chunks(chunks.iter().map(Vec::as_slice)), whole);
        }

        #[test]
        fn sse_any_bytes_any_chunking_same_events_no_panic(
            stream in prop::collection::vec(any::<u8>(), 0..400),
            step in 1usize..40,
        ) {
            let whole = parse(&stream);
            prop_assert_eq!(parse_chunks(stream.chunks(step)), whole);
        }
    }

    #[test]
    fn sse_fuzz_hook_accepts_odd_inputs() {
        fuzz(b"");
        fuzz(b"\x00");
        fuzz(b"\x03data: a\r\n\r\nid: \x00\rretry: 1\n\n");
        fuzz(&[&[7u8][..], &[b'x'; 5000], b"\n\n"].concat());
    }
}
