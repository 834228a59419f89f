//! Discovery of what a protected resource expects from the client.

mod challenge;

pub(crate) use challenge::fuzz as fuzz_challenge;
pub use challenge::{
    challenges_from_headers, parse_challenges, Challenge, ChallengeError, ChallengeErrorKind,
};
