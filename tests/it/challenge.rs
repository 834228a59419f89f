//! Property tests for the `WWW-Authenticate` challenge parser: it never
//! panics, always returns a challenge list or a typed error, and rendered
//! challenges parse back to themselves.

use crate::support::prelude::{parse_challenges, Challenge, ChallengeError, ChallengeErrorKind};
use proptest::prelude::*;

/// What a generated challenge carries.
#[derive(Debug, Clone)]
enum Body {
    Token68(String),
    Params(Vec<(String, String)>),
}

/// A generated challenge.
#[derive(Debug, Clone)]
struct Model {
    scheme: String,
    body: Body,
}

impl Model {
    fn challenge(&self) -> Challenge {
        match &self.body {
            Body::Token68(t) => Challenge::new(&self.scheme).with_token68(t),
            Body::Params(params) => params
                .iter()
                .fold(Challenge::new(&self.scheme), |c, (n, v)| c.with_param(n, v)),
        }
    }
}

const TCHARS: &str = "[A-Za-z0-9!#$%&'*+.^_`|~-]";

fn token() -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("{TCHARS}{{1,12}}")).expect("regex")
}

/// Any text allowed inside a quoted-string once unescaped.
fn value() -> impl Strategy<Value = String> {
    "[\t\\x20-\\x7E\\u{80}-\\u{D7FF}\\u{E000}-\\u{10FFFF}]{0,24}"
}

fn token68() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._~+/-]{1,24}={0,2}"
}

fn is_param_only(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop")
}

fn model() -> impl Strategy<Value = Model> {
    prop_oneof![
        (
            token().prop_filter("param-only scheme", |s| !is_param_only(s)),
            token68()
        )
            .prop_map(|(scheme, t)| Model {
                scheme,
                body: Body::Token68(t)
            }),
        (
            prop_oneof![token(), Just("Bearer".to_owned()), Just("DPoP".to_owned())],
            prop::collection::vec((token(), value()), 0..6),
        )
            .prop_map(|(scheme, raw)| {
                let mut params: Vec<(String, String)> = Vec::new();
                for (n, v) in raw {
                    if !params.iter().any(|(m, _)| m.eq_ignore_ascii_case(&n)) {
                        params.push((n, v));
                    }
                }
                Model {
                    scheme,
                    body: Body::Params(params),
                }
            }),
    ]
}

fn models() -> impl Strategy<Value = Vec<Model>> {
    prop::collection::vec(model(), 1..6)
}

/// A tiny deterministic generator driving the noisy renderer.
struct Noise(u64);

impl Noise {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn ows(&mut self) -> &'static str {
        ["", "", " ", "\t", "  \t "][self.next(5) as usize]
    }

    fn sep(&mut self) -> String {
        let mut s = format!("{},{}", self.ows(), self.ows());
        for _ in 0..self.next(3) {
            s.push_str(&format!(",{}", self.ows()));
        }
        s
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Renders challenges with optional whitespace, empty list elements, token
/// or quoted values, gratuitous quoted-pairs and header-line breaks.
fn render_noisy(models: &[Model], seed: u64) -> Vec<String> {
    let mut noise = Noise(seed | 1);
    let mut lines = vec![noise.ows().to_owned()];
    for (i, m) in models.iter().enumerate() {
        if i > 0 {
            if noise.next(3) == 0 {
                lines.push(noise.ows().to_owned());
            } else {
                let sep = noise.sep();
                lines.last_mut().expect("line").push_str(&sep);
            }
        }
        let mut out = m.scheme.clone();
        match &m.body {
            Body::Token68(t) => {
                out.push(' ');
                out.push_str(noise.ows());
                out.push_str(t);
            }
            Body::Params(params) => {
                for (j, (n, v)) in params.iter().enumerate() {
                    if j == 0 {
                        // A comma after the scheme is accepted as well.
                        out.push_str(if noise.next(4) == 0 { ", " } else { " " });
                    } else {
                        out.push_str(&noise.sep());
                    }
                    out.push_str(n);
                    out.push_str(noise.ows());
                    out.push('=');
                    out.push_str(noise.ows());
                    if is_token(v) && noise.next(2) == 0 {
                        out.push_str(v);
                    } else {
                        out.push('"');
                        for c in v.chars() {
                            if c == '"' || c == '\\' || noise.next(8) == 0 {
                                out.push('\\');
                            }
                            out.push(c);
                        }
                        out.push('"');
                    }
                }
            }
        }
        out.push_str(noise.ows());
        lines.last_mut().expect("line").push_str(&out);
    }
    if noise.next(2) == 0 {
        let sep = noise.sep();
        lines.last_mut().expect("line").push_str(&sep);
    }
    lines
}

/// Invariants every parse result satisfies, whatever the input.
fn check_outcome(lines: &[&str], result: &Result<Vec<Challenge>, ChallengeError>) {
    match result {
        Ok(challenges) => {
            assert!(!challenges.is_empty() && challenges.len() <= 32);
            for c in challenges {
                assert!(is_token(c.scheme()));
                assert!(c.params().count() <= 64);
                assert!(c.token68().is_none() || c.params().count() == 0);
                for (n, _) in c.params() {
                    assert!(is_token(n));
                    assert_eq!(
                        c.params()
                            .filter(|(m, _)| m.eq_ignore_ascii_case(n))
                            .count(),
                        1
                    );
                }
            }
            // Whatever parsed renders to something that parses back the same.
            let rendered = challenges
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>();
            if rendered.iter().map(|r| r.len() + 2).sum::<usize>() <= 16 * 1024 {
                assert_eq!(
                    parse_challenges(rendered.iter().map(String::as_str)).as_ref(),
                    Ok(challenges)
                );
            }
        }
        Err(e) => {
            let combined: usize =
                lines.iter().map(|l| l.len()).sum::<usize>() + 2 * lines.len().saturating_sub(1);
            if e.kind() == ChallengeErrorKind::TooLong {
                assert!(combined > 16 * 1024);
            } else {
                assert!(e.offset() <= combined, "{e} beyond {combined}");
            }
            let shown = e.to_string();
            assert!(shown.contains(&format!("at byte {}", e.offset())));
            assert!(shown.chars().count() <= 100 + 10 * 64, "{shown}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn challenge_prop_arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&data);
        let lines: Vec<&str> = text.split('\n').collect();
        let result = parse_challenges(lines.iter().copied());
        check_outcome(&lines, &result);
    }

    #[test]
    fn challenge_prop_arbitrary_strings_never_panic(lines in prop::collection::vec(any::<String>(), 0..4)) {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let result = parse_challenges(lines.iter().copied());
        check_outcome(&lines, &result);
    }

    #[test]
    fn challenge_prop_header_like_strings_never_panic(
        lines in prop::collection::vec("[A-Za-z0-9 \t,=\"\\\\/+._~;\u{1}\u{e9}-]{0,80}", 1..4)
    ) {
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let result = parse_challenges(lines.iter().copied());
        check_outcome(&lines, &result);
    }

    #[test]
    fn challenge_prop_round_trip(models in models()) {
        let expected: Vec<Challenge> = models.iter().map(Model::challenge).collect();
        let rendered = expected.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        prop_assert_eq!(parse_challenges([rendered.as_str()]), Ok(expected));
    }

    #[test]
    fn challenge_prop_round_trip_one_line_per_challenge(models in models()) {
        let expected: Vec<Challenge> = models.iter().map(Model::challenge).collect();
        let rendered: Vec<String> = expected.iter().map(ToString::to_string).collect();
        prop_assert_eq!(parse_challenges(rendered.iter().map(String::as_str)), Ok(expected));
    }

    #[test]
    fn challenge_prop_round_trip_noisy(models in models(), seed in any::<u64>()) {
        let expected: Vec<Challenge> = models.iter().map(Model::challenge).collect();
        let lines = render_noisy(&models, seed);
        prop_assert_eq!(parse_challenges(lines.iter().map(String::as_str)), Ok(expected), "{:?}", lines);
    }

    #[test]
    fn challenge_prop_duplicate_param_rejected(models in models(), pick in any::<prop::sample::Index>()) {
        let target = models.iter().enumerate().find_map(|(i, m)| match &m.body {
            Body::Params(p) if !p.is_empty() => Some((i, p.clone())),
            _ => None,
        });
        prop_assume!(target.is_some());
        let (i, params) = target.expect("assumed");
        let (name, _) = pick.get(&params);
        let mut rendered: Vec<String> = models.iter().map(|m| m.challenge().to_string()).collect();
        rendered[i].push_str(&format!(", {}=\"dup\"", name.to_ascii_uppercase()));
        let err = parse_challenges(rendered.iter().map(String::as_str)).expect_err("duplicate");
        prop_assert_eq!(err.kind(), ChallengeErrorKind::DuplicateParameter);
    }

    #[test]
    fn challenge_prop_truncated_quoted_string_rejected(models in models()) {
        let rendered = models.iter().map(|m| m.challenge().to_string()).collect::<Vec<_>>().join(", ");
        // Cut just after the last opening quote: the quoted-string is never closed.
        let mut in_quote = false;
        let mut escaped = false;
        let mut last_open = None;
        for (i, c) in rendered.char_indices() {
            match (in_quote, escaped, c) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (true, false, '"') => in_quote = false,
                (false, _, '"') => { in_quote = true; last_open = Some(i); }
                _ => {}
            }
        }
        prop_assume!(last_open.is_some());
        let open = last_open.expect("assumed");
        let err = parse_challenges([&rendered[..=open]]).expect_err("unterminated");
        prop_assert_eq!((err.kind(), err.offset()), (ChallengeErrorKind::UnterminatedQuotedString, open));
    }
}
