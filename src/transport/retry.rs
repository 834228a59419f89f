//! When to retry (the decision), kept apart from how long to wait (backon's backoff).

use std::time::{Duration, SystemTime};

/// Which failures of one request may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryPolicy {
    /// Safe to repeat: retried on connect errors, attempt timeouts, 5xx and 429.
    Idempotent,
    /// Spends something single-use (an authorization code, a rotating refresh token, a
    /// non-idempotent call): retried only when the request provably never left (connect error).
    ConnectOnly,
    /// Never retried.
    Never,
}

/// What the retry loop should do after one attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Stop,
    /// Retry; the server asked for at least this wait (`Retry-After`).
    Retry(Option<Duration>),
}

impl RetryPolicy {
    pub(crate) fn after_status(self, status: u16, retry_after: Option<Duration>) -> Decision {
        match self {
            RetryPolicy::Idempotent if status == 429 || (500..600).contains(&status) => {
                Decision::Retry(retry_after)
            }
            _ => Decision::Stop,
        }
    }

    pub(crate) fn after_error(self, connect: bool, timeout: bool) -> Decision {
        match self {
            RetryPolicy::Idempotent if connect || timeout => Decision::Retry(None),
            RetryPolicy::ConnectOnly if connect => Decision::Retry(None),
            _ => Decision::Stop,
        }
    }
}

/// Parse `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date relative to `now`.
/// A date in the past means "now"; unparsable values are ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decision_by_policy() {
        use RetryPolicy::*;
        assert_eq!(Idempotent.after_status(503, None), Decision::Retry(None));
        assert_eq!(
            Idempotent.after_status(429, Some(Duration::from_secs(2))),
            Decision::Retry(Some(Duration::from_secs(2)))
        );
        assert_eq!(Idempotent.after_status(400, None), Decision::Stop);
        assert_eq!(ConnectOnly.after_status(503, None), Decision::Stop);
        assert_eq!(ConnectOnly.after_error(true, false), Decision::Retry(None));
        assert_eq!(ConnectOnly.after_error(false, true), Decision::Stop);
        assert_eq!(Never.after_error(true, false), Decision::Stop);
        assert_eq!(Idempotent.after_error(false, true), Decision::Retry(None));
        assert_eq!(Idempotent.after_error(false, false), Decision::Stop);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:20:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
    }
}
