//! Why a signed JWT was refused: [`VerificationError`], carried by [`Error::Verification`].
//!
//! [`Error::Verification`]: super::Error::Verification

use std::fmt;

/// Why a JWT was not accepted as verified: its form, algorithm, key, signature or claims.
///
/// Messages name the claim or header member that failed and, for the issuer and audience, the
/// values involved (capped and sanitized); they never contain the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerificationError {
    /// Not a compact JWS with a JSON object header and payload, over the size limit, or a
    /// header the verifier does not understand (`crit`).
    Malformed(String),
    /// The header's `alg` is not one the verifier accepts: `none`, the `HS*` family (a public
    /// key is no secret) and unknown names are always refused.
    AlgorithmNotAllowed(String),
    /// The `alg` does not fit the key: another key type or curve, or the JWK's own `alg`.
    KeyMismatch(String),
    /// No key of the issuer's JWKS has this `kid` (also after one refetch), or the token has
    /// no `kid` and the set has no single key it could be.
    UnknownKey(Option<String>),
    /// The signature does not verify with the selected key.
    BadSignature,
    /// `iss` is missing or is not the expected issuer.
    IssuerMismatch {
        /// The issuer expected.
        expected: String,
        /// The token's `iss` (sanitized), if it has one.
        found: Option<String>,
    },
    /// `exp` has passed (beyond the allowed clock skew), or is missing or not a number.
    Expired,
    /// `nbf` or `iat` lies in the future (beyond the allowed clock skew).
    NotYetValid,
    /// The expected audience is not among the token's `aud` values.
    AudienceMismatch(String),
    /// A claim has the wrong type or shape, or an `act` chain nests deeper than allowed.
    InvalidClaim(String),
}

impl fmt::Display for VerificationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(why) => write!(f, "malformed JWT: {why}"),
            Self::AlgorithmNotAllowed(alg) => write!(f, "algorithm `{alg}` is not allowed"),
            Self::KeyMismatch(why) => write!(f, "key does not fit the algorithm: {why}"),
            Self::UnknownKey(Some(kid)) => write!(f, "no key with kid `{kid}` in the JWKS"),
            Self::UnknownKey(None) => f.write_str("no kid and no single key to verify with"),
            Self::BadSignature => f.write_str("signature does not verify"),
            Self::IssuerMismatch { expected, found } => match found {
                Some(found) => write!(f, "issuer `{found}` is not the expected `{expected}`"),
                None => write!(f, "no `iss` claim (expected `{expected}`)"),
            },
            Self::Expired => f.write_str("token expired (or has no numeric `exp`)"),
            Self::NotYetValid => f.write_str("token not yet valid (`nbf`/`iat` in the future)"),
            Self::AudienceMismatch(aud) => write!(f, "audience `{aud}` not in `aud`"),
            Self::InvalidClaim(why) => write!(f, "invalid claim: {why}"),
        }
    }
}
