//! What an entry holds: [`CachedToken`], a token with its deadlines on the cache's coarse
//! monotonic clock and its request material (the `Authorization` value and `ath`), built once.

use std::fmt;
use std::time::{Duration, SystemTime};

use rand::Rng as _;

use super::CacheConfig;
use crate::error::{Error, Result};
use crate::token::TokenSet;

/// A cached access token with its deadlines on the monotonic clock. It never carries a
/// refresh token.
pub struct CachedToken {
    pub(super) token: TokenSet,
    pub(super) refresh_at: Option<Mono>,
    pub(super) expires_at: Option<Mono>,
    /// What sending the token needs, computed once per token on first use: the
    /// `Authorization` value and the DPoP `ath`.
    pub(super) wire: std::sync::OnceLock<Wire>,
}

/// The request material of one token, built once. The header value's bytes are zeroed when
/// the last copy of it is dropped.
pub(super) struct Wire {
    authorization: std::result::Result<http::HeaderValue, ()>,
    ath: String,
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("token", &self.token)
            .field("refresh_at", &self.refresh_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl CachedToken {
    pub(super) fn new(mut token: TokenSet, config: &CacheConfig) -> Self {
        // A refresh token belongs to its grant, never to the cache.
        token.refresh_token = None;
        let now = mono_now();
        let wall = SystemTime::now();
        let (refresh_at, expires_at) = match token.remaining(wall) {
            None => (None, None),
            Some(remaining) => {
                let lifetime = token.lifetime().unwrap_or(remaining).max(remaining);
                let margin = config.expiry_margin.min(lifetime / 10);
                // Configuration is checked here, not trusted: a NaN or infinite fraction would
                // make `mul_f64` panic.
                let fraction = finite_fraction(config.refresh_fraction);
                let lead = config
                    .refresh_skew
                    .max(lifetime.mul_f64(fraction))
                    .min(lifetime / 2);
                let jitter_fraction = finite_fraction(config.jitter);
                let jitter = if jitter_fraction > 0.0 {
                    lead.mul_f64(rand::thread_rng().gen_range(0.0..jitter_fraction))
                } else {
                    Duration::ZERO
                };
                let expires = remaining.saturating_sub(margin);
                let refresh = remaining.saturating_sub(lead.saturating_add(jitter));
                (Some(plus(now, refresh)), Some(plus(now, expires)))
            }
        };
        CachedToken {
            token,
            refresh_at,
            expires_at,
            wire: std::sync::OnceLock::new(),
        }
    }

    /// The token (its `refresh_token` is always `None`).
    pub fn token(&self) -> &TokenSet {
        &self.token
    }

    fn wire(&self) -> &Wire {
        self.wire.get_or_init(|| {
            let scheme: &[u8] = match self.token.token_type {
                crate::token::TokenType::Dpop => b"DPoP ",
                _ => b"Bearer ",
            };
            let secret = self.token.access_token.secret().as_bytes();
            let mut bytes =
                zeroize::Zeroizing::new(Vec::with_capacity(scheme.len() + secret.len()));
            bytes.extend_from_slice(scheme);
            bytes.extend_from_slice(secret);
            let authorization = http::HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(
                ZeroizedBytes(bytes),
            ))
            .map(|mut v| {
                v.set_sensitive(true);
                v
            })
            .map_err(|_| ());
            Wire {
                authorization,
                ath: crate::dpop::ath(self.token.access_token.secret()),
            }
        })
    }

    /// The `Authorization` header value for this token (`DPoP <token>` or `Bearer <token>`),
    /// built on first use and shared by every request that sends the token; marked sensitive,
    /// and its bytes are zeroed when the last copy is dropped.
    ///
    /// # Errors
    /// [`Error::InvalidResponse`] when the token has bytes a header cannot carry.
    pub(crate) fn authorization(&self) -> Result<http::HeaderValue> {
        self.wire()
            .authorization
            .clone()
            .map_err(|()| Error::invalid("access token is not a valid header value"))
    }

    /// The DPoP `ath` of this token (RFC 9449 §4.2), computed once.
    pub(crate) fn ath(&self) -> &str {
        &self.wire().ath
    }

    pub(super) fn state(&self, now: Mono) -> Freshness {
        match (self.refresh_at, self.expires_at) {
            (_, Some(e)) if now >= e => Freshness::Expired,
            (Some(r), _) if now >= r => Freshness::RefreshAhead,
            _ => Freshness::Fresh,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Freshness {
    Fresh,
    RefreshAhead,
    Expired,
}

/// The cache's monotonic clock: the coarse one (`CLOCK_MONOTONIC_COARSE` on Linux, a few
/// milliseconds of resolution), which costs about a quarter of `mono_now()` on the hit path.
/// Refresh and expiry deadlines have seconds of slack, so the resolution does not matter.
pub(super) type Mono = coarsetime::Instant;

/// Reads the clock without writing coarsetime's process-wide "recent" value (which
/// `Instant::now()` updates on every call, a contended cache line on the hit path); this cache
/// never reads `recent()`.
#[inline]
pub(super) fn mono_now() -> Mono {
    coarsetime::Instant::now_without_cache_update()
}

/// Bytes that are zeroed when dropped, as the owner of a shared `Bytes`.
struct ZeroizedBytes(zeroize::Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroizedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// `t + d`, saturating: lifetimes come from servers, stores and configuration, and a deadline
/// centuries away must not overflow the monotonic clock (it means "not in this process's life").
pub(super) fn plus(t: Mono, d: Duration) -> Mono {
    t.saturating_add(coarsetime::Duration::from(d))
}

/// A fraction from configuration as a usable factor in `0.0..=1.0` (NaN counts as 0).
fn finite_fraction(f: f64) -> f64 {
    if f.is_nan() {
        0.0
    } else {
        f.clamp(0.0, 1.0)
    }
}
