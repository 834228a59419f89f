//! Placeholder until the RFC 9110 parser lands.
#![allow(missing_docs, unreachable_pub)]
use std::fmt;
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}
impl Challenge {
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn error(&self) -> Option<&str> {
        self.param("error")
    }
    pub fn error_description(&self) -> Option<&str> {
        self.param("error_description")
    }
    pub fn resource_metadata(&self) -> Option<&str> {
        self.param("resource_metadata")
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeError;
impl fmt::Display for ChallengeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bad")
    }
}
impl std::error::Error for ChallengeError {}
pub fn parse_challenges<'a, I: IntoIterator<Item = &'a str>>(
    _v: I,
) -> Result<Vec<Challenge>, ChallengeError> {
    Err(ChallengeError)
}
pub fn challenges_from_headers(_h: &http::HeaderMap) -> Result<Vec<Challenge>, ChallengeError> {
    Err(ChallengeError)
}
