//! Time: the system clock, and each server's offset from it.
//!
//! The crate has no public clock: the system clock is read through the transport's
//! [`Clock`] (crate-internal, one place to swap it), and the cache's deadlines use the monotonic
//! clock. The transport estimates the offset between our clock and each server's from its `Date`
//! header ([`ClockSkew`]), so proofs and expiry maths stay right on a machine whose clock is
//! off; callers see the estimate as a plain [`ClockOffset`] value.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub(crate) trait Clock: Debug + Send + Sync {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Seconds since the Unix epoch for `t` (0 before the epoch).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// Server time minus local time, in milliseconds (saturating).
pub(crate) fn offset_ms(server_date: SystemTime, local: SystemTime) -> i64 {
    match server_date.duration_since(local) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Is an offset within [`MAX_OFFSET`]?
pub(crate) fn within_bound(offset_ms: i64) -> bool {
    offset_ms.unsigned_abs() <= MAX_OFFSET.as_millis() as u64
}

/// The largest offset believed (one day either way); a `Date` further off is ignored.
pub(crate) const MAX_OFFSET: Duration = Duration::from_secs(24 * 3600);

/// A server's clock offset from ours (server time minus local time), as learnt from its `Date`
/// headers: a plain value, copied out of the transport's estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClockOffset {
    ms: i64,
}

impl ClockOffset {
    /// Server time minus local time, in milliseconds: positive when the server is ahead.
    pub fn offset_ms(self) -> i64 {
        self.ms
    }

    /// The size of the offset, whichever way it goes.
    pub fn magnitude(self) -> Duration {
        Duration::from_millis(self.ms.unsigned_abs())
    }

    /// Is the server's clock ahead of ours?
    pub fn server_ahead(self) -> bool {
        self.ms > 0
    }

    /// Local time `t` as the server would read it (`t` itself, or the epoch, where that time
    /// cannot be represented).
    pub fn to_server(self, t: SystemTime) -> SystemTime {
        if self.server_ahead() {
            t.checked_add(self.magnitude()).unwrap_or(t)
        } else {
            t.checked_sub(self.magnitude()).unwrap_or(UNIX_EPOCH)
        }
    }
}

/// The estimated offset of a server's clock from ours, learnt from `Date` headers.
///
/// `Date` has one-second resolution, so offsets under two seconds are treated as zero; larger
/// ones are smoothed (the newest sample wins only when it moves the estimate by more than two
/// seconds) so one odd response cannot swing it. An offset larger than [`MAX_OFFSET`] is not a
/// clock that is off but a broken or hostile server, and is ignored.
#[derive(Debug, Default)]
pub(crate) struct ClockSkew {
    offset_ms: AtomicI64,
    seen: AtomicBool,
}

impl ClockSkew {
    /// A fresh estimate (offset zero).
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Record an offset (server minus local, in milliseconds); ignored beyond the bound.
    pub(crate) fn observe_offset_ms(&self, offset_ms: i64) {
        if !within_bound(offset_ms) {
            return;
        }
        // Date truncates to the second; a response also takes time. Below 2 s it is noise.
        let offset_ms = if offset_ms.abs() < 2_000 {
            0
        } else {
            offset_ms
        };
        let prev = self.offset_ms.load(Ordering::Relaxed);
        if !self.seen.swap(true, Ordering::Relaxed) || (prev - offset_ms).abs() > 2_000 {
            self.offset_ms.store(offset_ms, Ordering::Relaxed);
        }
    }

    /// The current estimate.
    pub(crate) fn offset(&self) -> ClockOffset {
        ClockOffset {
            ms: self.offset_ms.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Record a server `Date` observed at local time `local`, as the transport does.
    fn observe(s: &ClockSkew, server_date: SystemTime, local: SystemTime) {
        s.observe_offset_ms(offset_ms(server_date, local));
    }

    /// Record a raw `Date` header value (RFC 9110 §5.6.7); ignored when unparsable.
    fn observe_header(s: &ClockSkew, value: &str, local: SystemTime) {
        if let Ok(t) = httpdate::parse_http_date(value) {
            observe(s, t, local);
        }
    }

    #[test]
    fn clock_skew_ignores_subsecond_noise() {
        let s = ClockSkew::new();
        let now = SystemTime::now();
        observe(&s, now + Duration::from_millis(900), now);
        assert_eq!(s.offset().offset_ms(), 0);
    }

    #[test]
    fn clock_skew_tracks_server_ahead_and_behind() {
        let s = ClockSkew::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        observe(&s, now + Duration::from_secs(120), now);
        assert_eq!(s.offset().offset_ms(), 120_000);
        assert_eq!(s.offset().to_server(now), now + Duration::from_secs(120));
        observe(&s, now - Duration::from_secs(60), now);
        assert_eq!(s.offset().offset_ms(), -60_000);
        assert_eq!(s.offset().to_server(now), now - Duration::from_secs(60));
    }

    #[test]
    fn clock_skew_from_http_date_header() {
        let s = ClockSkew::new();
        let local = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        observe_header(&s, "Sun, 06 Nov 1994 08:59:37 GMT", local);
        assert_eq!(s.offset().offset_ms(), 600_000);
        observe_header(&s, "garbage", local);
        assert_eq!(s.offset().offset_ms(), 600_000);
    }

    #[test]
    fn hardening_11_clock_skew_ignores_offsets_beyond_a_day() {
        let s = ClockSkew::new();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        observe(&s, now + Duration::from_secs(3600), now);
        assert_eq!(s.offset().offset_ms(), 3_600_000);
        observe_header(&s, "Fri, 31 Dec 9999 23:59:59 GMT", now);
        observe(&s, now - Duration::from_secs(24 * 3600 + 1), now);
        assert_eq!(s.offset().offset_ms(), 3_600_000);
        // The bound itself is still believed.
        observe(&s, now - MAX_OFFSET, now);
        assert_eq!(s.offset().offset_ms(), -86_400_000);
        assert!(!within_bound(i64::MIN) && !within_bound(i64::MAX));
    }

    #[test]
    fn clock_offset_is_a_plain_signed_value() {
        let t = UNIX_EPOCH + Duration::from_secs(100);
        let behind = ClockOffset { ms: -15_000 };
        assert!(!behind.server_ahead());
        assert_eq!(behind.magnitude(), Duration::from_secs(15));
        assert_eq!(behind.to_server(t), t - Duration::from_secs(15));
        let ahead = ClockOffset { ms: 2_500 };
        assert!(ahead.server_ahead());
        assert_eq!(ahead.to_server(t), t + Duration::from_millis(2_500));
        let zero = ClockOffset::default();
        assert_eq!((zero.offset_ms(), zero.to_server(t)), (0, t));
        // The extremes neither overflow nor panic.
        assert_eq!(
            ClockOffset { ms: i64::MIN }.magnitude().as_millis(),
            1 << 63
        );
        let _ = ClockOffset { ms: i64::MIN }.to_server(t);
        let _ = ClockOffset { ms: i64::MAX }.to_server(t);
    }
}
