//! agent-oauth

mod discovery;

pub use discovery::{
    challenges_from_headers, parse_challenges, Challenge, ChallengeError, ChallengeErrorKind,
};

/// Entry points for the fuzz targets in `fuzz/`; not part of the public API.
#[doc(hidden)]
pub mod __fuzz {
    /// Parses arbitrary bytes as `WWW-Authenticate` lines (split at `\n`)
    /// and panics if a successful parse does not survive a round trip.
    pub fn challenge(data: &[u8]) {
        crate::discovery::fuzz_challenge(data)
    }
}
