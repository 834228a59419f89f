//! How tokens and times are shown: a summary without the token unless asked, JSON for
//! scripts, times in local time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use agent_oauth::TokenSet;
use serde_json::{json, Value};

/// A time as local RFC 3339 (seconds), e.g. `2026-12-02T15:04:05+01:00`.
pub(crate) fn local_time(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Local> = t.into();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// Seconds since the epoch as local time; `None` when out of range.
pub(crate) fn local_time_of_epoch(secs: i64) -> Option<String> {
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .map(local_time)
}

/// `in 4m 59s` / `expired 3s ago`.
pub(crate) fn relative(t: SystemTime) -> String {
    let now = SystemTime::now();
    match t.duration_since(now) {
        Ok(left) => format!("in {}", span(left)),
        Err(e) => format!("expired {} ago", span(e.duration())),
    }
}

fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

/// The binding of a token set, in words.
fn binding(tokens: &TokenSet) -> String {
    match &tokens.cnf {
        Some(b) => {
            let mut parts = Vec::new();
            if let Some(jkt) = &b.jkt {
                parts.push(format!("DPoP jkt={jkt}"));
            }
            if let Some(x5t) = &b.x5t_s256 {
                parts.push(format!("mTLS x5t#S256={x5t}"));
            }
            if parts.is_empty() {
                "bearer".to_owned()
            } else {
                parts.join(", ")
            }
        }
        None => "bearer (not sender-constrained)".to_owned(),
    }
}

/// The summary lines of a token set; the token itself only when `print_token`.
pub(crate) fn summary(tokens: &TokenSet, print_token: bool) -> String {
    let mut lines = vec![
        format!("token type:    {}", tokens.token_type.as_str()),
        format!(
            "scope:         {}",
            if tokens.scope.is_empty() {
                "(none)".to_owned()
            } else {
                tokens.scope.to_string()
            }
        ),
        match tokens.expires_at {
            Some(t) => format!("expires:       {} ({})", local_time(t), relative(t)),
            None => "expires:       (not given)".to_owned(),
        },
        format!("binding:       {}", binding(tokens)),
        format!("access token:  fp={}", tokens.access_token.fingerprint()),
    ];
    if let Some(rt) = &tokens.refresh_token {
        lines.push(format!(
            "refresh token: fp={} (kept in the token store)",
            rt.fingerprint()
        ));
    }
    if let Some(t) = &tokens.issued_token_type {
        lines.push(format!("issued type:   {t}"));
    }
    if print_token {
        lines.push(tokens.access_token.secret().to_owned());
    }
    lines.join("\n")
}

/// The token set as JSON (the access token included: `--json` is asked for it; the refresh
/// token never, it stays in the store).
pub(crate) fn token_json(tokens: &TokenSet) -> Value {
    let exp = tokens
        .expires_at
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    json!({
        "access_token": tokens.access_token.secret(),
        "token_type": tokens.token_type.as_str(),
        "scope": tokens.scope.to_string(),
        "expires_at": exp,
        "expires_at_local": tokens.expires_at.map(local_time),
        "cnf": tokens.cnf.as_ref().map(|b| json!({"jkt": b.jkt, "x5t#S256": b.x5t_s256})),
        "access_token_fingerprint": tokens.access_token.fingerprint(),
        "refresh_token_fingerprint": tokens.refresh_token.as_ref().map(|r| r.fingerprint()),
        "issued_token_type": tokens.issued_token_type,
    })
}
