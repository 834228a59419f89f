//! Real-world and malformed `WWW-Authenticate` vectors: what servers send, and what the parser
//! must refuse with the right error kind and offset.

use super::*;

#[test]
fn challenge_real_world_vectors() {
    check_ok(&[
        Ok {
            name: "lowercase_bearer",
            lines: &[r#"bearer realm="x""#],
            expected: vec![ch("bearer", &[("realm", "x")])],
        },
        Ok {
            name: "dpop_before_bearer_two_lines",
            lines: &[r#"DPoP algs="ES256 PS256""#, r#"Bearer realm="api""#],
            expected: vec![
                ch("DPoP", &[("algs", "ES256 PS256")]),
                ch("Bearer", &[("realm", "api")]),
            ],
        },
        Ok {
            name: "params_continue_on_next_line",
            lines: &[r#"Newauth realm="apps""#, "type=1"],
            expected: vec![ch("Newauth", &[("realm", "apps"), ("type", "1")])],
        },
        Ok {
            name: "empty_header_line_between",
            lines: &["Basic", "", "Bearer"],
            expected: vec![Challenge::new("Basic"), Challenge::new("Bearer")],
        },
        Ok {
            name: "trailing_comma",
            lines: &[r#"Bearer realm="x","#],
            expected: vec![ch("Bearer", &[("realm", "x")])],
        },
        Ok {
            name: "empty_elements",
            lines: &[r#", , Bearer realm="x" , ,error="invalid_token", , DPoP ,"#],
            expected: vec![
                ch("Bearer", &[("realm", "x"), ("error", "invalid_token")]),
                Challenge::new("DPoP"),
            ],
        },
        Ok {
            name: "scheme_then_empty_element_then_param",
            lines: &[r#"Bearer , realm="x""#],
            expected: vec![ch("Bearer", &[("realm", "x")])],
        },
        Ok {
            name: "scheme_comma_param",
            lines: &[r#"Bearer,realm="x""#],
            expected: vec![ch("Bearer", &[("realm", "x")])],
        },
        Ok {
            name: "scheme_only",
            lines: &["Bearer"],
            expected: vec![Challenge::new("Bearer")],
        },
        Ok {
            name: "surrounding_whitespace",
            lines: &["  \tBearer  \t"],
            expected: vec![Challenge::new("Bearer")],
        },
        Ok {
            name: "two_bare_schemes",
            lines: &["Negotiate, NTLM"],
            expected: vec![Challenge::new("Negotiate"), Challenge::new("NTLM")],
        },
        Ok {
            name: "token68_basic",
            lines: &["Basic dXNlcjpwYXNz"],
            expected: vec![t68("Basic", "dXNlcjpwYXNz")],
        },
        Ok {
            name: "token68_padding",
            lines: &["Negotiate abc=="],
            expected: vec![t68("Negotiate", "abc==")],
        },
        Ok {
            name: "token68_single_padding_then_challenge",
            lines: &[r#"Negotiate a+b/c~d.e_f-g=, Bearer realm="x""#],
            expected: vec![
                t68("Negotiate", "a+b/c~d.e_f-g="),
                ch("Bearer", &[("realm", "x")]),
            ],
        },
        Ok {
            name: "token68_trailing_whitespace",
            lines: &["Negotiate abc== "],
            expected: vec![t68("Negotiate", "abc==")],
        },
        Ok {
            name: "unquoted_values",
            lines: &["Bearer error=invalid_token, scope=read"],
            expected: vec![ch(
                "Bearer",
                &[("error", "invalid_token"), ("scope", "read")],
            )],
        },
        Ok {
            name: "escaped_quotes_and_backslashes",
            lines: &[r#"Bearer realm="a\"b\\c\d", error_description="\\""#],
            expected: vec![ch(
                "Bearer",
                &[("realm", r#"a"b\cd"#), ("error_description", "\\")],
            )],
        },
        Ok {
            name: "comma_inside_quoted_string",
            lines: &[r#"Bearer scope="a, b", Basic x=y"#],
            expected: vec![
                ch("Bearer", &[("scope", "a, b")]),
                ch("Basic", &[("x", "y")]),
            ],
        },
        Ok {
            name: "empty_quoted_value",
            lines: &[r#"Bearer realm="""#],
            expected: vec![ch("Bearer", &[("realm", "")])],
        },
        Ok {
            name: "non_ascii_in_quoted_string",
            lines: &["Bearer realm=\"caf\u{e9} \u{1f600}\", error_description=\"\\\u{e9}\""],
            expected: vec![ch(
                "Bearer",
                &[
                    ("realm", "caf\u{e9} \u{1f600}"),
                    ("error_description", "\u{e9}"),
                ],
            )],
        },
        Ok {
            name: "tab_inside_quoted_string",
            lines: &["Bearer realm=\"a\tb\""],
            expected: vec![ch("Bearer", &[("realm", "a\tb")])],
        },
        Ok {
            name: "mixed_case_param_names",
            lines: &[r#"DPOP Algs="ES256", ERROR=use_dpop_nonce"#],
            expected: vec![ch(
                "DPOP",
                &[("Algs", "ES256"), ("ERROR", "use_dpop_nonce")],
            )],
        },
        Ok {
            name: "param_name_looks_like_token68_for_other_scheme",
            lines: &["Newauth realm=apps"],
            expected: vec![ch("Newauth", &[("realm", "apps")])],
        },
    ]);
}

#[test]
fn challenge_error_vectors() {
    let too_long = "a".repeat(MAX_INPUT_LEN + 1);
    let max_challenges = vec!["Basic"; MAX_CHALLENGES + 1].join(",");
    let max_params = format!(
        "Bearer {}",
        (0..=MAX_PARAMS)
            .map(|i| format!("p{i:02}=x"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let max_params_offset = "Bearer ".len() + MAX_PARAMS * "p00=x,".len();
    check_bad(&[
        Bad {
            name: "empty_input",
            lines: &[""],
            kind: ChallengeErrorKind::Empty,
            offset: 0,
        },
        Bad {
            name: "no_lines",
            lines: &[],
            kind: ChallengeErrorKind::Empty,
            offset: 0,
        },
        Bad {
            name: "only_commas_and_spaces",
            lines: &[" , ,\t,", ""],
            kind: ChallengeErrorKind::Empty,
            offset: 0,
        },
        Bad {
            name: "unterminated_quote",
            lines: &[r#"Bearer realm="abc"#],
            kind: ChallengeErrorKind::UnterminatedQuotedString,
            offset: 13,
        },
        Bad {
            name: "unterminated_quote_after_escape",
            lines: &[r#"Bearer realm="abc\"#],
            kind: ChallengeErrorKind::UnterminatedQuotedString,
            offset: 13,
        },
        Bad {
            name: "quote_does_not_span_lines",
            lines: &[r#"Bearer realm="a"#, r#"b""#],
            kind: ChallengeErrorKind::UnterminatedQuotedString,
            offset: 13,
        },
        Bad {
            name: "missing_value",
            lines: &["Bearer realm="],
            kind: ChallengeErrorKind::ExpectedValue,
            offset: 13,
        },
        Bad {
            name: "missing_value_before_comma",
            lines: &["Bearer realm= , error=x"],
            kind: ChallengeErrorKind::ExpectedValue,
            offset: 14,
        },
        Bad {
            name: "dpop_missing_value",
            lines: &["DPoP algs="],
            kind: ChallengeErrorKind::ExpectedValue,
            offset: 10,
        },
        Bad {
            name: "leading_equals",
            lines: &["=foo"],
            kind: ChallengeErrorKind::ExpectedScheme,
            offset: 0,
        },
        Bad {
            name: "param_without_scheme",
            lines: &[r#"realm="x""#],
            kind: ChallengeErrorKind::ExpectedScheme,
            offset: 0,
        },
        Bad {
            name: "param_after_token68",
            lines: &[r#"Basic abc=, realm="x""#],
            kind: ChallengeErrorKind::ExpectedScheme,
            offset: 12,
        },
        Bad {
            name: "duplicate_param",
            lines: &[r#"Bearer realm="a", realm="b""#],
            kind: ChallengeErrorKind::DuplicateParameter,
            offset: 18,
        },
        Bad {
            name: "duplicate_param_case_insensitive",
            lines: &[r#"Bearer Realm="a", realm="b""#],
            kind: ChallengeErrorKind::DuplicateParameter,
            offset: 18,
        },
        Bad {
            name: "duplicate_param_across_lines",
            lines: &[r#"Bearer error="a""#, "ERROR=b"],
            kind: ChallengeErrorKind::DuplicateParameter,
            offset: 18,
        },
        Bad {
            name: "control_character_in_scheme_position",
            lines: &["\u{1}Bearer"],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 0,
        },
        Bad {
            name: "control_character_after_scheme",
            lines: &["Bearer\u{0}"],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 6,
        },
        Bad {
            name: "control_character_in_quoted_string",
            lines: &["Bearer realm=\"a\u{7f}\""],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 15,
        },
        Bad {
            name: "newline_in_quoted_string",
            lines: &["Bearer realm=\"a\r\nb\""],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 15,
        },
        Bad {
            name: "escaped_control_character",
            lines: &["Bearer realm=\"\\\u{1}\""],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 15,
        },
        Bad {
            name: "control_character_after_value",
            lines: &["Bearer realm=x\u{1b}"],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 14,
        },
        Bad {
            name: "non_ascii_unquoted_value",
            lines: &["Bearer realm=caf\u{e9}"],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 16,
        },
        Bad {
            name: "non_ascii_scheme",
            lines: &["B\u{e9}arer"],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 1,
        },
        Bad {
            name: "delimiter_after_scheme",
            lines: &["Bearer;realm=x"],
            kind: ChallengeErrorKind::InvalidCharacter,
            offset: 6,
        },
        Bad {
            name: "missing_comma_between_params",
            lines: &[r#"Bearer realm="a" error="b""#],
            kind: ChallengeErrorKind::ExpectedComma,
            offset: 17,
        },
        Bad {
            name: "unquoted_url_value",
            lines: &["Bearer resource_metadata=https://x/y"],
            kind: ChallengeErrorKind::ExpectedComma,
            offset: 30,
        },
        Bad {
            name: "bearer_has_no_token68",
            lines: &["Bearer abc"],
            kind: ChallengeErrorKind::ExpectedEquals,
            offset: 10,
        },
        Bad {
            name: "param_name_then_other_token",
            lines: &["Newauth a b"],
            kind: ChallengeErrorKind::ExpectedEquals,
            offset: 10,
        },
        Bad {
            name: "quoted_string_instead_of_param",
            lines: &[r#"Bearer "x""#],
            kind: ChallengeErrorKind::ExpectedParameter,
            offset: 7,
        },
        Bad {
            name: "token68_then_garbage",
            lines: &["Negotiate abc== def"],
            kind: ChallengeErrorKind::ExpectedValue,
            offset: 14,
        },
        Bad {
            name: "too_long_input",
            lines: &[too_long.as_str()],
            kind: ChallengeErrorKind::TooLong,
            offset: MAX_INPUT_LEN,
        },
        Bad {
            name: "too_long_across_lines",
            lines: &[
                &too_long[..MAX_INPUT_LEN / 2],
                &too_long[..MAX_INPUT_LEN / 2],
            ],
            kind: ChallengeErrorKind::TooLong,
            offset: MAX_INPUT_LEN,
        },
        Bad {
            name: "too_many_challenges",
            lines: &[max_challenges.as_str()],
            kind: ChallengeErrorKind::TooManyChallenges,
            offset: MAX_CHALLENGES * "Basic,".len(),
        },
        Bad {
            name: "too_many_params",
            lines: &[max_params.as_str()],
            kind: ChallengeErrorKind::TooManyParameters,
            offset: max_params_offset,
        },
    ]);
}
