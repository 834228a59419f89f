//! DPoP: Demonstrating Proof of Possession (RFC 9449).
//!
//! A [`DpopKey`] signs one proof JWT per HTTP request, binding tokens to a key the client holds:
//! a stolen token is useless without the key. Proofs name the method and URL
//! ([`normalize_htu`]), carry a fresh `jti`, the time, the server's latest nonce
//! ([`NonceCache`]) and, towards a resource server, the access token hash ([`ath`]).
//!
//! Every DPoP request goes through one nonce retry (`retry`): a fresh proof per attempt with
//! the nonce current at that attempt, one retry only when the server sent a new nonce.
//!
//! The key's protected header and thumbprint are computed once; a proof costs one ES256
//! signature plus a few hundred bytes of string building.

pub(crate) mod key;
mod nonce;
mod proof;
mod retry;
#[cfg(test)]
pub(crate) mod testing;

pub(crate) use key::DpopKey;
#[allow(unused_imports)]
pub use nonce::NonceCache;
pub(crate) use nonce::{NonceRole, ServerNonces};
pub use proof::{ath, normalize_htu};
pub(crate) use retry::{send_with_nonce_retry, Answer, Answered, NonceSlot, ProofNonce};

/// The `DPoP` request header's name, as a constant: a custom name given as a string is copied
/// into a new buffer on every insert.
pub(crate) const DPOP_HEADER: http::HeaderName = http::HeaderName::from_static("dpop");
