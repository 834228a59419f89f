//! What a malformed `WWW-Authenticate` value gets: [`ChallengeError`], with its kind and a
//! bounded, sanitized excerpt of where parsing stopped.

use std::fmt;

/// Maximum number of input characters echoed by [`ChallengeError`]'s `Display`.
pub(super) const MAX_CONTEXT_CHARS: usize = 64;

/// What went wrong while parsing a `WWW-Authenticate` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChallengeErrorKind {
    /// The value contains no challenge (empty, or only commas and whitespace).
    Empty,
    /// An auth-scheme token was expected.
    ExpectedScheme,
    /// An auth-param name (or, for schemes that allow it, a token68) was
    /// expected after the auth-scheme.
    ExpectedParameter,
    /// `=` was expected after an auth-param name.
    ExpectedEquals,
    /// An auth-param value (token or quoted-string) was expected after `=`.
    ExpectedValue,
    /// A comma or the end of the value was expected.
    ExpectedComma,
    /// A quoted-string is not closed before the end of its header line.
    UnterminatedQuotedString,
    /// A character that is not allowed at this position (control character,
    /// non-ASCII outside a quoted-string, or a stray delimiter).
    InvalidCharacter,
    /// A header value is not valid UTF-8.
    InvalidUtf8,
    /// An auth-param name occurs twice in one challenge (case-insensitively).
    DuplicateParameter,
    /// The combined value exceeds 16 KiB.
    TooLong,
    /// The value holds more than 32 challenges.
    TooManyChallenges,
    /// A challenge holds more than 64 auth-params.
    TooManyParameters,
}

impl ChallengeErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Empty => "no challenge in WWW-Authenticate",
            Self::ExpectedScheme => "expected an auth-scheme",
            Self::ExpectedParameter => "expected an auth-param or token68",
            Self::ExpectedEquals => "expected '=' after auth-param name",
            Self::ExpectedValue => "expected a token or quoted-string value",
            Self::ExpectedComma => "expected ',' or end of value",
            Self::UnterminatedQuotedString => "unterminated quoted-string",
            Self::InvalidCharacter => "invalid character",
            Self::InvalidUtf8 => "header value is not valid UTF-8",
            Self::DuplicateParameter => "duplicate auth-param",
            Self::TooLong => "WWW-Authenticate value exceeds 16 KiB",
            Self::TooManyChallenges => "more than 32 challenges",
            Self::TooManyParameters => "more than 64 auth-params in one challenge",
        }
    }
}

impl fmt::Display for ChallengeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Error from parsing a `WWW-Authenticate` value: what went wrong and at
/// which byte offset of the (combined) value.
///
/// `Display` echoes at most 64 characters of the input, with control
/// characters escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChallengeError {
    kind: ChallengeErrorKind,
    offset: usize,
    context: String,
}

impl ChallengeError {
    pub(super) fn new(kind: ChallengeErrorKind, offset: usize, input: &str) -> Self {
        let mut start = offset.min(input.len());
        while !input.is_char_boundary(start) {
            start += 1;
        }
        let context = input
            .get(start..)
            .unwrap_or_default()
            .chars()
            .take(MAX_CONTEXT_CHARS)
            .collect();
        Self {
            kind,
            offset,
            context,
        }
    }

    /// Byte offset into the combined header value where the problem was found.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What went wrong.
    pub fn kind(&self) -> ChallengeErrorKind {
        self.kind
    }
}

impl fmt::Display for ChallengeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.kind, self.offset)?;
        if !self.context.is_empty() {
            write!(f, " near \"{}\"", self.context.escape_debug())?;
        }
        Ok(())
    }
}

impl std::error::Error for ChallengeError {}
