//! [`FastHandles`]: the cache handles `access_token` keeps by the resource string its caller
//! passed, read on every hit.
//!
//! A hit must cost little more than the cache's own: a copy-on-write list behind an
//! `ArcSwap` takes a second guard (two atomic read-modify-writes) per hit on top of the
//! token's. So handles are bound to slots that are set once and never emptied: a lookup is
//! acquire loads and a string comparison. Whatever makes kept handles wrong (a resource, its
//! scope or its authority changed) moves an epoch instead of emptying anything: each slot
//! carries the epoch it was bound in, and only the current epoch's slots answer. Once every
//! slot is bound (an agent whose resources keep changing), later handles go to a
//! copy-on-write list, as fast as the path was before the slots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::cache::TokenHandle;

/// Slots per agent (and per principal's agent): about 40 bytes each.
const SLOTS: usize = 16;
/// Handles the copy-on-write list keeps for the current epoch.
const SPILLED: usize = 16;

struct Slot {
    epoch: u64,
    name: Box<str>,
    handle: TokenHandle,
}

type Spill = Vec<(u64, Box<str>, TokenHandle)>;

/// Handles by resource string, each valid for the epoch it was kept in.
#[derive(Default)]
pub(super) struct FastHandles {
    slots: [OnceLock<Slot>; SLOTS],
    /// Slots claimed so far (a claimed slot may still be being set).
    claimed: AtomicUsize,
    /// After the slots: the copy-on-write list.
    spill: arc_swap::ArcSwap<Spill>,
}

impl FastHandles {
    /// `f` applied to the handle kept for `name` in `epoch`, if there is one.
    #[inline]
    pub(super) fn with<R>(
        &self,
        epoch: u64,
        name: &str,
        f: impl FnOnce(&TokenHandle) -> R,
    ) -> Option<R> {
        match self.slot(epoch, name) {
            Ok(h) => Some(f(h)),
            Err(spilled) => spilled.then(|| self.spilled(epoch, name, f)).flatten(),
        }
    }

    /// The handle a slot keeps for `name` in `epoch`, borrowed for as long as these handles
    /// live (a slot is set once and never emptied). Else whether the copy-on-write list may
    /// hold it (every slot is bound).
    #[inline]
    pub(super) fn slot(&self, epoch: u64, name: &str) -> Result<&TokenHandle, bool> {
        let claimed = self.claimed.load(Ordering::Acquire);
        for slot in self.slots.iter().take(claimed) {
            if let Some(s) = slot.get() {
                if s.epoch == epoch && *s.name == *name {
                    return Ok(&s.handle);
                }
            }
        }
        Err(claimed >= SLOTS)
    }

    /// `f` applied to the handle the copy-on-write list keeps for `name` in `epoch`.
    pub(super) fn spilled<R>(
        &self,
        epoch: u64,
        name: &str,
        f: impl FnOnce(&TokenHandle) -> R,
    ) -> Option<R> {
        let spill = self.spill.load();
        spill
            .iter()
            .find(|(e, n, _)| *e == epoch && **n == *name)
            .map(|(_, _, h)| f(h))
    }

    /// Keep `handle` for `name` in `epoch` (read before the handle was resolved: a handle
    /// resolved across an epoch change is kept for the old epoch, where nobody looks).
    pub(super) fn keep(&self, epoch: u64, name: &str, handle: &TokenHandle) {
        if self.with(epoch, name, |_| ()).is_some() {
            // Another caller kept it first (a stampede of first calls).
            return;
        }
        if self.claimed.load(Ordering::Relaxed) < SLOTS {
            let at = self.claimed.fetch_add(1, Ordering::AcqRel);
            if let Some(slot) = self.slots.get(at) {
                let _ = slot.set(Slot {
                    epoch,
                    name: name.into(),
                    handle: handle.clone(),
                });
                return;
            }
        }
        self.spill.rcu(|cur| {
            let mut next: Spill = cur.iter().filter(|(e, ..)| *e == epoch).cloned().collect();
            if next.len() < SPILLED && !next.iter().any(|(_, n, _)| **n == *name) {
                next.push((epoch, name.into(), handle.clone()));
            }
            next
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cache::{CacheConfig, TokenCache, TokenKey, TokenSource};
    use std::sync::Arc;

    fn handle(cache: &TokenCache, client: &str) -> TokenHandle {
        cache.handle(&TokenKey::new("https://as.example", client), || {
            Arc::new(|_: Option<crate::token::TokenSet>| async {
                Err::<crate::token::TokenSet, _>(crate::error::Error::config("not used"))
            }) as Arc<dyn TokenSource>
        })
    }

    /// The client id of the key the kept handle is for.
    fn kept(f: &FastHandles, epoch: u64, name: &str) -> Option<String> {
        f.with(epoch, name, |h| h.key().client_id().to_owned())
    }

    #[test]
    fn access_token_fast_handles_answer_only_in_their_epoch() {
        let cache = TokenCache::new(CacheConfig::default());
        let f = FastHandles::default();
        let a = handle(&cache, "a");
        assert_eq!(kept(&f, 0, "https://r.example/"), None);
        f.keep(0, "https://r.example/", &a);
        assert_eq!(kept(&f, 0, "https://r.example/").as_deref(), Some("a"));
        assert_eq!(kept(&f, 0, "https://r.example/x"), None);
        assert_eq!(kept(&f, 0, ""), None);
        // A new epoch: the old slot no longer answers; a new handle is kept beside it.
        assert_eq!(kept(&f, 1, "https://r.example/"), None);
        let b = handle(&cache, "b");
        f.keep(1, "https://r.example/", &b);
        assert_eq!(kept(&f, 1, "https://r.example/").as_deref(), Some("b"));
        assert_eq!(kept(&f, 0, "https://r.example/").as_deref(), Some("a"));
        // Keeping again in the same epoch changes nothing and claims no slot.
        let claimed = f.claimed.load(Ordering::Relaxed);
        f.keep(1, "https://r.example/", &a);
        assert_eq!(f.claimed.load(Ordering::Relaxed), claimed);
    }

    #[test]
    fn access_token_fast_handles_spill_once_the_slots_are_bound() {
        let cache = TokenCache::new(CacheConfig::default());
        let f = FastHandles::default();
        let h = handle(&cache, "a");
        // Every slot bound, one epoch after the other (resources that keep changing).
        for epoch in 0..SLOTS as u64 {
            f.keep(epoch, "r", &h);
        }
        assert_eq!(f.claimed.load(Ordering::Relaxed), SLOTS);
        // Later epochs still find what they keep, from the list.
        for epoch in SLOTS as u64..SLOTS as u64 + 40 {
            assert!(kept(&f, epoch, "r").is_none());
            f.keep(epoch, "r", &h);
            f.keep(epoch, "s", &h);
            assert!(kept(&f, epoch, "r").is_some());
            assert!(kept(&f, epoch, "s").is_some());
            // The list holds the current epoch's handles only, and a bounded number of them.
            assert!(f.spill.load().iter().all(|(e, ..)| *e == epoch));
        }
        for i in 0..(SPILLED + 8) {
            f.keep(1000, &format!("r{i}"), &h);
        }
        assert_eq!(f.spill.load().len(), SPILLED);
        assert_eq!(f.claimed.load(Ordering::Relaxed), SLOTS);
    }

    #[test]
    fn access_token_fast_handles_concurrent_keeps_bind_one_slot_each_at_most() {
        let cache = TokenCache::new(CacheConfig::default());
        let f = Arc::new(FastHandles::default());
        let h = handle(&cache, "a");
        std::thread::scope(|s| {
            for t in 0..4 {
                let (f, h) = (f.clone(), h.clone());
                s.spawn(move || {
                    for i in 0..8 {
                        f.keep(0, &format!("r{}", (t + i) % 6), &h);
                    }
                });
            }
        });
        for i in 0..6 {
            assert!(kept(&f, 0, &format!("r{i}")).is_some(), "r{i}");
        }
        assert!(f.claimed.load(Ordering::Relaxed) <= SLOTS + 32);
    }
}
