//! Server-provided DPoP nonces (RFC 9449 §8, §9), remembered per origin.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How many origins a [`NonceCache`] remembers; the least recently updated is dropped first.
const MAX_ORIGINS: usize = 1024;

use crate::transport::origin::{is_valid_nonce, OriginFacts, OriginKey, OriginObserver};

/// How long a request that finds no nonce for an origin waits, by default, for the answer to
/// the first request to that origin (see [`NonceCache::with_first_use_wait`]).
const FIRST_USE_WAIT: Duration = Duration::from_secs(10);

/// The latest `DPoP-Nonce` each origin sent, for the next proof to that origin.
///
/// Bounded (1024 origins, the least recently updated evicted first), shareable across
/// threads and across agents ([`AgentBuilder::nonce_cache`](crate::AgentBuilder::nonce_cache)).
/// Nonces are validated (`NQCHAR`, at most 512 bytes); anything else is ignored.
///
/// The first DPoP request to an origin that has sent no nonce yet goes out alone: concurrent
/// requests to the same origin wait (at most [`with_first_use_wait`](Self::with_first_use_wait))
/// for its answer and then use the nonce it brought, instead of all being rejected with
/// `use_dpop_nonce`. Once an origin has answered without sending a nonce, nobody waits for it.
#[derive(Debug)]
pub struct NonceCache {
    inner: Mutex<Entries>,
    first_use_wait: Duration,
}

impl Default for NonceCache {
    fn default() -> Self {
        NonceCache {
            inner: Mutex::new(Entries::default()),
            first_use_wait: FIRST_USE_WAIT,
        }
    }
}

/// The maps' hasher: keys are a few origins, looked up several times a request; foldhash is
/// several times faster than SipHash on them and randomly seeded per process.
type Hasher = foldhash::fast::RandomState;

#[derive(Debug, Default)]
struct Entries {
    /// origin key -> (nonce, sequence number of its last update); the nonce shared, so that
    /// the proofs reading it (every DPoP request) copy no string.
    map: HashMap<String, (Arc<str>, u64), Hasher>,
    seq: u64,
    /// Origins whose first request is in flight, and the waiters for its answer.
    probing: HashMap<String, Arc<tokio::sync::Notify>, Hasher>,
    /// Origins that answered a request without sending a nonce: no need to wait for them.
    settled: HashSet<String, Hasher>,
}

/// Which server of an origin a DPoP request goes to. An authorization server and a resource
/// on one origin are two servers with their own nonce policies (RFC 9449 §8 and §9): the token
/// endpoint answering without a nonce says nothing about the resource, so the first-use
/// single flight is kept per origin and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceRole {
    /// A token request (RFC 9449 §8).
    AuthorizationServer,
    /// A protected resource request (RFC 9449 §9).
    Resource,
}

impl NonceRole {
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            NonceRole::AuthorizationServer => " as",
            NonceRole::Resource => " rs",
        }
    }
}

/// The nonce store seen from the token endpoint: what the transport observes on token
/// requests is kept as the authorization server's nonce.
pub(crate) struct ServerNonces<'a>(pub(crate) &'a NonceCache);

impl OriginObserver for ServerNonces<'_> {
    fn observe(&self, url: &url::Url, facts: &OriginFacts) {
        if let Some(nonce) = &facts.dpop_nonce {
            self.0.set_for(url, NonceRole::AuthorizationServer, nonce);
        }
    }
}

/// Held by the first request to an origin without a nonce; dropping it wakes the requests
/// waiting for that origin (see [`NonceCache::acquire`]).
pub(crate) struct FirstUse<'a> {
    cache: &'a NonceCache,
    key: String,
}

impl Drop for FirstUse<'_> {
    fn drop(&mut self) {
        let notify = self.cache.lock().probing.remove(&self.key);
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }
}

impl NonceCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set how long a request that finds no nonce for an origin waits for the answer to the
    /// first request to that origin (default 10 s). Past it, the request goes out without one.
    pub fn with_first_use_wait(mut self, wait: Duration) -> Self {
        self.first_use_wait = wait;
        self
    }

    /// The nonce for a DPoP request to `url`. With none known and the origin not known to do
    /// without, the first caller gets `(None, Some(guard))` and sends; later callers wait
    /// (bounded) until the guard is dropped, then read the nonce the first answer brought.
    #[cfg(test)]
    pub(crate) async fn acquire(
        &self,
        url: &url::Url,
        role: NonceRole,
    ) -> (Option<String>, Option<FirstUse<'_>>) {
        let key = OriginKey::of_with(url, role.suffix());
        let guard = self.acquire_key(&key).await;
        (self.get_key(&key).map(|n| n.to_string()), guard)
    }

    /// The first-use turn for the key of an origin and role (`OriginKey::of_with(url,
    /// role.suffix())`, built once by the caller): `Some(guard)` for the first DPoP request to
    /// an origin that has sent no nonce yet (it sends, the others wait for its answer); `None`
    /// once a nonce is known (the proof reads it when it is signed, so it is not copied here),
    /// the origin is known to do without, or after waiting (bounded) for the first answer.
    pub(crate) async fn acquire_key(&self, probe: &str) -> Option<FirstUse<'_>> {
        let notify = {
            let mut entries = self.lock();
            if entries.map.contains_key(probe) || entries.settled.contains(probe) {
                return None;
            }
            match entries.probing.get(probe) {
                Some(n) => n.clone(),
                None => {
                    if entries.probing.len() >= MAX_ORIGINS {
                        // Bounded: past this many origins in flight, nobody waits.
                        return None;
                    }
                    let key = probe.to_owned();
                    entries
                        .probing
                        .insert(key.clone(), Arc::new(tokio::sync::Notify::new()));
                    return Some(FirstUse { cache: self, key });
                }
            }
        };
        // Boxed: only the requests that find a first request in flight wait, and its timer
        // and waiter would otherwise sit in every DPoP request's future.
        Box::pin(self.wait_for_first_use(probe, notify)).await;
        None
    }

    /// Wait (bounded) until the first request to `probe`'s origin has its answer.
    async fn wait_for_first_use(&self, probe: &str, notify: Arc<tokio::sync::Notify>) {
        let notified = notify.notified();
        tokio::pin!(notified);
        // Registered before the state is read again, so a wake-up in between is not lost.
        notified.as_mut().enable();
        let still_probing = self
            .lock()
            .probing
            .get(probe)
            .is_some_and(|n| Arc::ptr_eq(n, &notify));
        if still_probing {
            let _ = tokio::time::timeout(self.first_use_wait, notified).await;
        }
    }

    /// Record that `url`'s origin answered a DPoP request of `role` without sending a nonce.
    #[cfg(test)]
    pub(crate) fn settle(&self, url: &url::Url, role: NonceRole) {
        self.settle_key(&OriginKey::of_with(url, role.suffix()));
    }

    /// Record that the origin and role of `key` (`OriginKey::of_with(url, role.suffix())`)
    /// answered a DPoP request without sending a nonce.
    pub(crate) fn settle_key(&self, key: &str) {
        let mut entries = self.lock();
        if entries.settled.contains(key) {
            return;
        }
        if entries.settled.len() >= MAX_ORIGINS {
            entries.settled.clear();
        }
        entries.settled.insert(key.to_owned());
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // The map stays consistent even if a holder panicked: every update is a single insert.
        crate::sync::lock(&self.inner)
    }

    /// The nonce to use for a request to the resource at `url`'s origin, if it sent one. (The
    /// nonces of token requests are kept apart: an authorization server and a resource on one
    /// origin are two servers.)
    pub fn get(&self, url: &url::Url) -> Option<String> {
        self.get_for(url, NonceRole::Resource)
            .map(|n| n.to_string())
    }

    /// Remember `nonce` for resource requests to `url`'s origin. An invalid nonce (not
    /// `NQCHAR`, empty or longer than 512 bytes) is ignored.
    pub fn set(&self, url: &url::Url, nonce: &str) {
        self.set_for(url, NonceRole::Resource, nonce);
    }

    /// The nonce to use for a token request to the authorization server at `url`'s origin, if
    /// it sent one (RFC 9449 §8).
    pub fn token_endpoint_nonce(&self, url: &url::Url) -> Option<String> {
        self.get_for(url, NonceRole::AuthorizationServer)
            .map(|n| n.to_string())
    }

    /// Remember `nonce` for token requests to `url`'s origin (invalid nonces are ignored).
    pub fn set_token_endpoint_nonce(&self, url: &url::Url, nonce: &str) {
        self.set_for(url, NonceRole::AuthorizationServer, nonce);
    }

    /// The nonce for a request of `role` to `url`'s origin.
    pub(crate) fn get_for(&self, url: &url::Url, role: NonceRole) -> Option<Arc<str>> {
        self.get_key(&OriginKey::of_with(url, role.suffix()))
    }

    /// What the store knows of the origin and role of `key` (a
    /// [`NonceSlot::store_key`](super::NonceSlot::store_key)): `Some(Some(nonce))` for the
    /// nonce it sent last, `Some(None)` once it answered without one, `None` while nothing is
    /// known (its first request, with [`acquire_key`](Self::acquire_key)'s turn, is to come
    /// or in flight). One lock, for a request that skips the turn when nothing is to wait for.
    #[cfg(feature = "middleware")]
    pub(crate) fn known_key(&self, key: &str) -> Option<Option<Arc<str>>> {
        let entries = self.lock();
        match entries.map.get(key) {
            Some((nonce, _)) => Some(Some(nonce.clone())),
            None => entries.settled.contains(key).then_some(None),
        }
    }

    /// The nonce for the key of an origin and role (see [`acquire_key`](Self::acquire_key)).
    pub(crate) fn get_key(&self, key: &str) -> Option<Arc<str>> {
        self.lock().map.get(key).map(|(nonce, _)| nonce.clone())
    }

    /// Remember `nonce` for requests of `role` to `url`'s origin.
    pub(crate) fn set_for(&self, url: &url::Url, role: NonceRole, nonce: &str) {
        if !is_valid_nonce(nonce) {
            return;
        }
        // The key on the stack: a server answering every request with the nonce it already
        // sent (the usual case) costs no allocation.
        let key = OriginKey::of_with(url, role.suffix());
        let mut entries = self.lock();
        entries.seq += 1;
        let seq = entries.seq;
        if let Some(slot) = entries.map.get_mut(&*key) {
            if *slot.0 != *nonce {
                slot.0 = Arc::from(nonce);
            }
            slot.1 = seq;
            return;
        }
        if entries.map.len() >= MAX_ORIGINS {
            let oldest = entries
                .map
                .iter()
                .min_by_key(|(_, (_, s))| *s)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                entries.map.remove(&oldest);
            }
        }
        entries.map.insert(key.to_owned(), (Arc::from(nonce), seq));
    }

    /// Read `DPoP-Nonce` from a response of `url`'s origin; if present and valid, remember it
    /// and return it.
    pub fn update_from_headers(&self, url: &url::Url, headers: &http::HeaderMap) -> Option<String> {
        let facts = OriginFacts::parse(headers);
        self.observe(url, &facts);
        facts.dpop_nonce
    }

    /// How many origins have a nonce.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }
}

/// The nonce store learns from every response the transport receives (retried attempts and
/// successful answers included): the transport reads `DPoP-Nonce` once, this keeps it.
impl OriginObserver for NonceCache {
    fn observe(&self, url: &url::Url, facts: &OriginFacts) {
        if let Some(nonce) = &facts.dpop_nonce {
            self.set(url, nonce);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::transport::origin::MAX_NONCE_LEN;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn dpop_nonce_per_origin_isolation() {
        let c = NonceCache::new();
        c.set(&u("https://a.example/token"), "n1");
        c.set(&u("https://a.example:8443/"), "n2");
        c.set(&u("http://a.example/"), "n3");
        assert_eq!(
            c.get(&u("https://a.example/other?q")).as_deref(),
            Some("n1")
        );
        assert_eq!(c.get(&u("https://A.EXAMPLE:443/")).as_deref(), Some("n1"));
        assert_eq!(c.get(&u("https://a.example:8443/x")).as_deref(), Some("n2"));
        assert_eq!(c.get(&u("http://a.example:80/")).as_deref(), Some("n3"));
        assert_eq!(c.get(&u("https://b.example/")), None);
        assert_eq!(c.get(&u("https://sub.a.example/")), None);
        c.set(&u("https://a.example/"), "n1b");
        assert_eq!(c.get(&u("https://a.example/")).as_deref(), Some("n1b"));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn dpop_nonce_invalid_ignored() {
        let c = NonceCache::new();
        let url = u("https://a.example/");
        c.set(&url, "good");
        let long = "a".repeat(MAX_NONCE_LEN + 1);
        for bad in [
            "",
            "has space",
            "quo\"te",
            "back\\slash",
            "tab\t",
            "é",
            "\u{7f}",
            &long,
        ] {
            c.set(&url, bad);
            assert_eq!(c.get(&url).as_deref(), Some("good"), "{bad:?}");
        }
        let max = "b".repeat(MAX_NONCE_LEN);
        c.set(&url, &max);
        assert_eq!(c.get(&url).as_deref(), Some(max.as_str()));
        assert!(is_valid_nonce("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
        assert!(is_valid_nonce("!#[]~"));
    }

    #[test]
    fn dpop_nonce_bounded_evicts_oldest() {
        let c = NonceCache::new();
        for i in 0..MAX_ORIGINS + 10 {
            c.set(&u(&format!("https://h{i}.example/")), &format!("n{i}"));
            // Keep the first origin fresh: it must survive.
            c.set(&u("https://h0.example/"), "n0");
        }
        assert_eq!(c.len(), MAX_ORIGINS);
        assert_eq!(c.get(&u("https://h0.example/")).as_deref(), Some("n0"));
        assert_eq!(c.get(&u("https://h1.example/")), None);
        let last = MAX_ORIGINS + 9;
        assert_eq!(
            c.get(&u(&format!("https://h{last}.example/"))),
            Some(format!("n{last}"))
        );
    }

    #[test]
    fn dpop_nonce_update_from_headers() {
        let c = NonceCache::new();
        let url = u("https://rs.example/resource");
        let mut h = http::HeaderMap::new();
        assert_eq!(c.update_from_headers(&url, &h), None);
        h.insert("DPoP-Nonce", "eyJ7S_zG.eyJH0-Z.HX4w-7v".parse().unwrap());
        assert_eq!(
            c.update_from_headers(&url, &h).as_deref(),
            Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
        );
        assert_eq!(
            c.get(&u("https://rs.example/")).as_deref(),
            Some("eyJ7S_zG.eyJH0-Z.HX4w-7v")
        );
        // Invalid value: ignored, previous nonce kept.
        h.insert("dpop-nonce", "bad nonce".parse().unwrap());
        assert_eq!(c.update_from_headers(&url, &h), None);
        h.insert(
            "dpop-nonce",
            http::HeaderValue::from_bytes(b"\xffopaque").unwrap(),
        );
        assert_eq!(c.update_from_headers(&url, &h), None);
        assert_eq!(c.get(&url).as_deref(), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
    }

    #[test]
    fn dpop_nonce_store_shares_one_copy_with_every_proof_until_it_changes() {
        let c = NonceCache::new();
        let url = u("https://rs.example/a");
        let key = OriginKey::of_with(&url, NonceRole::Resource.suffix());
        c.set(&url, "n1");
        let (a, b) = (c.get_key(&key).unwrap(), c.get_key(&key).unwrap());
        assert!(Arc::ptr_eq(&a, &b), "each read copies the nonce");
        // The server sending the same nonce again changes nothing.
        c.set(&url, "n1");
        assert!(Arc::ptr_eq(&a, &c.get_key(&key).unwrap()));
        // A new nonce replaces it; the old copy stays valid for whoever holds it.
        c.set(&url, "n2");
        let n2 = c.get_key(&key).unwrap();
        assert_eq!((&*a, &*n2), ("n1", "n2"));
        assert_eq!(c.get(&url).as_deref(), Some("n2"));
        assert_eq!(c.token_endpoint_nonce(&url), None);
    }

    #[test]
    fn dpop_nonce_cache_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<NonceCache>();
        let c = std::sync::Arc::new(NonceCache::new());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        c.set(&u(&format!("https://t{t}.example/")), &format!("n{i}"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.get(&u("https://t3.example/")).as_deref(), Some("n199"));
    }

    #[tokio::test]
    async fn hardening_19_first_use_is_single_flight_and_bounded() {
        let c = std::sync::Arc::new(NonceCache::new());
        let url = u("https://rs.example/a");
        let (nonce, guard) = c.acquire(&url, NonceRole::Resource).await;
        assert!(nonce.is_none());
        let guard = guard.expect("first caller sends");
        let waiter = {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { c.acquire(&url, NonceRole::Resource).await.0 })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        c.set(&url, "n1");
        drop(guard);
        assert_eq!(waiter.await.unwrap().as_deref(), Some("n1"));
        // With a nonce, nobody waits.
        assert_eq!(
            c.acquire(&url, NonceRole::Resource).await.0.as_deref(),
            Some("n1")
        );

        // The wait is bounded.
        let c = NonceCache::new().with_first_use_wait(std::time::Duration::from_millis(10));
        let (_, held) = c.acquire(&url, NonceRole::Resource).await;
        assert!(held.is_some());
        let (nonce, guard) = c.acquire(&url, NonceRole::Resource).await;
        assert!(nonce.is_none() && guard.is_none());
        drop(held);

        // An origin that answered without a nonce is not waited for.
        let c = NonceCache::new();
        let (_, held) = c.acquire(&url, NonceRole::Resource).await;
        c.settle(&url, NonceRole::Resource);
        drop(held);
        let (nonce, guard) = c.acquire(&url, NonceRole::Resource).await;
        assert!(nonce.is_none() && guard.is_none());
    }
}
