//! Hardening: what a server says ends up in errors and logs. Echoed secrets are redacted, text
//! that could forge or hide log content is stripped, nonces are validated, token types must
//! match the request, and every error names the request it answers.

use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::support::prelude::TokenExchangeRequest;
use crate::support::prelude::{
    AssertionKey, AuthorizationServer, ClientAuth, DpopKey, Error, HttpTransport, OAuthClient,
    OAuthErrorCode, RefreshToken, ServerMetadata, TokenParams, TokenType,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::json;

use crate::per_server;
use crate::support::server::{guard, Reply, Scripted, TestHttp};
use crate::support::servers::{Kind, Knobs, Server, SERVICE};

const CLIENT_ID: &str = "agent";
const CLIENT_SECRET: &str = "s3cret-of-the-agent";
const REFRESH: &str = "rt-0123456789abcdef";
const ACCESS: &str = "at-fedcba9876543210";
const DEVICE_CODE: &str = "dc-GmRhmhcxhwAzkoEqiMEg";
const REDIRECT: &str = "http://127.0.0.1:1/cb";

// ------------------------------------------------------------------ capture of tracing output

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Run `f` with every tracing event and span of this thread written to a buffer, and return
/// its output with the text. Tests here use the current-thread runtime, so tasks the crate or
/// the test server spawn run on this thread too.
async fn logged<F: Future>(f: F) -> (F::Output, String) {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = {
        let _guard = tracing::subscriber::set_default(subscriber);
        f.await
    };
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

// ------------------------------------------------------------------ an echoing server

/// How the echo server answers token, revocation and introspection requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// 400 with the secrets in `error_description`, `error_uri` and a `WWW-Authenticate`
    /// `error_description`; also with invisible characters inside each secret.
    OAuthBody,
    /// 400 with padding, then a secret cut by the description cap.
    CutDescription,
    /// 500 `text/plain` whose body is the secrets.
    PlainBody,
    /// 200 with the first secret as `token_type`, so the parse error quotes it.
    TokenTypeEcho,
}

#[derive(Clone)]
struct EchoState {
    mode: Arc<Mutex<Mode>>,
    /// Every secret value the server received and sent back.
    echoed: Arc<Mutex<Vec<String>>>,
    base: String,
}

/// Form members that are not secrets and are not echoed.
const PUBLIC_MEMBERS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_assertion_type",
    "scope",
    "subject_token_type",
    "redirect_uri",
    "token_type_hint",
];

async fn echo(State(st): State<EchoState>, headers: HeaderMap, body: Bytes) -> Response {
    let mut secrets: Vec<String> = url::form_urlencoded::parse(&body)
        .filter(|(k, _)| !PUBLIC_MEMBERS.contains(&k.as_ref()))
        .map(|(_, v)| v.into_owned())
        .collect();
    if let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        secrets.push(basic.to_owned());
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .unwrap();
        let decoded = String::from_utf8(decoded).unwrap();
        let (_, secret) = decoded.split_once(':').unwrap();
        let secret: String = url::form_urlencoded::parse(format!("s={secret}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned();
        secrets.push(secret);
    }
    assert!(!secrets.is_empty(), "the request carried secrets");
    st.echoed.lock().unwrap().extend(secrets.iter().cloned());
    let joined = secrets.join(" ");
    // The same values with a zero-width space and a BOM inside: they must not reassemble
    // into the secret once the invisible characters are stripped, and leak.
    let hidden: Vec<String> = secrets
        .iter()
        .map(|s| {
            let (a, b) = s.split_at(3);
            format!("{a}\u{200B}{b}\u{FEFF}")
        })
        .collect();
    let mode = *st.mode.lock().unwrap();
    match mode {
        Mode::OAuthBody => (
            StatusCode::BAD_REQUEST,
            [
                ("content-type", "application/json".to_owned()),
                (
                    "www-authenticate",
                    format!(r#"Bearer error="invalid_request", error_description="{joined}""#),
                ),
            ],
            json!({
                "error": "invalid_request",
                "error_description": format!("you sent {joined}; hidden {}", hidden.join(" ")),
                "error_uri": format!("{}/errors?sent={}", st.base, secrets.join("&")),
            })
            .to_string(),
        )
            .into_response(),
        Mode::CutDescription => {
            // 512 is the cap on `error_description`: the secret starts 8 characters before it.
            let padding = "x".repeat(512 - 8);
            (
                StatusCode::BAD_REQUEST,
                [("content-type", "application/json")],
                json!({
                    "error": "invalid_request",
                    "error_description": format!("{padding}{}", secrets[0]),
                })
                .to_string(),
            )
                .into_response()
        }
        Mode::PlainBody => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            format!("failed for {joined}"),
        )
            .into_response(),
        Mode::TokenTypeEcho => (
            StatusCode::OK,
            [("content-type", "application/json")],
            json!({"access_token": "issued", "token_type": secrets[0]}).to_string(),
        )
            .into_response(),
    }
}

async fn device(State(st): State<EchoState>) -> Response {
    axum::Json(json!({
        "device_code": DEVICE_CODE,
        "user_code": "WDJB-MJHT",
        "verification_uri": format!("{}/device", st.base),
        "expires_in": 60,
        "interval": 1,
    }))
    .into_response()
}

struct EchoServer {
    http: TestHttp,
    state: EchoState,
}

impl EchoServer {
    async fn start() -> EchoServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = EchoState {
            mode: Arc::new(Mutex::new(Mode::OAuthBody)),
            echoed: Arc::default(),
            base,
        };
        let router = Router::new()
            .route("/token", post(echo))
            .route("/revoke", post(echo))
            .route("/introspect", post(echo))
            .route("/device_authorization", post(device))
            .with_state(state.clone());
        EchoServer {
            http: TestHttp::start_on(listener, router),
            state,
        }
    }

    fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    fn echoed(&self) -> Vec<String> {
        self.state.echoed.lock().unwrap().clone()
    }

    fn client(&self, auth: ClientAuth) -> OAuthClient {
        client_for(&self.http.origin(), auth, None)
    }
}

/// Metadata for a server at `base`. The token endpoint carries a query, which no error may
/// repeat.
fn metadata(base: &str) -> ServerMetadata {
    let doc = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token?tenant=t-query-1"),
        "revocation_endpoint": format!("{base}/revoke?tenant=t-query-1"),
        "introspection_endpoint": format!("{base}/introspect"),
        "device_authorization_endpoint": format!("{base}/device_authorization"),
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "dpop_signing_alg_values_supported": ["ES256"],
    });
    ServerMetadata::from_json(doc.to_string().as_bytes(), base).unwrap()
}

fn client_for(base: &str, auth: ClientAuth, dpop: Option<DpopKey>) -> OAuthClient {
    let server =
        AuthorizationServer::from_metadata(metadata(base), HttpTransport::new().unwrap()).unwrap();
    let b = OAuthClient::builder(server, CLIENT_ID).auth(auth);
    match dpop {
        Some(k) => b.dpop(k).build(),
        None => b.build(),
    }
}

/// `err`'s `Display` and `Debug` and the `logs` hold no value the server echoed, and show
/// that something was redacted.
fn assert_redacted(what: &str, err: &Error, logs: &str, echoed: &[String]) {
    let display = err.to_string();
    let debug = format!("{err:?}");
    assert!(!echoed.is_empty(), "{what}: nothing was echoed");
    for secret in echoed {
        assert!(
            !display.contains(secret.as_str()),
            "{what}: Display leaks {secret}: {display}"
        );
        assert!(
            !debug.contains(secret.as_str()),
            "{what}: Debug leaks {secret}: {debug}"
        );
        assert!(
            !logs.contains(secret.as_str()),
            "{what}: logs leak {secret}: {logs}"
        );
    }
    assert!(
        debug.contains("[redacted]"),
        "{what}: the echo reached the error, redacted: {debug}"
    );
    assert!(
        logs.contains("request failed") && logs.contains("[redacted]"),
        "{what}: the failure was logged, redacted: {logs}"
    );
}

fn es256_assertion_key() -> AssertionKey {
    let pem = DpopKey::generate().to_pkcs8_pem().unwrap();
    AssertionKey::from_pem("ES256", pem.expose_secret()).unwrap()
}

// ------------------------------------------------------------------ item 5

#[tokio::test]
async fn hardening_05_echoed_client_secret_and_refresh_token_are_redacted() {
    let s = EchoServer::start().await;
    for (i, auth) in [
        ClientAuth::client_secret_post(CLIENT_SECRET),
        ClientAuth::client_secret_basic(CLIENT_SECRET),
    ]
    .into_iter()
    .enumerate()
    {
        let client = s.client(auth);
        let (err, logs) = logged(guard(
            client.refresh(&RefreshToken::new(REFRESH), &TokenParams::new()),
        ))
        .await;
        let err = err.unwrap_err();
        let echoed = s.echoed();
        assert!(echoed.iter().any(|e| e == CLIENT_SECRET), "{echoed:?}");
        assert!(echoed.iter().any(|e| e == REFRESH), "{echoed:?}");
        assert_redacted(&format!("refresh #{i}"), &err, &logs, &echoed);
        // A 4xx ends the refresh token; the message keeps the server's description, redacted.
        assert!(
            matches!(&err, Error::ReauthorizationRequired(m) if m.contains("[redacted]")),
            "{err:?}"
        );
        // The same echo on a grant that does not end a refresh token keeps the OAuth error
        // whole: description, URI and challenge, each redacted.
        let (err, logs) = logged(guard(client.client_credentials(&TokenParams::new()))).await;
        let err = err.unwrap_err();
        assert_redacted(
            &format!("client credentials #{i}"),
            &err,
            &logs,
            &s.echoed(),
        );
        let o = err.oauth_error().expect("an OAuth error");
        assert_eq!(o.error, OAuthErrorCode::InvalidRequest);
        assert!(
            o.error_description
                .as_deref()
                .unwrap()
                .contains("[redacted]"),
            "{o:?}"
        );
        assert!(o.error_uri.as_deref().unwrap().contains("[redacted]"));
        let challenge = &o.challenges[0];
        assert!(challenge
            .error_description()
            .unwrap()
            .contains("[redacted]"));
    }
}

#[tokio::test]
async fn hardening_05_echoed_assertion_device_code_verifier_and_tokens_are_redacted() {
    let s = EchoServer::start().await;

    // private_key_jwt: the assertion is minted per attempt; the server echoes what it got.
    let client = s.client(ClientAuth::private_key_jwt(es256_assertion_key()));
    let (err, logs) = logged(guard(client.client_credentials(&TokenParams::new()))).await;
    let echoed = s.echoed();
    assert!(echoed.iter().any(|e| e.starts_with("eyJ")), "{echoed:?}");
    assert_redacted("assertion", &err.unwrap_err(), &logs, &echoed);

    // Device code, on the poll after the device authorization.
    let client = s.client(ClientAuth::client_secret_post(CLIENT_SECRET));
    let (err, logs) = logged(guard(client.device_flow(&TokenParams::new(), |_| {}))).await;
    let echoed = s.echoed();
    assert!(echoed.iter().any(|e| e == DEVICE_CODE), "{echoed:?}");
    assert_redacted("device code", &err.unwrap_err(), &logs, &echoed);

    // PKCE verifier and authorization code.
    let client = s.client(ClientAuth::none());
    let pending = client
        .authorization_url(REDIRECT, &TokenParams::new())
        .await
        .unwrap();
    let callback = url::Url::parse(&format!(
        "{REDIRECT}?code=code-4F2hR6z8&state={}&iss={}",
        pending.state,
        s.http.origin()
    ))
    .unwrap();
    let (err, logs) = logged(guard(client.exchange_code(&pending, &callback))).await;
    let echoed = s.echoed();
    assert!(
        echoed.iter().any(|e| e == pending.verifier.secret()),
        "{echoed:?}"
    );
    assert_redacted("PKCE verifier", &err.unwrap_err(), &logs, &echoed);

    // An access token, as the subject of a token exchange and at the revocation endpoint.
    let (err, logs) = logged(guard(
        client.token_exchange(&TokenExchangeRequest::new(ACCESS), None),
    ))
    .await;
    let echoed = s.echoed();
    assert!(echoed.iter().any(|e| e == ACCESS), "{echoed:?}");
    assert_redacted("subject token", &err.unwrap_err(), &logs, &echoed);
    let (err, logs) = logged(guard(client.revoke(ACCESS, Some("access_token")))).await;
    assert_redacted("revocation", &err.unwrap_err(), &logs, &s.echoed());
}

#[tokio::test]
async fn hardening_05_secret_in_plain_body_cut_text_and_parse_errors_is_redacted() {
    let s = EchoServer::start().await;
    let client = s.client(ClientAuth::client_secret_post(CLIENT_SECRET));
    let (rt, params) = (RefreshToken::new(REFRESH), TokenParams::new());
    let refresh = || client.refresh(&rt, &params);

    // A plain-text 500 body quoting the secrets.
    s.set_mode(Mode::PlainBody);
    let (err, logs) = logged(guard(refresh())).await;
    let err = err.unwrap_err();
    assert!(matches!(err, Error::Http { status: 500, .. }), "{err:?}");
    assert_redacted("plain body", &err, &logs, &s.echoed());

    // A secret cut in half by the description cap: its first characters are redacted too.
    s.set_mode(Mode::CutDescription);
    let (err, logs) = logged(guard(refresh())).await;
    let err = err.unwrap_err();
    // The refresh token is ended (a 4xx); the message quotes the cut description.
    let description = match &err {
        Error::ReauthorizationRequired(m) => m.clone(),
        other => panic!("{other:?}"),
    };
    assert!(description.ends_with("[redacted]…"), "{description}");
    let first = &s.echoed()[0];
    assert!(!description.contains(&first[..8]), "{description}");
    assert!(!logs.contains(&first[..8]));

    // A successful answer whose parse error would quote what the client sent.
    s.set_mode(Mode::TokenTypeEcho);
    let (err, logs) = logged(guard(refresh())).await;
    let err = err.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
    let first = &s.echoed()[0];
    assert!(!err.to_string().contains(&first[..8]), "{err}");
    assert!(!logs.contains(&first[..8]), "{logs}");
}

// ------------------------------------------------------------------ item 8

#[tokio::test]
async fn hardening_08_bidi_separators_and_zero_width_never_reach_display() {
    let s = Scripted::start().await;
    let description =
        "ok\u{202E}txt.exe\u{2028}FAKE LOG LINE\u{2029}\u{200B}\u{FEFF}\u{2066}x\u{200F}\u{061C}";
    s.route(
        "/token",
        Reply::json(
            400,
            &json!({
                "error": "invalid_grant",
                "error_description": description,
                "error_uri": "https://as.example/\u{202E}gpj.exe",
            }),
        )
        .header(
            "www-authenticate",
            "Bearer error=\"invalid_grant\", error_description=\"a\u{202E}b\"",
        ),
    );
    let client = client_for(
        &s.origin(),
        ClientAuth::client_secret_basic(CLIENT_SECRET),
        None,
    );
    let err = guard(client.client_credentials(&TokenParams::new()))
        .await
        .unwrap_err();
    let display = err.to_string();
    let debug = format!("{err:?}");
    for c in [
        '\u{202E}', '\u{2028}', '\u{2029}', '\u{200B}', '\u{FEFF}', '\u{2066}', '\u{200F}',
        '\u{061C}',
    ] {
        assert!(!display.contains(c), "U+{:04X} in {display:?}", c as u32);
    }
    assert!(display.contains("oktxt.exeFAKE LOG LINEx"), "{display:?}");
    let o = err.oauth_error().unwrap();
    assert_eq!(o.error_uri.as_deref(), Some("https://as.example/gpj.exe"));
    for c in ['\u{202E}', '\u{2028}', '\u{200B}', '\u{FEFF}'] {
        assert!(!debug.contains(c), "U+{:04X} in {debug}", c as u32);
    }
}

#[tokio::test]
async fn hardening_08_oversized_or_invalid_dpop_nonce_is_not_kept_in_errors() {
    let s = Scripted::start().await;
    let huge = "n".repeat(10 * 1024);
    s.push(Reply::json(400, &json!({"error": "invalid_request"})).header("dpop-nonce", &huge));
    s.push(
        Reply::json(400, &json!({"error": "invalid_request"}))
            .header("dpop-nonce", "has space\\and \"quotes\""),
    );
    s.push(Reply::json(400, &json!({"error": "invalid_request"})).header("dpop-nonce", "n-ok_1"));
    let client = client_for(&s.origin(), ClientAuth::none(), Some(DpopKey::generate()));
    let first = guard(client.client_credentials(&TokenParams::new()))
        .await
        .unwrap_err();
    let o = first.oauth_error().unwrap_or_else(|| panic!("{first:?}"));
    assert_eq!(o.dpop_nonce, None);
    let debug = format!("{first:?}");
    assert!(debug.len() < 2048, "{} bytes of Debug", debug.len());
    let second = guard(client.client_credentials(&TokenParams::new()))
        .await
        .unwrap_err();
    assert_eq!(second.oauth_error().unwrap().dpop_nonce, None);
    let third = guard(client.client_credentials(&TokenParams::new()))
        .await
        .unwrap_err();
    assert_eq!(
        third.oauth_error().unwrap().dpop_nonce.as_deref(),
        Some("n-ok_1")
    );
}

// ------------------------------------------------------------------ item 9

#[tokio::test]
async fn hardening_09_dpop_token_without_a_proof_is_refused() {
    let s = Scripted::start().await;
    for token_type in ["DPoP", "dpop"] {
        s.push(Reply::json(
            200,
            &json!({"access_token": "at-1", "token_type": token_type, "expires_in": 60}),
        ));
    }
    let client = client_for(
        &s.origin(),
        ClientAuth::client_secret_basic(CLIENT_SECRET),
        None,
    );
    for _ in 0..2 {
        let err = guard(client.client_credentials(&TokenParams::new()))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
        assert!(err.to_string().contains("no DPoP proof was sent"), "{err}");
    }
    let requests = s.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.header("dpop").is_none()));
}

#[tokio::test]
async fn hardening_09_token_type_must_match_both_ways() {
    let s = Scripted::start().await;
    let token = |t: &str| {
        Reply::json(
            200,
            &json!({"access_token": "at-1", "token_type": t, "expires_in": 60}),
        )
    };
    // With a proof: DPoP accepted, Bearer refused.
    s.push(token("DPoP"));
    s.push(token("Bearer"));
    // Without: Bearer accepted, DPoP refused.
    s.push(token("Bearer"));
    s.push(token("DPoP"));
    let key = DpopKey::generate();
    let with_key = client_for(&s.origin(), ClientAuth::none(), Some(key));
    let without = client_for(&s.origin(), ClientAuth::none(), None);
    let p = TokenParams::new();
    assert_eq!(
        guard(with_key.client_credentials(&p))
            .await
            .unwrap()
            .token_type,
        TokenType::Dpop
    );
    assert!(guard(with_key.client_credentials(&p)).await.is_err());
    assert_eq!(
        guard(without.client_credentials(&p))
            .await
            .unwrap()
            .token_type,
        TokenType::Bearer
    );
    assert!(guard(without.client_credentials(&p)).await.is_err());
}

// ------------------------------------------------------------------ item 15

/// The error names `operation` and the endpoint `path` of `base` without the query.
fn assert_context(err: &Error, operation: &str, base: &str, path: &str) {
    let ctx = err
        .context()
        .unwrap_or_else(|| panic!("no context: {err:?}"));
    assert_eq!(ctx.operation, operation);
    assert_eq!(ctx.endpoint, format!("{base}{path}"));
    let display = err.to_string();
    assert!(display.contains(operation), "{display}");
    assert!(display.contains(&format!("{base}{path}")), "{display}");
    assert!(!display.contains("tenant") && !format!("{err:?}").contains("t-query-1"));
}

#[tokio::test]
async fn hardening_15_empty_401_and_403_at_the_token_endpoint_are_invalid_client() {
    let s = Scripted::start().await;
    s.push(Reply::status(401));
    s.push(Reply::status(403));
    s.push(Reply::status(401).header("www-authenticate", "Basic realm=\"as\""));
    let client = client_for(
        &s.origin(),
        ClientAuth::client_secret_basic("wrong-secret"),
        None,
    );
    for status in [401, 403, 401] {
        let err = guard(client.client_credentials(&TokenParams::new()))
            .await
            .unwrap_err();
        let o = err.oauth_error().unwrap_or_else(|| panic!("{err:?}"));
        assert_eq!(o.error, OAuthErrorCode::InvalidClient);
        assert_eq!(err.status(), Some(status));
        assert!(!err.is_retryable());
        assert_context(
            &err,
            "token request (client_credentials)",
            &s.origin(),
            "/token",
        );
    }
}

#[tokio::test]
async fn hardening_15_empty_bodies_name_operation_and_endpoint() {
    let s = Scripted::start().await;
    let client = client_for(
        &s.origin(),
        ClientAuth::client_secret_post(CLIENT_SECRET),
        None,
    );
    // A refresh answered with an empty 400 ends the refresh token; the message names the
    // status and the request.
    s.push(Reply::status(400));
    let err = guard(client.refresh(&RefreshToken::new(REFRESH), &TokenParams::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReauthorizationRequired(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "(HTTP 400, no OAuth error body) by token request (refresh_token) at {}/token",
            s.origin()
        )),
        "{err}"
    );

    s.push(Reply::status(400));
    let err = guard(client.token_request(
        "urn:example:grant-type:custom",
        &[],
        &TokenParams::new(),
        crate::support::prelude::RetryPolicy::ConnectOnly,
    ))
    .await
    .unwrap_err();
    assert_context(&err, "token request (custom)", &s.origin(), "/token");

    // Revocation, introspection and device authorization.
    s.push(Reply::status(403));
    let err = guard(client.revoke(ACCESS, None)).await.unwrap_err();
    assert!(matches!(err, Error::Http { status: 403, .. }), "{err:?}");
    assert_context(&err, "revocation request", &s.origin(), "/revoke");

    s.push(
        Reply::status(200)
            .header("content-type", "text/html")
            .body("<html>"),
    );
    let err = guard(client.introspect(ACCESS, None)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "introspection request at {}/introspect",
            s.origin()
        )),
        "{err}"
    );

    s.push(Reply::json(400, &json!({"error": "invalid_scope"})));
    let err = guard(client.device_authorization(&TokenParams::new().scope("nope")))
        .await
        .unwrap_err();
    assert_eq!(
        err.oauth_error().unwrap().error,
        OAuthErrorCode::InvalidScope
    );
    assert_context(
        &err,
        "device authorization request",
        &s.origin(),
        "/device_authorization",
    );

    // An `invalid_grant` on refresh names the request too.
    s.push(Reply::json(400, &json!({"error": "invalid_grant"})));
    let err = guard(client.refresh(&RefreshToken::new(REFRESH), &TokenParams::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReauthorizationRequired(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!(
            "token request (refresh_token) at {}/token",
            s.origin()
        )),
        "{err}"
    );
}

per_server!(hardening_15_server_errors_name_operation_and_endpoint);
/// Was `hardening_15_oidc_provider_errors_name_operation_and_endpoint` (oidc-provider only).
async fn hardening_15_server_errors_name_operation_and_endpoint(kind: Kind) {
    let Some(s) = Server::start(kind, Knobs::default()).await else {
        return;
    };
    let client_with = |secret: &str| {
        let server = AuthorizationServer::new(s.issuer(), HttpTransport::new().unwrap()).unwrap();
        OAuthClient::builder(server, SERVICE.id)
            .auth(ClientAuth::client_secret_basic(secret))
            .build()
    };
    let token_endpoint = client_with("x")
        .server()
        .metadata()
        .await
        .unwrap()
        .token_endpoint
        .clone()
        .unwrap();

    let wrong = client_with("not-the-secret");
    let err = guard(wrong.client_credentials(&TokenParams::new()))
        .await
        .unwrap_err();
    assert_eq!(
        err.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::InvalidClient),
        "{err:?}"
    );
    let ctx = err.context().unwrap();
    assert_eq!(ctx.operation, "token request (client_credentials)");
    assert_eq!(ctx.endpoint, token_endpoint);
    assert!(err.to_string().contains(&token_endpoint), "{err}");

    let right = client_with(SERVICE.secret.unwrap_or_default());
    let err = guard(right.refresh(
        &RefreshToken::new("not-a-token-at-all"),
        &TokenParams::new(),
    ))
    .await
    .unwrap_err();
    let display = err.to_string();
    assert!(
        display.contains("token request (refresh_token)") && display.contains(&token_endpoint),
        "{display}"
    );
    assert!(!display.contains("not-a-token-at-all"));

    let err = guard(right.token_request(
        "urn:example:params:oauth:grant-type:unknown",
        &[],
        &TokenParams::new(),
        crate::support::prelude::RetryPolicy::ConnectOnly,
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.oauth_error().map(|o| o.error.clone()),
        Some(OAuthErrorCode::UnsupportedGrantType),
        "{err:?}"
    );
    let ctx = err.context().unwrap();
    assert_eq!(ctx.operation, "token request (unknown)");
    assert_eq!(ctx.endpoint, token_endpoint);
}

/// A resource that rejects every token and quotes the `Authorization` header it got.
async fn echo_resource(
    State(seen): State<Arc<Mutex<Vec<String>>>>,
    headers: HeaderMap,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let token = auth
        .split_once(' ')
        .map(|(_, t)| t.to_owned())
        .unwrap_or_default();
    seen.lock().unwrap().push(token.clone());
    (
        StatusCode::UNAUTHORIZED,
        [(
            "www-authenticate",
            format!(r#"Bearer error="invalid_token", error_description="rejected {token}""#),
        )],
        format!("token {token} is not valid"),
    )
        .into_response()
}

#[tokio::test]
async fn hardening_05_access_token_echoed_by_a_resource_is_redacted() {
    let server = crate::support::prelude::TestServer::start().await;
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let resource = TestHttp::start(
        Router::new()
            .route("/api", axum::routing::get(echo_resource))
            .with_state(seen.clone()),
    )
    .await;
    let agent = crate::support::prelude::Agent::builder()
        .issuer(server.issuer())
        .client_id("agent")
        .client_auth(ClientAuth::client_secret("agent-secret"))
        .resource(resource.url("/api"))
        .build()
        .await
        .unwrap();
    let (err, logs) = logged(guard(agent.get(resource.url("/api")).send())).await;
    let err = err.unwrap_err();
    let tokens = seen.lock().unwrap().clone();
    assert!(
        !tokens.is_empty() && tokens.iter().all(|t| t.len() > 16),
        "{tokens:?}"
    );
    let (display, debug) = (err.to_string(), format!("{err:?}"));
    for t in &tokens {
        assert!(!display.contains(t.as_str()), "{display}");
        assert!(!debug.contains(t.as_str()), "{debug}");
        assert!(!logs.contains(t.as_str()), "{logs}");
    }
    assert_eq!(err.status(), Some(401));
    assert!(debug.contains("rejected [redacted]"), "{debug}");
}

#[tokio::test]
async fn hardening_15_discovery_errors_name_the_metadata_request() {
    let s = Scripted::start().await;
    s.route(
        "/.well-known/oauth-authorization-server",
        Reply::status(200)
            .header("content-type", "text/html")
            .body("<html>"),
    );
    s.route(
        "/.well-known/oauth-protected-resource/api",
        Reply::status(500).body(""),
    );
    let transport = HttpTransport::new().unwrap();
    let err = guard(
        AuthorizationServer::new(&s.origin(), transport.clone())
            .unwrap()
            .metadata(),
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(&format!(
            "server metadata request at {}/.well-known/oauth-authorization-server",
            s.origin()
        )),
        "{err}"
    );
    let api = url::Url::parse(&s.url("/api?key=q-secret")).unwrap();
    let err = guard(crate::support::prelude::fetch_resource_metadata(
        &transport, &api, None,
    ))
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Http { status: 500, .. }), "{err:?}");
    assert_context(
        &err,
        "resource metadata request",
        &s.origin(),
        "/.well-known/oauth-protected-resource/api",
    );
    assert!(!err.to_string().contains("q-secret"));
}

#[tokio::test]
async fn hardening_09_agent_without_dpop_never_sends_a_dpop_token() {
    let s = Scripted::start().await;
    let base = s.origin();
    s.route(
        "/.well-known/oauth-authorization-server",
        Reply::json(
            200,
            &json!({
                "issuer": base,
                "token_endpoint": format!("{base}/token"),
                "dpop_signing_alg_values_supported": ["ES256"],
            }),
        ),
    );
    s.route(
        "/token",
        Reply::json(
            200,
            &json!({"access_token": "at-dpop-1", "token_type": "DPoP", "expires_in": 300}),
        ),
    );
    s.route("/api", Reply::status(200).body("ok"));
    let agent = crate::support::prelude::Agent::builder()
        .issuer(&base)
        .client_id(CLIENT_ID)
        .client_auth(ClientAuth::client_secret(CLIENT_SECRET))
        .dpop_mode(crate::support::prelude::DpopMode::Off)
        .resource(s.url("/api"))
        .build()
        .await
        .unwrap();
    let err = guard(agent.get(s.url("/api")).send()).await.unwrap_err();
    assert!(err.to_string().contains("no DPoP proof was sent"), "{err}");
    assert!(s.hits_for("/token") >= 1);
    assert_eq!(s.hits_for("/api"), 0, "the resource got a request");
}

#[tokio::test]
async fn hardening_15_transport_errors_name_operation_and_endpoint() {
    let base = format!("http://127.0.0.1:{}", crate::support::server::closed_port());
    let mut config = crate::support::prelude::TransportConfig::default();
    config.max_attempts = 1;
    let server = AuthorizationServer::from_metadata(
        metadata(&base),
        HttpTransport::with_config(config).unwrap(),
    )
    .unwrap();
    let client = OAuthClient::builder(server, CLIENT_ID)
        .auth(ClientAuth::client_secret_post(CLIENT_SECRET))
        .build();
    let err = guard(client.client_credentials(&TokenParams::new()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Transport {
                kind: crate::support::prelude::TransportErrorKind::Connect,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_context(&err, "token request (client_credentials)", &base, "/token");
}
