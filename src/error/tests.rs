//! Unit tests of `error`.

use super::*;

#[test]
fn error_codes_round_trip() {
    for code in [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "invalid_token",
        "insufficient_scope",
        "invalid_dpop_proof",
        "use_dpop_nonce",
        "authorization_pending",
        "slow_down",
        "access_denied",
        "expired_token",
        "server_error",
        "temporarily_unavailable",
        "unsupported_token_type",
        "custom_code",
    ] {
        assert_eq!(OAuthErrorCode::parse(code).as_str(), code);
    }
    assert_eq!(
        OAuthErrorCode::parse("x_y"),
        OAuthErrorCode::Extension("x_y".into())
    );
}

#[test]
fn error_retryable_classification() {
    let http = |status| Error::Http {
        status,
        body: String::new(),
        retry_after: None,
        context: None,
    };
    assert!(http(503).is_retryable());
    assert!(http(429).is_retryable());
    assert!(!http(404).is_retryable());
    assert!(!Error::from(OAuthError::new(OAuthErrorCode::InvalidGrant, 400)).is_retryable());
    assert!(
        Error::from(OAuthError::new(OAuthErrorCode::TemporarilyUnavailable, 400)).is_retryable()
    );
    assert!(!Error::config("x").is_retryable());
    assert_eq!(http(418).status(), Some(418));
}

#[test]
fn error_sanitize_strips_control_and_caps() {
    assert_eq!(sanitize("a\r\nb", 10), "ab");
    assert_eq!(sanitize("abcdef", 3), "abc…");
}

#[test]
fn hardening_08_sanitize_strips_bidi_separators_and_invisible_characters() {
    let hostile = "a\u{202E}b\u{2028}c\u{2029}d\u{200B}e\u{FEFF}f\u{2066}g\u{2069}h\u{200E}i\u{061C}j\u{00AD}k\u{2060}l\u{E0041}m\u{0085}n";
    assert_eq!(sanitize(hostile, 100), "abcdefghijklmn");
    // The cap counts kept characters only, and the ellipsis marks a cut.
    assert_eq!(sanitize("\u{200B}\u{200B}abc", 3), "abc");
    assert_eq!(sanitize("ab\u{202E}cd", 3), "abc…");
    // Ordinary non-ASCII text is kept.
    assert_eq!(sanitize("Grüße, 東京 — ok", 100), "Grüße, 東京 — ok");
    let e = Error::from(OAuthError {
        error_description: Some(sanitize("x\u{202E}y", 10)),
        ..OAuthError::new(OAuthErrorCode::InvalidGrant, 400)
    });
    assert!(!e.to_string().contains('\u{202E}'));
}

#[test]
fn hardening_15_context_named_in_display_without_query() {
    let url = url::Url::parse("https://user:pw@as.example/token?tenant=t1#f").expect("url");
    let ctx = ErrorContext::new("token request (client_credentials)", &url);
    assert_eq!(ctx.endpoint, "https://as.example/token");
    let e = Error::Http {
        status: 403,
        body: String::new(),
        retry_after: None,
        context: None,
    }
    .with_context(&ctx);
    assert_eq!(
        e.to_string(),
        "token request (client_credentials) at https://as.example/token: unexpected HTTP status 403"
    );
    assert_eq!(e.context(), Some(&ctx));
    let o = Error::from(OAuthError::new(OAuthErrorCode::InvalidClient, 401)).with_context(&ctx);
    assert_eq!(
        o.to_string(),
        "token request (client_credentials) at https://as.example/token: OAuth error `invalid_client` (HTTP 401)"
    );
    let t = Error::Transport {
        kind: TransportErrorKind::Connect,
        source: Some(std::sync::Arc::new(std::io::Error::other("refused"))),
    }
    .with_context(&ctx);
    assert_eq!(
        t.to_string(),
        "token request (client_credentials) at https://as.example/token: transport error (connect)"
    );
    assert_eq!(t.context(), Some(&ctx));
    assert!(t.is_retryable());
    let source = std::error::Error::source(&t).expect("source");
    assert!(source.to_string().ends_with(": refused"), "{source}");
    assert_eq!(
        source.source().map(ToString::to_string).as_deref(),
        Some("refused")
    );
    let i = Error::invalid("bad json").with_context(&ctx);
    assert_eq!(
        i.to_string(),
        "invalid response: token request (client_credentials) at https://as.example/token: bad json"
    );
}

#[test]
fn error_is_small() {
    assert!(
        std::mem::size_of::<Error>() <= 64,
        "{}",
        std::mem::size_of::<Error>()
    );
}
