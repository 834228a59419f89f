//! `WWW-Authenticate` challenge parsing (RFC 9110 §11.6.1).
//!
//! The header carries a comma-separated list of challenges, and each
//! challenge carries either a `token68` or a comma-separated list of
//! `auth-param`s. A comma therefore either separates two parameters of the
//! same challenge or starts a new challenge; the parser resolves this by
//! looking at the next list element: `token BWS "="` is a parameter of the
//! current challenge, anything else starting with a token is a new challenge.
//!
//! Grammar (RFC 9110 §11.3, §11.6.1, §5.6):
//!
//! ```text
//! WWW-Authenticate = #challenge
//! challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//! auth-scheme = token
//! auth-param  = token BWS "=" BWS ( token / quoted-string )
//! token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//! ```
//!
//! Deliberate choices:
//!
//! * Several header lines are combined as if joined with `", "`
//!   (RFC 9110 §5.3), so a challenge may continue on the next line; a
//!   quoted string may not span lines. Error offsets are byte offsets into
//!   that combined value.
//! * A parameter list may follow the scheme after a comma instead of a space
//!   (`Bearer, realm="x"`); RFC 9110 §11.6.1 notes this ambiguity is harmless.
//! * `Bearer` (RFC 6750 §3) and `DPoP` (RFC 9449 §7.1) challenges carry only
//!   auth-params, so a token68 is not accepted for them: `Bearer realm=` is a
//!   parameter with a missing value, while `Negotiate abc=` is a token68.
//! * A parameter name occurring twice in one challenge (compared
//!   case-insensitively) is an error (RFC 9110 §11.2).
//! * Unquoted parameter values must be tokens; anything else must be quoted.

use std::fmt;

mod error;

use error::MAX_CONTEXT_CHARS;
pub use error::{ChallengeError, ChallengeErrorKind};

/// Maximum total length, in bytes, of the combined header value.
const MAX_INPUT_LEN: usize = 16 * 1024;
/// Maximum number of challenges in one combined header value.
const MAX_CHALLENGES: usize = 32;
/// Maximum number of auth-params in one challenge.
const MAX_PARAMS: usize = 64;

/// One challenge (RFC 9110 §11.6.1): auth-scheme plus either token68 or auth-params.
///
/// Parameter names are unique within a challenge (compared
/// case-insensitively) and kept in the order they were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    token68: Option<String>,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// Starts a challenge with the given auth-scheme and no parameters.
    ///
    /// This is a builder for servers and tests; it does not validate its
    /// input. The scheme and parameter names must be tokens (RFC 9110
    /// §5.6.2) and values must not contain control characters other than
    /// HTAB, otherwise the [`Display`](fmt::Display) output is not a valid
    /// header value.
    pub fn new(scheme: impl Into<String>) -> Self {
        Self {
            scheme: scheme.into(),
            token68: None,
            params: Vec::new(),
        }
    }

    /// Adds an auth-param, replacing any parameter with the same name
    /// (compared case-insensitively), and clears any token68.
    pub fn with_param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        let value = value.into();
        self.token68 = None;
        match self
            .params
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some(slot) => *slot = (name, value),
            None => self.params.push((name, value)),
        }
        self
    }

    /// Sets the token68 (e.g. `dXNlcjpwYXNz`) and clears all auth-params.
    ///
    /// The value must match the token68 grammar for the rendered challenge
    /// to be valid.
    pub fn with_token68(mut self, token68: impl Into<String>) -> Self {
        self.params.clear();
        self.token68 = Some(token68.into());
        self
    }

    /// The auth-scheme exactly as sent (e.g. `Bearer`, `bearer`, `DPoP`).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// Whether the auth-scheme equals `scheme`, compared case-insensitively
    /// as RFC 9110 §11.1 requires.
    pub fn is_scheme(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The token68 of a challenge such as `Basic dXNlcjpwYXNz`, if present.
    pub fn token68(&self) -> Option<&str> {
        self.token68.as_deref()
    }

    /// The value of the auth-param `name`, matched case-insensitively.
    /// Quoted values are returned unquoted and unescaped.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Rewrite the token68 and every parameter value with `f` (used to redact secrets a
    /// server echoed back).
    pub(crate) fn redact_values(&mut self, mut f: impl FnMut(&mut String)) {
        if let Some(t) = &mut self.token68 {
            f(t);
        }
        for (_, v) in &mut self.params {
            f(v);
        }
    }

    /// All auth-params as `(name, value)` pairs, names as sent, in order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The `realm` parameter (RFC 9110 §11.5).
    pub fn realm(&self) -> Option<&str> {
        self.param("realm")
    }

    /// The `error` parameter (RFC 6750 §3, RFC 9449 §7.1).
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }

    /// The `error_description` parameter (RFC 6750 §3).
    pub fn error_description(&self) -> Option<&str> {
        self.param("error_description")
    }

    /// The `scope` parameter (RFC 6750 §3), a space-separated list.
    pub fn scope(&self) -> Option<&str> {
        self.param("scope")
    }

    /// The `resource_metadata` parameter (RFC 9728 §5.1): the URL of the
    /// protected resource metadata document.
    pub fn resource_metadata(&self) -> Option<&str> {
        self.param("resource_metadata")
    }

    /// The `algs` parameter (RFC 9449 §7.1): space-separated JWS algorithms
    /// accepted for DPoP proofs.
    pub fn algs(&self) -> Option<&str> {
        self.param("algs")
    }

    /// The `algs` parameter split on whitespace; empty when absent.
    pub fn algs_list(&self) -> Vec<&str> {
        self.algs()
            .map(|a| a.split_ascii_whitespace().collect())
            .unwrap_or_default()
    }
}

impl fmt::Display for Challenge {
    /// Renders the challenge as a header value: `scheme token68` or
    /// `scheme name="value", ...` with every value as a quoted-string
    /// (`"` and `\` escaped).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        if let Some(t) = &self.token68 {
            return write!(f, " {t}");
        }
        for (i, (name, value)) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            f.write_str(name)?;
            f.write_str("=\"")?;
            for c in value.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// Parse every challenge in one or more header values (several header lines
/// are concatenated per RFC 9110 §5.3).
///
/// Values are combined as if joined with `", "`; error offsets refer to that
/// combined value. The combined value may be at most 16 KiB and hold at most
/// 32 challenges of at most 64 auth-params each.
pub fn parse_challenges<'a, I>(values: I) -> Result<Vec<Challenge>, ChallengeError>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut combined = String::new();
    let mut line_ends = Vec::new();
    for (i, value) in values.into_iter().enumerate() {
        let sep = if i == 0 { 0 } else { 2 };
        if combined.len() + sep + value.len() > MAX_INPUT_LEN {
            return Err(ChallengeError::new(
                ChallengeErrorKind::TooLong,
                MAX_INPUT_LEN,
                "",
            ));
        }
        if i > 0 {
            combined.push_str(", ");
        }
        combined.push_str(value);
        line_ends.push(combined.len());
    }
    Parser {
        input: &combined,
        bytes: combined.as_bytes(),
        pos: 0,
        line_ends: &line_ends,
    }
    .parse()
}

/// Same as [`parse_challenges`], from all `WWW-Authenticate` lines of a
/// header map.
///
/// A value that is not valid UTF-8 is an [`ChallengeErrorKind::InvalidUtf8`]
/// error; no `WWW-Authenticate` header at all is
/// [`ChallengeErrorKind::Empty`].
pub fn challenges_from_headers(
    headers: &http::HeaderMap,
) -> Result<Vec<Challenge>, ChallengeError> {
    let mut values = Vec::new();
    let mut offset = 0usize;
    for value in headers.get_all(http::header::WWW_AUTHENTICATE) {
        let bytes = value.as_bytes();
        match std::str::from_utf8(bytes) {
            Ok(s) => values.push(s),
            Err(e) => {
                return Err(ChallengeError::new(
                    ChallengeErrorKind::InvalidUtf8,
                    offset.saturating_add(e.valid_up_to()),
                    "",
                ))
            }
        }
        offset = offset.saturating_add(bytes.len()).saturating_add(2);
    }
    parse_challenges(values)
}

/// `tchar` (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// token68 characters before the `=` padding (RFC 9110 §11.2).
fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// Bytes never allowed outside a quoted-string: controls other than HTAB,
/// DEL, and non-ASCII.
fn is_forbidden(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b >= 0x7f
}

/// Schemes whose challenges carry only auth-params, never a token68.
fn scheme_forbids_token68(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("Bearer") || scheme.eq_ignore_ascii_case("DPoP")
}

struct Parser<'a> {
    input: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// End offset of each header line in `input`.
    line_ends: &'a [usize],
}

impl Parser<'_> {
    fn err(&self, kind: ChallengeErrorKind, offset: usize) -> ChallengeError {
        ChallengeError::new(kind, offset, self.input)
    }

    /// An error for an unexpected byte at `pos`: `InvalidCharacter` for bytes
    /// that are never allowed there, otherwise `kind`.
    fn unexpected(&self, kind: ChallengeErrorKind, pos: usize) -> ChallengeError {
        match self.bytes.get(pos) {
            Some(&b) if is_forbidden(b) => self.err(ChallengeErrorKind::InvalidCharacter, pos),
            _ => self.err(kind, pos),
        }
    }

    fn peek_at(&self, pos: usize) -> Option<u8> {
        self.bytes.get(pos).copied()
    }

    fn skip_ows_from(&self, mut pos: usize) -> usize {
        while matches!(self.peek_at(pos), Some(b' ' | b'\t')) {
            pos += 1;
        }
        pos
    }

    fn token_end(&self, mut pos: usize) -> usize {
        while self.peek_at(pos).is_some_and(is_tchar) {
            pos += 1;
        }
        pos
    }

    /// Whether `pos` is at the end of a list element (end of input or comma).
    fn at_element_end(&self, pos: usize) -> bool {
        matches!(self.peek_at(pos), None | Some(b','))
    }

    /// If a token68 starts at `pos` and fills the rest of the list element,
    /// returns its end offset.
    fn token68_at(&self, start: usize) -> Option<usize> {
        let mut pos = start;
        while self.peek_at(pos).is_some_and(is_token68_char) {
            pos += 1;
        }
        if pos == start {
            return None;
        }
        while self.peek_at(pos) == Some(b'=') {
            pos += 1;
        }
        self.at_element_end(self.skip_ows_from(pos)).then_some(pos)
    }

    fn parse(mut self) -> Result<Vec<Challenge>, ChallengeError> {
        let mut challenges: Vec<Challenge> = Vec::new();
        loop {
            // Empty list elements and the separators between elements.
            while matches!(self.peek_at(self.pos), Some(b' ' | b'\t' | b',')) {
                self.pos += 1;
            }
            if self.pos >= self.bytes.len() {
                break;
            }
            let start = self.pos;
            let name_end = self.token_end(start);
            if name_end == start {
                return Err(self.unexpected(ChallengeErrorKind::ExpectedScheme, start));
            }
            let after_ws = self.skip_ows_from(name_end);
            if self.peek_at(after_ws) == Some(b'=') {
                // `token BWS "="`: another auth-param of the current challenge.
                match challenges.last_mut() {
                    Some(current) if current.token68.is_none() => {
                        self.pos = start;
                        self.parse_param(current)?;
                    }
                    _ => return Err(self.err(ChallengeErrorKind::ExpectedScheme, start)),
                }
                self.expect_element_end()?;
                continue;
            }
            if challenges.len() >= MAX_CHALLENGES {
                return Err(self.err(ChallengeErrorKind::TooManyChallenges, start));
            }
            let mut challenge = Challenge::new(&self.input[start..name_end]);
            if self.at_element_end(after_ws) {
                // Scheme without token68 or parameters.
                self.pos = after_ws;
            } else if after_ws == name_end {
                return Err(self.err(ChallengeErrorKind::InvalidCharacter, name_end));
            } else {
                self.pos = after_ws;
                match self.token68_at(after_ws) {
                    Some(end) if !scheme_forbids_token68(&challenge.scheme) => {
                        challenge.token68 = Some(self.input[after_ws..end].to_owned());
                        self.pos = end;
                    }
                    _ => self.parse_param(&mut challenge)?,
                }
                self.expect_element_end()?;
            }
            challenges.push(challenge);
        }
        if challenges.is_empty() {
            return Err(self.err(ChallengeErrorKind::Empty, 0));
        }
        Ok(challenges)
    }

    /// After an element: OWS, then a comma or the end of input.
    fn expect_element_end(&mut self) -> Result<(), ChallengeError> {
        self.pos = self.skip_ows_from(self.pos);
        if self.at_element_end(self.pos) {
            Ok(())
        } else {
            Err(self.unexpected(ChallengeErrorKind::ExpectedComma, self.pos))
        }
    }

    /// `auth-param = token BWS "=" BWS ( token / quoted-string )`, added to
    /// `challenge`.
    fn parse_param(&mut self, challenge: &mut Challenge) -> Result<(), ChallengeError> {
        let start = self.pos;
        let name_end = self.token_end(start);
        if name_end == start {
            return Err(self.unexpected(ChallengeErrorKind::ExpectedParameter, start));
        }
        let eq = self.skip_ows_from(name_end);
        if self.peek_at(eq) != Some(b'=') {
            return Err(self.unexpected(ChallengeErrorKind::ExpectedEquals, eq));
        }
        self.pos = self.skip_ows_from(eq + 1);
        let value = match self.peek_at(self.pos) {
            Some(b'"') => self.quoted_string()?,
            Some(b) if is_tchar(b) => {
                let value_start = self.pos;
                self.pos = self.token_end(value_start);
                self.input[value_start..self.pos].to_owned()
            }
            _ => return Err(self.unexpected(ChallengeErrorKind::ExpectedValue, self.pos)),
        };
        let name = &self.input[start..name_end];
        if challenge.param(name).is_some() {
            return Err(self.err(ChallengeErrorKind::DuplicateParameter, start));
        }
        if challenge.params.len() >= MAX_PARAMS {
            return Err(self.err(ChallengeErrorKind::TooManyParameters, start));
        }
        challenge.params.push((name.to_owned(), value));
        Ok(())
    }

    /// `quoted-string` (RFC 9110 §5.6.4) starting at the `"` at `self.pos`,
    /// returned unescaped. It must close before the end of its header line.
    fn quoted_string(&mut self) -> Result<String, ChallengeError> {
        let open = self.pos;
        let line_end = self
            .line_ends
            .iter()
            .copied()
            .find(|&end| end > open)
            .unwrap_or(self.bytes.len());
        let mut pos = open + 1;
        let mut chunk_start = pos;
        let mut out = String::new();
        loop {
            if pos >= line_end {
                return Err(self.err(ChallengeErrorKind::UnterminatedQuotedString, open));
            }
            match self.bytes[pos] {
                b'"' => {
                    out.push_str(&self.input[chunk_start..pos]);
                    self.pos = pos + 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.input[chunk_start..pos]);
                    pos += 1;
                    if pos >= line_end {
                        return Err(self.err(ChallengeErrorKind::UnterminatedQuotedString, open));
                    }
                    let b = self.bytes[pos];
                    if (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(self.err(ChallengeErrorKind::InvalidCharacter, pos));
                    }
                    // The escaped character starts here; it is copied with the
                    // next chunk (bytes of a multi-byte character are never
                    // `"` or `\`, so the loop below steps over them).
                    chunk_start = pos;
                    pos += 1;
                }
                b if (b < 0x20 && b != b'\t') || b == 0x7f => {
                    return Err(self.err(ChallengeErrorKind::InvalidCharacter, pos));
                }
                _ => pos += 1,
            }
        }
    }
}

/// Fuzzing entry point: parses arbitrary bytes (split into header lines at
/// `\n`) and checks that successful results survive a render/parse round trip.
pub(crate) fn fuzz(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let parsed = parse_challenges(lines.iter().copied());
    match &parsed {
        Ok(challenges) => {
            assert!(!challenges.is_empty() && challenges.len() <= MAX_CHALLENGES);
            let rendered = challenges
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            if rendered.len() <= MAX_INPUT_LEN {
                let reparsed = parse_challenges([rendered.as_str()]);
                assert_eq!(
                    reparsed.as_ref(),
                    Ok(challenges),
                    "round trip of {rendered:?}"
                );
            }
        }
        Err(e) => {
            let total = lines.iter().map(|l| l.len() + 2).sum::<usize>();
            assert!(e.offset() <= total.max(MAX_INPUT_LEN));
            assert!(e.to_string().chars().count() < 100 + 12 * MAX_CONTEXT_CHARS);
        }
    }
    // The same lines through an `http::HeaderMap`, where they are valid header values.
    let mut headers = http::HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = http::HeaderValue::from_bytes(line) {
            headers.append(http::header::WWW_AUTHENTICATE, value);
        }
    }
    let _ = challenges_from_headers(&headers);
}

#[cfg(test)]
mod tests;
