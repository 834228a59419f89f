//! A string that must never leak.
//!
//! [`SecretString`] zeroizes its memory on drop, prints as `[redacted]` in `Debug` and
//! `Display`, has no `PartialEq` (compare with [`SecretString::ct_eq`], constant time) and gives its
//! value out only through [`SecretString::expose_secret`], which is easy to grep for.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string: client secret, access token, refresh token, key material.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(Zeroizing::new(value.into()))
    }

    /// The secret value. Every use is a place where it can leak: keep it to the wire.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &SecretString) -> bool {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// A short, non-reversible fingerprint for logs and audit events: the first 8 bytes of
    /// SHA-256, base64url. Enough to correlate, useless to an attacker.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.expose_secret())
    }
}

/// What [`SentSecrets`] puts where a secret was.
pub(crate) const REDACTED: &str = "[redacted]";

/// The shortest value [`SentSecrets`] redacts, in characters. Shorter values are not secrets
/// worth the name, and replacing them would garble every message.
const MIN_REDACTED_CHARS: usize = 4;

/// The secrets one request sent (client secret, assertion, refresh token, access token, device
/// code, PKCE verifier, ...), so that none of them comes back through server text: a server
/// that echoes them in `error_description`, `error_uri`, a challenge or a body must not get
/// them into an error or a log line.
///
/// Each value is kept as sent and in its form-urlencoded and JSON-escaped forms. Redaction
/// also covers the start of a secret at the end of text that was cut short (`…`).
#[derive(Clone, Default)]
pub(crate) struct SentSecrets {
    /// Longest first, so a secret that contains another is replaced whole.
    values: Vec<SecretString>,
}

impl fmt::Debug for SentSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SentSecrets({} values)", self.values.len())
    }
}

impl SentSecrets {
    /// No secrets yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Register a value that was sent.
    pub(crate) fn add(&mut self, value: &str) {
        if value.chars().count() < MIN_REDACTED_CHARS {
            return;
        }
        let urlencoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        let json = serde_json::to_string(value).unwrap_or_default();
        let json = json
            .strip_prefix('"')
            .and_then(|j| j.strip_suffix('"'))
            .unwrap_or(value);
        for form in [value, urlencoded.as_str(), json] {
            if !self.values.iter().any(|v| v.expose_secret() == form) {
                self.values.push(SecretString::new(form));
            }
        }
        self.values
            .sort_by_key(|v| std::cmp::Reverse(v.expose_secret().len()));
    }

    /// True when nothing was registered.
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Does `text` contain any registered secret?
    pub(crate) fn contains_secret(&self, text: &str) -> bool {
        self.values.iter().any(|v| text.contains(v.expose_secret()))
    }

    /// Replace every registered secret in `text` with `[redacted]`, including the start of one
    /// that ends text cut short with `…`.
    pub(crate) fn redact_in_place(&self, text: &mut String) {
        let mut out = None::<String>;
        for v in &self.values {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(v.expose_secret()) {
                out = Some(current.replace(v.expose_secret(), REDACTED));
            }
        }
        let current = out.as_deref().unwrap_or(text);
        if let Some(body) = current.strip_suffix('…') {
            let cut = self
                .values
                .iter()
                .filter_map(|v| secret_prefix_at_end(body, v.expose_secret()))
                .max();
            if let Some(cut) = cut {
                out = Some(format!("{}{REDACTED}…", &body[..body.len() - cut]));
            }
        }
        if let Some(out) = out {
            let old = std::mem::replace(text, out);
            drop(zeroize::Zeroizing::new(old));
        }
    }
}

/// The length in bytes of the longest proper prefix of `secret` (at least
/// `MIN_REDACTED_CHARS` characters) that `text` ends with.
fn secret_prefix_at_end(text: &str, secret: &str) -> Option<usize> {
    let min = secret
        .char_indices()
        .nth(MIN_REDACTED_CHARS)
        .map_or(secret.len(), |(i, _)| i);
    (min..secret.len())
        .rev()
        .filter(|k| secret.is_char_boundary(*k))
        .find(|k| text.ends_with(&secret[..*k]))
}

/// 16 random bytes (128 bits), base64url: for `jti`, `state`, nonces.
pub(crate) fn random_id() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The fingerprint of a secret value (see [`SecretString::fingerprint`]).
pub(crate) fn fingerprint(value: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(value.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..8])
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        SecretString::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_redacted_in_debug_and_display() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(s.expose_secret(), "hunter2");
    }

    #[test]
    fn hardening_05_sent_secrets_redacted_in_all_forms() {
        let mut s = SentSecrets::new();
        s.add("abc");
        assert!(s.is_empty(), "too short to redact");
        s.add("top/secret+1");
        s.add("agent-secret-long");
        s.add("agent-secret");
        s.add("say\"hi\"!");
        let mut t =
            r#"a top/secret+1 b top%2Fsecret%2B1 c say\"hi\"! agent-secret-long"#.to_owned();
        s.redact_in_place(&mut t);
        assert_eq!(t, "a [redacted] b [redacted] c [redacted] [redacted]");
        let mut cut = "xx agent-sec…".to_owned();
        s.redact_in_place(&mut cut);
        assert_eq!(cut, "xx [redacted]…");
        let mut fine = "nothing here".to_owned();
        s.redact_in_place(&mut fine);
        assert_eq!(fine, "nothing here");
        assert!(!format!("{s:?}").contains("secret"));
    }

    #[test]
    fn secret_ct_eq_and_fingerprint() {
        let a = SecretString::new("abc");
        assert!(a.ct_eq(&SecretString::new("abc")));
        assert!(!a.ct_eq(&SecretString::new("abd")));
        assert!(!a.ct_eq(&SecretString::new("abcd")));
        let fp = a.fingerprint();
        assert_eq!(fp.len(), 11);
        assert!(!fp.contains("abc"));
        assert_ne!(fp, SecretString::new("abd").fingerprint());
    }
}
