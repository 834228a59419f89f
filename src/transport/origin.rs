//! What the transport learns about each origin it talks to: the rules for the values servers
//! send that the crate keeps per origin (the `DPoP-Nonce` header, RFC 9449 §8.1) and the
//! origin key they are kept under, and each origin's clock offset.

use std::sync::Arc;

use crate::clock::{ClockOffset, ClockSkew};

/// The longest nonce accepted, in bytes.
pub(crate) const MAX_NONCE_LEN: usize = 512;

/// The response header carrying a DPoP nonce (RFC 9449 §8.1).
pub(crate) const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// True when `nonce` is an acceptable `DPoP-Nonce` value: 1 to 512 `NQCHAR`
/// (`%x21 / %x23-5B / %x5D-7E`, RFC 9449 §8.1).
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e))
}

/// The `DPoP-Nonce` of a response, when it is a valid nonce.
pub(crate) fn dpop_nonce(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(&DPOP_NONCE)
        .and_then(|v| v.to_str().ok())
        .filter(|n| is_valid_nonce(n))
}

/// The key per-origin state is kept under, as a string (what [`OriginKey`] holds).
#[cfg(test)]
pub(crate) fn origin_key(url: &url::Url) -> String {
    OriginKey::of(url).to_owned()
}

/// The key per-origin state is kept under: scheme, host and effective port (authorization
/// server and resource server nonces are independent, RFC 9449 §8, §9, and so are different
/// ports and schemes), without allocating for keys up to 96 bytes (hosts of about 70
/// characters; longer ones are kept on the heap): what the per-request lookups (nonces, clock
/// offsets) use.
pub(crate) struct OriginKey {
    buf: [u8; 96],
    len: usize,
    heap: Option<String>,
}

impl OriginKey {
    pub(crate) fn of(url: &url::Url) -> OriginKey {
        Self::of_with(url, "")
    }

    /// The key of `url`'s origin followed by `suffix`: `scheme://host:port` (the port always
    /// written, default or not), copied piece by piece (this runs several times a request).
    pub(crate) fn of_with(url: &url::Url, suffix: &str) -> OriginKey {
        let mut key = OriginKey {
            buf: [0; 96],
            len: 0,
            heap: None,
        };
        let mut digits = itoa::Buffer::new();
        let port = url.port_or_known_default();
        let parts = [
            url.scheme(),
            "://",
            url.host_str().unwrap_or(""),
            if port.is_some() { ":" } else { "" },
            port.map_or("", |p| digits.format(p)),
            suffix,
        ];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        match key.buf.get_mut(..total) {
            Some(mut rest) => {
                for p in parts {
                    let (head, tail) = rest.split_at_mut(p.len());
                    head.copy_from_slice(p.as_bytes());
                    rest = tail;
                }
                key.len = total;
            }
            None => key.heap = Some(parts.concat()),
        }
        key
    }
}

impl std::ops::Deref for OriginKey {
    type Target = str;
    fn deref(&self) -> &str {
        match &self.heap {
            Some(s) => s,
            // Only whole `&str`s are copied in, so the prefix is UTF-8.
            None => std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default())
                .unwrap_or_default(),
        }
    }
}

/// What one response teaches about its origin, read once by the transport: the latest valid
/// `DPoP-Nonce` (RFC 9449 §8.1, §9) and the server's `Date` (its clock offset).
///
/// The transport attaches it (as an `http` extension) to every response it returns with a
/// nonce, so that error parsing, the nonce retry and the nonce store never parse that again; a
/// response without one carries nothing, and costs no extension map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OriginFacts {
    /// The response's `DPoP-Nonce`, when valid.
    pub(crate) dpop_nonce: Option<String>,
    /// The response's `Date`, when it parses.
    pub(crate) date: Option<std::time::SystemTime>,
}

impl OriginFacts {
    /// Read the facts from response headers.
    pub(crate) fn parse(headers: &http::HeaderMap) -> Self {
        OriginFacts {
            dpop_nonce: dpop_nonce(headers).map(str::to_owned),
            date: headers
                .get(http::header::DATE)
                .and_then(|v| parse_date(v.as_bytes())),
        }
    }

    /// What `resp` says of its nonce: the facts the transport attached to it, or the nonce
    /// read from its headers now (the transport attaches facts only to a response with a
    /// nonce; a response built elsewhere has none). `date` is the transport's alone: it reads
    /// it when the response arrives, and it is `None` here unless attached.
    pub(crate) fn of<B>(resp: &http::Response<B>) -> std::borrow::Cow<'_, OriginFacts> {
        match resp.extensions().get::<OriginFacts>() {
            Some(f) => std::borrow::Cow::Borrowed(f),
            None => std::borrow::Cow::Owned(OriginFacts {
                dpop_nonce: dpop_nonce(resp.headers()).map(str::to_owned),
                date: None,
            }),
        }
    }
}

/// The IMF-fixdate form of `Date` (RFC 9110 §5.6.7) is this long: `Sun, 06 Nov 1994 08:49:37 GMT`.
const FIXDATE_LEN: usize = 29;

thread_local! {
    /// The last `Date` this thread parsed, and its time: a server's responses within one
    /// second carry the same value, so most responses are not parsed again.
    static LAST_DATE: std::cell::Cell<Option<([u8; FIXDATE_LEN], std::time::SystemTime)>> =
        const { std::cell::Cell::new(None) };
}

/// A `Date` header value as a time, `None` when it is not an HTTP date. The last
/// IMF-fixdate value seen on this thread is remembered with its time.
fn parse_date(value: &[u8]) -> Option<std::time::SystemTime> {
    let fixed: Option<[u8; FIXDATE_LEN]> = value.try_into().ok();
    if let (Some(v), Some((last, at))) = (fixed, LAST_DATE.get()) {
        if v == last {
            return Some(at);
        }
    }
    let at = httpdate::parse_http_date(std::str::from_utf8(value).ok()?).ok()?;
    if let Some(v) = fixed {
        LAST_DATE.set(Some((v, at)));
    }
    Some(at)
}

/// Something that keeps per-origin state learnt from responses (the DPoP nonce store). The
/// transport calls it for every response it receives, retried attempts included.
pub(crate) trait OriginObserver: Send + Sync {
    /// `url`'s origin answered with `facts`.
    fn observe(&self, url: &url::Url, facts: &OriginFacts);
}

/// The clock offset of each origin that sent `Date` (one server's clock never sets the times
/// of what is sent to another), read on every proof: copy-on-write, so a read takes no lock.
#[derive(Debug, Default)]
pub(crate) struct OriginClocks(
    arc_swap::ArcSwap<
        std::collections::HashMap<String, Arc<ClockSkew>, foldhash::fast::RandomState>,
    >,
);

impl OriginClocks {
    /// The offset of the origin whose key ([`OriginKey::of`]) is `origin_key`, if known.
    pub(crate) fn offset(&self, origin_key: &str) -> Option<ClockOffset> {
        self.0.load().get(origin_key).map(|s| s.offset())
    }

    /// Record an offset the origin of `url` showed.
    pub(crate) fn observe(&self, url: &url::Url, offset_ms: i64) {
        let key = OriginKey::of(url);
        if let Some(s) = self.0.load().get(&*key) {
            s.observe_offset_ms(offset_ms);
            return;
        }
        let origin = key.to_owned();
        let skew = Arc::new(ClockSkew::new());
        skew.observe_offset_ms(offset_ms);
        self.0.rcu(|map| {
            let mut next = (**map).clone();
            // Bounded: a client talks to few origins; forget them all if it talks to many.
            if next.len() >= 256 {
                next.clear();
            }
            next.entry(origin.clone()).or_insert_with(|| skew.clone());
            next
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_facts_date_remembered_value_never_answers_for_another() {
        let t = |d: &str| parse_date(d.as_bytes());
        let a = t("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(t("Wed, 21 Oct 2015 07:28:00 GMT"), Some(a));
        // Same length, one second later: parsed, not the remembered time.
        let b = t("Wed, 21 Oct 2015 07:28:01 GMT").expect("date");
        assert_eq!(
            b.duration_since(a).ok(),
            Some(std::time::Duration::from_secs(1))
        );
        assert_eq!(t("Wed, 21 Oct 2015 07:28:00 GMT"), Some(a));
        // The obsolete forms are still dates; garbage of the remembered length is not.
        assert_eq!(t("Wednesday, 21-Oct-15 07:28:00 GMT"), Some(a));
        assert_eq!(t("Wed Oct 21 07:28:00 2015"), Some(a));
        assert_eq!(t("Wed, 21 Oct 2015 07:28:00 XYZ"), None);
        assert_eq!(t("Wed, 21 Oct 2015 07:28:00 GM\u{e9}"), None);
        assert_eq!(t(""), None);
        let mut invalid = *b"Wed, 21 Oct 2015 07:28:00 GMT";
        invalid[0] = 0xff;
        assert_eq!(parse_date(&invalid), None);
    }

    #[test]
    fn origin_facts_parsed_once_and_attached() {
        let mut h = http::HeaderMap::new();
        h.insert("dpop-nonce", http::HeaderValue::from_static("n-1"));
        h.insert(
            http::header::DATE,
            http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        let f = OriginFacts::parse(&h);
        assert_eq!(f.dpop_nonce.as_deref(), Some("n-1"));
        assert!(f.date.is_some());
        h.insert("dpop-nonce", http::HeaderValue::from_static("bad nonce"));
        h.insert(http::header::DATE, http::HeaderValue::from_static("soon"));
        assert_eq!(OriginFacts::parse(&h), OriginFacts::default());
        // Attached facts win over the headers (they were read when the response arrived).
        let mut resp = http::Response::new(());
        *resp.headers_mut() = h;
        assert_eq!(*OriginFacts::of(&resp), OriginFacts::default());
        resp.extensions_mut().insert(f.clone());
        assert_eq!(*OriginFacts::of(&resp), f);
        // Without attached facts, the nonce is read from the headers and the date left alone.
        let mut h = http::HeaderMap::new();
        h.insert("dpop-nonce", http::HeaderValue::from_static("n-2"));
        h.insert(
            http::header::DATE,
            http::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        let mut resp = http::Response::new(());
        *resp.headers_mut() = h;
        let read = OriginFacts::of(&resp);
        assert_eq!(read.dpop_nonce.as_deref(), Some("n-2"));
        assert_eq!(read.date, None);
    }
}

#[cfg(test)]
mod origin_key_tests {
    use super::*;

    #[test]
    fn origin_key_inline_equals_the_allocated_key() {
        for u in [
            "https://api.example/v1?x=1",
            "http://127.0.0.1:8080/a",
            "https://[::1]:9/",
            "https://xn--bcher-kva.example/",
        ] {
            let url = url::Url::parse(u).expect("url");
            let inline = OriginKey::of(&url);
            assert_eq!(&*inline, origin_key(&url), "{u}");
        }
        for (u, want) in [
            ("https://api.example/v1?x=1", "https://api.example:443 rs"),
            ("http://127.0.0.1:8080/a", "http://127.0.0.1:8080 rs"),
            ("http://h.example/", "http://h.example:80 rs"),
            ("https://[::1]:9/", "https://[::1]:9 rs"),
            ("https://h.example:1/", "https://h.example:1 rs"),
            ("https://h.example:65535/", "https://h.example:65535 rs"),
            ("https://h.example:10000/", "https://h.example:10000 rs"),
        ] {
            let url = url::Url::parse(u).expect("url");
            assert_eq!(&*OriginKey::of_with(&url, " rs"), want, "{u}");
        }
        assert_eq!(
            &*OriginKey::of(&url::Url::parse("https://api.example").expect("url")),
            "https://api.example:443"
        );
        // Across the inline buffer's end: the same text inline, at the edge and on the heap.
        for n in 60..100 {
            let host = format!("{}.example", "h".repeat(n));
            let url = url::Url::parse(&format!("https://{host}:8443/p")).expect("url");
            assert_eq!(
                &*OriginKey::of_with(&url, " rs"),
                format!("https://{host}:8443 rs")
            );
            assert_eq!(&*OriginKey::of(&url), format!("https://{host}:8443"));
        }
        // A host longer than the inline buffer falls back to the heap, same text.
        let long = format!("https://{}.example/", "a".repeat(250));
        let url = url::Url::parse(&long).expect("url");
        assert_eq!(
            &*OriginKey::of(&url),
            format!("https://{}.example:443", "a".repeat(250))
        );
    }
}
