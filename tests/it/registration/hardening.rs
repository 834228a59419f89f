//! Registration against scripted servers: what is sent, echoed secrets, retries, limits and the
//! URL policy.

use std::time::Duration;

use serde_json::json;

use super::{transport, REDIRECT};
use crate::support::prelude::{
    register, ClientMetadata, Error, HttpTransport, OAuthErrorCode, SecretString, TransportConfig,
};
use crate::support::server::{Reply, Scripted};

const INITIAL_TOKEN: &str = "initial-token-never-echoed-7f3a";
const SERVER_SECRET: &str = "server-issued-secret-91bc";

fn metadata() -> ClientMetadata {
    ClientMetadata::new("hardened agent").redirect_uris([REDIRECT])
}

/// Every text of `e` a log or a caller could see.
fn all_text(e: &Error) -> String {
    let mut text = format!("{e} {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    text
}

#[tokio::test]
async fn registration_request_is_json_with_the_initial_access_token() {
    let s = Scripted::start().await;
    s.push(Reply::json(
        201,
        &json!({"client_id": "c-1", "client_secret": SERVER_SECRET, "client_secret_expires_at": 0}),
    ));
    let token = SecretString::new(INITIAL_TOKEN);
    let r = register(&transport(), &s.url("/register"), &metadata(), Some(&token))
        .await
        .unwrap();
    assert_eq!(r.client_id, "c-1");
    let req = &s.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path(), "/register");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {INITIAL_TOKEN}").as_str())
    );
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["client_name"], "hardened agent");
    assert_eq!(body["redirect_uris"], json!([REDIRECT]));
    assert_eq!(
        body["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(body["response_types"], json!(["code"]));
    assert_eq!(body["application_type"], "native");
    // The registration's Debug shows no secret.
    let dbg = format!("{r:?}");
    assert!(!dbg.contains(SERVER_SECRET), "{dbg}");
}

#[tokio::test]
async fn registration_echoed_secrets_never_leak() {
    let token = SecretString::new(INITIAL_TOKEN);
    let replies = [
        // An RFC 7591 error that quotes the initial access token.
        Reply::json(
            400,
            &json!({"error": "invalid_client_metadata",
                    "error_description": format!("token {INITIAL_TOKEN} is not allowed"),
                    "error_uri": format!("https://as.example/e?t={INITIAL_TOKEN}")}),
        ),
        // An error that carries a secret the server issued.
        Reply::json(
            400,
            &json!({"error": "invalid_redirect_uri",
                    "error_description": format!("would have been {SERVER_SECRET}"),
                    "client_secret": SERVER_SECRET}),
        ),
        // A bearer challenge quoting the token.
        Reply::status(401).header(
            "www-authenticate",
            &format!(r#"Bearer error="invalid_token", error_description="bad {INITIAL_TOKEN}""#),
        ),
        // A server error whose body is JSON with the secret, and one in plain text.
        Reply::json(
            500,
            &json!({"message": "oops", "client": {"client_secret": SERVER_SECRET,
                    "note": format!("{SERVER_SECRET} {INITIAL_TOKEN}")}}),
        ),
        Reply::status(502)
            .header("content-type", "text/plain")
            .body(format!("upstream said {INITIAL_TOKEN}")),
        // A success that is malformed after the secret was issued.
        Reply::json(
            201,
            &json!({"client_secret": SERVER_SECRET, "client_id": 5}),
        ),
        Reply::json(
            201,
            &json!({"client_secret": SERVER_SECRET, "client_id": "c",
                    "redirect_uris": SERVER_SECRET}),
        ),
        Reply::json(
            201,
            &json!({"client_id": "c", "registration_access_token": SERVER_SECRET,
                    "client_id_issued_at": SERVER_SECRET}),
        ),
    ];
    for reply in replies {
        let s = Scripted::start().await;
        s.push(reply.clone());
        let e = register(&transport(), &s.url("/register"), &metadata(), Some(&token))
            .await
            .expect_err("an error");
        let text = all_text(&e);
        assert!(
            !text.contains(INITIAL_TOKEN) && !text.contains(SERVER_SECRET),
            "{reply:?}\n{text}"
        );
        assert!(
            text.contains("[redacted]") || matches!(e, Error::InvalidResponse(_)),
            "{text}"
        );
        // The error names the request (as its context, or in the message).
        assert!(text.contains("client registration"), "{text}");
    }
}

#[tokio::test]
async fn registration_error_codes_are_kept() {
    let s = Scripted::start().await;
    s.push(Reply::json(
        400,
        &json!({"error": "invalid_software_statement", "error_description": "bad signature"}),
    ));
    let e = register(&transport(), &s.url("/register"), &metadata(), None)
        .await
        .unwrap_err();
    let o = e.oauth_error().unwrap();
    assert_eq!(
        o.error,
        OAuthErrorCode::Extension("invalid_software_statement".into())
    );
    assert_eq!(o.error_description.as_deref(), Some("bad signature"));
    assert!(!e.is_retryable());
}

#[tokio::test]
async fn registration_not_retried_once_it_may_have_reached_the_server() {
    let s = Scripted::start().await;
    for _ in 0..3 {
        s.push(Reply::status(503).header("retry-after", "0"));
    }
    let e = register(&transport(), &s.url("/register"), &metadata(), None)
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(503));
    assert!(e.is_retryable(), "the caller may decide to register again");
    assert_eq!(
        s.hits(),
        1,
        "a registration is never sent twice by the transport"
    );
}

#[tokio::test]
async fn registration_response_size_is_capped() {
    let mut config = TransportConfig::default();
    config.max_body_bytes = 4096;
    let transport = HttpTransport::with_config(config).unwrap();
    let s = Scripted::start().await;
    let padding = "x".repeat(8192);
    s.push(Reply::json(201, &json!({"client_id": "c", "pad": padding})));
    let e = register(&transport, &s.url("/register"), &metadata(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BodyTooLarge { limit: 4096 }), "{e:?}");
    // A streamed body is cut as well.
    let s = Scripted::start().await;
    s.push(
        Reply::status(201)
            .header("content-type", "application/json")
            .stream(16 * 1024, 1024, Duration::from_millis(1)),
    );
    let e = register(&transport, &s.url("/register"), &metadata(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::BodyTooLarge { .. }), "{e:?}");
}

#[tokio::test]
async fn registration_endpoint_must_be_https_off_loopback() {
    for (endpoint, insecure) in [
        ("http://as.example/register", true),
        ("https://user:pw@as.example/register", true),
        ("https://as.example/register#x", true),
        ("ftp://127.0.0.1/register", true),
        ("/register", false),
        ("not a url", false),
    ] {
        let e = register(&transport(), endpoint, &metadata(), None)
            .await
            .unwrap_err();
        if insecure {
            assert!(matches!(e, Error::InsecureUrl { .. }), "{endpoint}: {e:?}");
        } else {
            assert!(matches!(e, Error::Config(_)), "{endpoint}: {e:?}");
        }
    }
    // Private keys are never sent.
    let s = Scripted::start().await;
    let private = metadata().jwks(json!({"keys": [{"kty": "EC", "crv": "P-256",
        "x": "AA", "y": "AA", "d": "AA"}]}));
    let e = register(&transport(), &s.url("/register"), &private, None)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert_eq!(s.hits(), 0);
}
