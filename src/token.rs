//! Tokens: secrets with metadata.
//!
//! [`AccessToken`] and [`RefreshToken`] hold their value in a [`SecretString`]: zeroized on drop,
//! `[redacted]` when printed. A [`TokenSet`] stores absolute times, so a token reloaded from a
//! store after its expiry is seen as expired (a relative `expires_in` would not be).

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::secret::SecretString;

macro_rules! secret_token {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            /// Wrap a token value.
            pub fn new(value: impl Into<String>) -> Self {
                $name(SecretString::new(value))
            }
            /// The token value; keep it to the wire.
            pub fn secret(&self) -> &str {
                self.0.expose_secret()
            }
            /// A short non-reversible fingerprint for logs and audit events.
            pub fn fingerprint(&self) -> String {
                self.0.fingerprint()
            }
            /// Constant-time comparison.
            pub fn ct_eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_token!(
    /// An access token (RFC 6749 §1.4).
    AccessToken
);
secret_token!(
    /// A refresh token (RFC 6749 §1.5). Rotated ones are never sent again.
    RefreshToken
);

/// How an access token is presented (RFC 6749 §7.1). Compared case-insensitively on parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Bearer` (RFC 6750).
    Bearer,
    /// `DPoP` (RFC 9449): sender-constrained to a proof-of-possession key.
    Dpop,
    /// `N_A` (RFC 8693 §2.2.1): not an access token.
    NotApplicable,
    /// Any other type, as sent.
    Other(String),
}

impl TokenType {
    /// Parse a `token_type` value, ignoring case (servers send `bearer`, `dpop`).
    pub fn parse(s: &str) -> Self {
        if s.eq_ignore_ascii_case("bearer") {
            TokenType::Bearer
        } else if s.eq_ignore_ascii_case("dpop") {
            TokenType::Dpop
        } else if s.eq_ignore_ascii_case("n_a") {
            TokenType::NotApplicable
        } else {
            TokenType::Other(crate::error::sanitize(s, 32))
        }
    }

    /// The authorization scheme to send it with.
    pub fn as_str(&self) -> &str {
        match self {
            TokenType::Bearer => "Bearer",
            TokenType::Dpop => "DPoP",
            TokenType::NotApplicable => "N_A",
            TokenType::Other(s) => s,
        }
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scope values (RFC 6749 §3.3): order-insensitive and free of duplicates, so
/// `"b a a"` and `"a b"` are the same scope.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope(BTreeSet<String>);

impl Scope {
    /// Parse a space-delimited scope string.
    pub fn parse(s: &str) -> Self {
        Scope(
            s.split(' ')
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// The empty scope.
    pub fn empty() -> Self {
        Scope::default()
    }

    /// No scope values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when every value of `self` is in `other`.
    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    /// Does the set contain `value`?
    pub fn contains(&self, value: &str) -> bool {
        self.0.contains(value)
    }

    /// The values, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The union of two sets.
    pub fn union(&self, other: &Scope) -> Scope {
        Scope(self.0.union(&other.0).cloned().collect())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for v in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(v)?;
            first = false;
        }
        Ok(())
    }
}

impl From<&str> for Scope {
    fn from(s: &str) -> Self {
        Scope::parse(s)
    }
}

impl From<String> for Scope {
    fn from(s: String) -> Self {
        Scope::parse(&s)
    }
}

impl<S: AsRef<str>> FromIterator<S> for Scope {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Scope(
            iter.into_iter()
                .flat_map(|s| {
                    s.as_ref()
                        .split(' ')
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .collect(),
        )
    }
}

/// What a token is bound to (the `cnf` claim, RFC 7800): a DPoP key thumbprint (RFC 9449 §6)
/// and/or a client certificate thumbprint (RFC 8705 §3); neither for a bearer token.
///
/// One type says it everywhere: the binding a [`TokenKey`](crate::cache::TokenKey) caches tokens
/// under, and what a [`TokenSet`] was bound to ([`TokenSet::cnf`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub struct Binding {
    /// `jkt`: RFC 7638 thumbprint of the DPoP key.
    pub jkt: Option<String>,
    /// `x5t#S256`: SHA-256 thumbprint of the client certificate.
    pub x5t_s256: Option<String>,
    /// Read from the (unverified) JWT access token, rather than inferred from the key or
    /// certificate the request was made with. Always `false` in a cache key.
    pub from_token: bool,
}

impl Binding {
    /// No binding: a bearer token.
    pub fn bearer() -> Self {
        Binding::default()
    }

    /// Bound to the DPoP key with this RFC 7638 thumbprint (`cnf.jkt`).
    pub fn dpop(jkt: impl Into<String>) -> Self {
        Binding {
            jkt: Some(jkt.into()),
            ..Binding::default()
        }
    }

    /// Bound to the client certificate with this SHA-256 thumbprint (`cnf.x5t#S256`).
    pub fn mtls(x5t_s256: impl Into<String>) -> Self {
        Binding::bearer().with_mtls(x5t_s256)
    }

    /// This binding, with the client certificate replaced by (or added as) `x5t_s256`; a DPoP
    /// key stays (mTLS client authentication with DPoP-bound tokens).
    pub fn with_mtls(mut self, x5t_s256: impl Into<String>) -> Self {
        self.x5t_s256 = Some(x5t_s256.into());
        self
    }

    /// Bound to nothing.
    pub fn is_bearer(&self) -> bool {
        self.jkt.is_none() && self.x5t_s256.is_none()
    }

    /// The `cnf` claim's value as a binding; members other than strings are ignored.
    fn from_cnf(cnf: &serde_json::Value) -> Self {
        let get = |k: &str| cnf.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        Binding {
            jkt: get("jkt"),
            x5t_s256: get("x5t#S256"),
            from_token: true,
        }
    }
}

/// What a token endpoint returned (RFC 6749 §5.1), with absolute times.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenSet {
    /// The access token.
    pub access_token: AccessToken,
    /// How to present it.
    pub token_type: TokenType,
    /// When it was received (local clock).
    pub issued_at: SystemTime,
    /// When it expires (local clock, skew-corrected), if known.
    pub expires_at: Option<SystemTime>,
    /// The refresh token, if one was issued (or kept from before, when the server did not rotate).
    pub refresh_token: Option<RefreshToken>,
    /// The granted scope (the requested scope when the server omitted it, RFC 6749 §5.1).
    pub scope: Scope,
    /// `issued_token_type` (RFC 8693 §2.2.1), for token exchange.
    pub issued_token_type: Option<String>,
    /// The OpenID Connect ID token, if any (not validated by this crate).
    pub id_token: Option<SecretString>,
    /// Other response members, as sent.
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// What the token is bound to: the `cnf` of a JWT access token when visible, else the DPoP
    /// key / client certificate the request was made with; `None` for a bearer token.
    pub cnf: Option<Binding>,
}

impl TokenSet {
    /// A token set with just an access token (for tests and custom grants).
    pub fn new(access_token: AccessToken, token_type: TokenType, issued_at: SystemTime) -> Self {
        TokenSet {
            access_token,
            token_type,
            issued_at,
            expires_at: None,
            refresh_token: None,
            scope: Scope::empty(),
            issued_token_type: None,
            id_token: None,
            extra: serde_json::Map::new(),
            cnf: None,
        }
    }

    /// The `cnf` claim of a JWT access token, decoded WITHOUT verifying the signature (the
    /// token is the resource's to verify; this is for bookkeeping). `None` for opaque and
    /// encrypted tokens, tokens over 64 KiB and tokens without `cnf`.
    pub fn unverified_cnf(&self) -> Option<Binding> {
        let claims = crate::jwt::unverified_claims(self.access_token.secret()).ok()?;
        claims.get("cnf").map(Binding::from_cnf)
    }

    /// The token's lifetime as issued, if known.
    pub fn lifetime(&self) -> Option<Duration> {
        self.expires_at
            .map(|e| e.duration_since(self.issued_at).unwrap_or(Duration::ZERO))
    }

    /// Time left at `now`; `None` when the expiry is unknown.
    pub fn remaining(&self, now: SystemTime) -> Option<Duration> {
        self.expires_at
            .map(|e| e.duration_since(now).unwrap_or(Duration::ZERO))
    }

    /// Has it expired at `now`?
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let t = AccessToken::new("eyJsecret");
        assert_eq!(format!("{t:?}"), "AccessToken([redacted])");
        let r = RefreshToken::new("rt-secret");
        let mut set = TokenSet::new(t, TokenType::Bearer, SystemTime::now());
        set.refresh_token = Some(r);
        set.id_token = Some(SecretString::new("idtok"));
        let dbg = format!("{set:?}");
        for s in ["eyJsecret", "rt-secret", "idtok"] {
            assert!(!dbg.contains(s), "{dbg}");
        }
    }

    #[test]
    fn token_type_case_insensitive() {
        assert_eq!(TokenType::parse("bearer"), TokenType::Bearer);
        assert_eq!(TokenType::parse("DPOP"), TokenType::Dpop);
        assert_eq!(TokenType::parse("N_A"), TokenType::NotApplicable);
        assert_eq!(TokenType::parse("mac"), TokenType::Other("mac".into()));
    }

    #[test]
    fn scope_normalized_and_subset() {
        let a = Scope::parse("b a  a");
        assert_eq!(a, Scope::parse("a b"));
        assert_eq!(a.to_string(), "a b");
        assert!(Scope::parse("a").is_subset(&a));
        assert!(!Scope::parse("a c").is_subset(&a));
        assert_eq!(Scope::from_iter(["x y", "z"]).to_string(), "x y z");
    }

    #[test]
    fn token_unverified_cnf_from_jwt() {
        use base64::Engine as _;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!(
            "{}.{}.sig",
            b64(r#"{"alg":"ES256"}"#),
            b64(
                r#"{"cnf":{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I","x5t#S256":"bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}"#
            )
        );
        let t = TokenSet::new(AccessToken::new(jwt), TokenType::Dpop, SystemTime::now());
        let cnf = t.unverified_cnf().expect("cnf");
        assert_eq!(
            cnf.jkt.as_deref(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
        assert_eq!(
            cnf.x5t_s256.as_deref(),
            Some("bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2")
        );
        assert!(cnf.from_token);
        for opaque in ["opaque", "a.b", "a.%%%.c", &format!("x.{}.y", b64("[]"))] {
            let t = TokenSet::new(
                AccessToken::new(opaque),
                TokenType::Bearer,
                SystemTime::now(),
            );
            assert_eq!(t.unverified_cnf(), None, "{opaque}");
        }
    }

    #[test]
    fn token_unverified_cnf_refuses_encrypted_and_huge_tokens() {
        use base64::Engine as _;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let cnf = b64(r#"{"cnf":{"jkt":"k"}}"#);
        let token =
            |t: String| TokenSet::new(AccessToken::new(t), TokenType::Dpop, SystemTime::now());
        assert!(token(format!("h.{cnf}.s")).unverified_cnf().is_some());
        // A JWE (five parts) cannot be read; its second part is not a payload.
        assert_eq!(token(format!("h.{cnf}.iv.ct.tag")).unverified_cnf(), None);
        let huge = format!("h.{cnf}.{}", "s".repeat(crate::jwt::MAX_LEN));
        assert_eq!(token(huge).unverified_cnf(), None);
        // A `cnf` that is not an object binds nothing, but is still read from the token.
        let odd = token(format!("h.{}.s", b64(r#"{"cnf":5}"#))).unverified_cnf();
        assert_eq!(
            odd,
            Some(Binding {
                from_token: true,
                ..Binding::bearer()
            })
        );
    }

    #[test]
    fn token_binding_constructors() {
        assert!(Binding::bearer().is_bearer());
        let d = Binding::dpop("j");
        assert_eq!((d.jkt.as_deref(), d.x5t_s256.as_deref()), (Some("j"), None));
        let m = Binding::mtls("x");
        assert_eq!((m.jkt.as_deref(), m.x5t_s256.as_deref()), (None, Some("x")));
        let both = d.with_mtls("x");
        assert_eq!(both.jkt.as_deref(), Some("j"));
        assert_eq!(both.x5t_s256.as_deref(), Some("x"));
        assert!(!both.is_bearer() && !both.from_token);
        // The old name is the same type.
        let c: Binding = both.clone();
        assert_eq!(c, both);
    }

    #[test]
    fn token_expiry_absolute() {
        let now = SystemTime::now();
        let mut t = TokenSet::new(AccessToken::new("a"), TokenType::Bearer, now);
        assert!(!t.is_expired(now));
        t.expires_at = Some(now + Duration::from_secs(10));
        assert_eq!(t.lifetime(), Some(Duration::from_secs(10)));
        assert!(t.is_expired(now + Duration::from_secs(10)));
        assert_eq!(
            t.remaining(now + Duration::from_secs(20)),
            Some(Duration::ZERO)
        );
    }
}
