//! Unit tests of the `WWW-Authenticate` parser: RFC vectors and table-driven cases.
use super::*;

mod vectors;

/// Builds an auth-param challenge.
fn ch(scheme: &str, params: &[(&str, &str)]) -> Challenge {
    params
        .iter()
        .fold(Challenge::new(scheme), |c, (n, v)| c.with_param(*n, *v))
}

/// Builds a token68 challenge.
fn t68(scheme: &str, token68: &str) -> Challenge {
    Challenge::new(scheme).with_token68(token68)
}

/// A named valid vector: header lines and the expected challenges.
struct Ok<'a> {
    name: &'a str,
    lines: &'a [&'a str],
    expected: Vec<Challenge>,
}

/// A named invalid vector: header lines, error kind and offset.
struct Bad<'a> {
    name: &'a str,
    lines: &'a [&'a str],
    kind: ChallengeErrorKind,
    offset: usize,
}

fn check_ok(cases: &[Ok<'_>]) {
    for case in cases {
        let got = parse_challenges(case.lines.iter().copied());
        assert_eq!(
            got.as_ref(),
            std::result::Result::Ok(&case.expected),
            "case {}",
            case.name
        );
        // Rendering and parsing again yields the same challenges.
        let rendered = case
            .expected
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            parse_challenges([rendered.as_str()]).as_ref(),
            std::result::Result::Ok(&case.expected),
            "case {} rendered as {rendered}",
            case.name
        );
    }
}

fn check_bad(cases: &[Bad<'_>]) {
    for case in cases {
        match parse_challenges(case.lines.iter().copied()) {
            std::result::Result::Ok(c) => panic!("case {}: parsed as {c:?}", case.name),
            Err(e) => {
                assert_eq!(
                    (e.kind(), e.offset()),
                    (case.kind, case.offset),
                    "case {}: {e}",
                    case.name
                );
                assert!(e.to_string().contains(&format!("at byte {}", case.offset)));
            }
        }
    }
}

#[test]
fn challenge_rfc9110_vectors() {
    check_ok(&[
        Ok {
            name: "rfc9110_two_schemes_basic_first",
            lines: &[
                r#"Basic realm="simple", Newauth realm="apps", type=1, title="Login to \"apps\"""#,
            ],
            expected: vec![
                ch("Basic", &[("realm", "simple")]),
                ch(
                    "Newauth",
                    &[
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", r#"Login to "apps""#),
                    ],
                ),
            ],
        },
        Ok {
            name: "rfc9110_two_schemes_newauth_first",
            lines: &[
                r#"Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple""#,
            ],
            expected: vec![
                ch(
                    "Newauth",
                    &[
                        ("realm", "apps"),
                        ("type", "1"),
                        ("title", r#"Login to "apps""#),
                    ],
                ),
                ch("Basic", &[("realm", "simple")]),
            ],
        },
    ]);
}

#[test]
fn challenge_rfc6750_vectors() {
    check_ok(&[
        Ok {
            name: "rfc6750_realm",
            lines: &[r#"Bearer realm="example""#],
            expected: vec![ch("Bearer", &[("realm", "example")])],
        },
        Ok {
            name: "rfc6750_invalid_token",
            lines: &[
                r#"Bearer realm="example", error="invalid_token", error_description="The access token expired""#,
            ],
            expected: vec![ch(
                "Bearer",
                &[
                    ("realm", "example"),
                    ("error", "invalid_token"),
                    ("error_description", "The access token expired"),
                ],
            )],
        },
        Ok {
            name: "rfc6750_insufficient_scope",
            lines: &[
                r#"Bearer realm="example", error="insufficient_scope", error_description="The request requires higher privileges than provided by the access token.", scope="openid profile email""#,
            ],
            expected: vec![ch(
                "Bearer",
                &[
                    ("realm", "example"),
                    ("error", "insufficient_scope"),
                    (
                        "error_description",
                        "The request requires higher privileges than provided by the access token.",
                    ),
                    ("scope", "openid profile email"),
                ],
            )],
        },
    ]);
}

#[test]
fn challenge_rfc9449_vectors() {
    check_ok(&[
        Ok {
            name: "rfc9449_invalid_key_binding",
            lines: &[
                r#"DPoP error="invalid_token", error_description="Invalid DPoP key binding", algs="ES256""#,
            ],
            expected: vec![ch(
                "DPoP",
                &[
                    ("error", "invalid_token"),
                    ("error_description", "Invalid DPoP key binding"),
                    ("algs", "ES256"),
                ],
            )],
        },
        Ok {
            name: "rfc9449_algs",
            lines: &[r#"DPoP algs="ES256 PS256""#],
            expected: vec![ch("DPoP", &[("algs", "ES256 PS256")])],
        },
        Ok {
            name: "rfc9449_use_dpop_nonce",
            lines: &[
                r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof""#,
            ],
            expected: vec![ch(
                "DPoP",
                &[
                    ("error", "use_dpop_nonce"),
                    (
                        "error_description",
                        "Resource server requires nonce in DPoP proof",
                    ),
                ],
            )],
        },
        Ok {
            name: "rfc9449_bare_bearer_then_dpop",
            lines: &[r#"Bearer, DPoP algs="ES256 PS256""#],
            expected: vec![
                Challenge::new("Bearer"),
                ch("DPoP", &[("algs", "ES256 PS256")]),
            ],
        },
        Ok {
            name: "rfc9449_bearer_realm_then_dpop",
            lines: &[r#"Bearer realm="api", DPoP algs="ES256 PS256""#],
            expected: vec![
                ch("Bearer", &[("realm", "api")]),
                ch("DPoP", &[("algs", "ES256 PS256")]),
            ],
        },
        Ok {
            name: "rfc9449_dpop_listed_before_bearer",
            lines: &[r#"DPoP algs="ES256", Bearer realm="x""#],
            expected: vec![
                ch("DPoP", &[("algs", "ES256")]),
                ch("Bearer", &[("realm", "x")]),
            ],
        },
    ]);
}

#[test]
fn challenge_rfc9728_vectors() {
    check_ok(&[
        Ok {
            name: "rfc9728_resource_metadata",
            lines: &[
                r#"Bearer resource_metadata="https://resource.example.com/.well-known/oauth-protected-resource""#,
            ],
            expected: vec![ch(
                "Bearer",
                &[(
                    "resource_metadata",
                    "https://resource.example.com/.well-known/oauth-protected-resource",
                )],
            )],
        },
        Ok {
            name: "rfc9728_invalid_token_with_metadata",
            lines: &[
                r#"Bearer error="invalid_token", error_description="The access token expired", resource_metadata="https://resource.example.com/.well-known/oauth-protected-resource""#,
            ],
            expected: vec![ch(
                "Bearer",
                &[
                    ("error", "invalid_token"),
                    ("error_description", "The access token expired"),
                    (
                        "resource_metadata",
                        "https://resource.example.com/.well-known/oauth-protected-resource",
                    ),
                ],
            )],
        },
        Ok {
            name: "rfc9728_spaces_around_equals",
            lines: &[r#"Bearer resource_metadata = "https://x/y""#],
            expected: vec![ch("Bearer", &[("resource_metadata", "https://x/y")])],
        },
        Ok {
            name: "rfc9728_tabs_around_equals",
            lines: &["Bearer\tresource_metadata\t=\t\"https://x/y\"\t"],
            expected: vec![ch("Bearer", &[("resource_metadata", "https://x/y")])],
        },
    ]);
}

#[test]
fn challenge_limits_are_inclusive() {
    let challenges = vec!["Basic"; MAX_CHALLENGES].join(",");
    assert_eq!(
        parse_challenges([challenges.as_str()]).map(|c| c.len()),
        std::result::Result::Ok(MAX_CHALLENGES)
    );
    let params = format!(
        "Bearer {}",
        (0..MAX_PARAMS)
            .map(|i| format!("p{i}=x"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let parsed = parse_challenges([params.as_str()]);
    assert_eq!(
        parsed.map(|c| c[0].params().count()),
        std::result::Result::Ok(MAX_PARAMS)
    );
    let exact = format!("Bearer realm=\"{}\"", "a".repeat(MAX_INPUT_LEN - 15));
    assert_eq!(exact.len(), MAX_INPUT_LEN);
    assert!(parse_challenges([exact.as_str()]).is_ok());
}

#[test]
fn challenge_accessors() {
    let c = &parse_challenges([
        r#"dpop ALGS="ES256  PS256", Error="use_dpop_nonce", error_DESCRIPTION="d", Scope="a b", Realm=r, Resource_Metadata="https://rs/.well-known/oauth-protected-resource""#,
    ])
    .expect("valid")[0];
    assert_eq!(c.scheme(), "dpop");
    assert!(c.is_scheme("DPoP"));
    assert!(!c.is_scheme("Bearer"));
    assert_eq!(c.token68(), None);
    assert_eq!(c.algs(), Some("ES256  PS256"));
    assert_eq!(c.algs_list(), vec!["ES256", "PS256"]);
    assert_eq!(c.error(), Some("use_dpop_nonce"));
    assert_eq!(c.error_description(), Some("d"));
    assert_eq!(c.scope(), Some("a b"));
    assert_eq!(c.realm(), Some("r"));
    assert_eq!(
        c.resource_metadata(),
        Some("https://rs/.well-known/oauth-protected-resource")
    );
    assert_eq!(c.param("error"), Some("use_dpop_nonce"));
    assert_eq!(c.param("nonce"), None);
    let names: Vec<&str> = c.params().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "ALGS",
            "Error",
            "error_DESCRIPTION",
            "Scope",
            "Realm",
            "Resource_Metadata"
        ]
    );

    let basic = &parse_challenges(["Basic dXNlcjpwYXNz"]).expect("valid")[0];
    assert_eq!(basic.token68(), Some("dXNlcjpwYXNz"));
    assert_eq!(basic.params().count(), 0);
    assert_eq!(basic.realm(), None);
    assert!(basic.algs_list().is_empty());
}

#[test]
fn challenge_builder_and_display() {
    let c = Challenge::new("Bearer")
        .with_param("realm", "a \"quoted\" \\ value")
        .with_param("error", "invalid_token")
        .with_param("REALM", "replaced");
    assert_eq!(
        c.to_string(),
        r#"Bearer REALM="replaced", error="invalid_token""#
    );
    let c = Challenge::new("Bearer").with_param("realm", "a \"q\" \\ v");
    assert_eq!(c.to_string(), r#"Bearer realm="a \"q\" \\ v""#);
    assert_eq!(
        parse_challenges([c.to_string().as_str()]),
        std::result::Result::Ok(vec![c])
    );
    assert_eq!(Challenge::new("Bearer").to_string(), "Bearer");
    assert_eq!(t68("Basic", "abc==").to_string(), "Basic abc==");
    let switched = t68("Basic", "abc").with_param("realm", "x");
    assert_eq!(switched.token68(), None);
    assert_eq!(switched.to_string(), r#"Basic realm="x""#);
}

#[test]
fn challenge_error_display_is_bounded() {
    let input = format!(
        "Bearer realm=\"{}\u{1}{}\"",
        "x".repeat(10),
        "z".repeat(500)
    );
    let e = parse_challenges([input.as_str()]).expect_err("control character");
    assert_eq!(e.kind(), ChallengeErrorKind::InvalidCharacter);
    let shown = e.to_string();
    assert!(shown.contains("at byte 24"), "{shown}");
    assert!(
        shown.contains("\\u{1}"),
        "control characters are escaped: {shown}"
    );
    assert_eq!(shown.matches('z').count(), MAX_CONTEXT_CHARS - 1, "{shown}");
    assert!(!shown.contains('\u{1}'));

    let e = parse_challenges([""]).expect_err("empty");
    assert_eq!(e.to_string(), "no challenge in WWW-Authenticate at byte 0");
    let source: &dyn std::error::Error = &e;
    assert!(source.source().is_none());
}

#[test]
fn challenge_from_header_map() {
    use http::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
    let mut headers = HeaderMap::new();
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"DPoP algs="ES256""#),
    );
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_static(r#"Bearer realm="x""#),
    );
    headers.append(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    assert_eq!(
        challenges_from_headers(&headers),
        std::result::Result::Ok(vec![
            ch("DPoP", &[("algs", "ES256")]),
            ch("Bearer", &[("realm", "x")])
        ])
    );

    let e = challenges_from_headers(&HeaderMap::new()).expect_err("no header");
    assert_eq!(e.kind(), ChallengeErrorKind::Empty);

    // obs-text that is valid UTF-8 is accepted inside quoted strings.
    let mut headers = HeaderMap::new();
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_bytes("Bearer realm=\"caf\u{e9}\"".as_bytes()).expect("obs-text"),
    );
    assert_eq!(
        challenges_from_headers(&headers).map(|c| c[0].realm().map(str::to_owned)),
        std::result::Result::Ok(Some("caf\u{e9}".to_owned()))
    );

    let mut headers = HeaderMap::new();
    headers.append(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    headers.append(
        WWW_AUTHENTICATE,
        HeaderValue::from_bytes(b"Bearer realm=\"\xff\"").expect("obs-text"),
    );
    let e = challenges_from_headers(&headers).expect_err("not UTF-8");
    assert_eq!(e.kind(), ChallengeErrorKind::InvalidUtf8);
    assert_eq!(e.offset(), "Basic, Bearer realm=\"".len());
}

#[test]
fn challenge_fuzz_hook_smoke() {
    for input in [
        &b""[..],
        b"Bearer realm=\"x\"\nDPoP algs=ES256",
        b"\xff\xfe\x00",
        b"Basic abc==, , Newauth a=\"\\\"\"",
    ] {
        fuzz(input);
    }
}
