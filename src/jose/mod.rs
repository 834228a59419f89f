//! JOSE building blocks: public JWKs and thumbprints, the [`Signer`] seam, compact JWS, and
//! verification of signed JWTs.
//!
//! Signing covers what the crate sends: EC P-256 public keys (RFC 7517, thumbprints per
//! RFC 7638) and ES256 compact JWS (RFC 7515, RFC 7518 §3.4). Signing goes through [`Signer`],
//! so a key can live in an HSM or KMS; [`RingSigner`] (ring) is the default and [`P256Signer`]
//! (pure-Rust RustCrypto) the alternative.
//!
//! Verification covers what the crate reads: JWT access tokens signed by an authorization
//! server, checked with ring against [`VerifyingJwk`]s (ES256, RS256, PS256, EdDSA; never
//! `none` or `HS*`) and a [`Validation`] of the issuer, validity window and audience. The keys
//! usually come from the server's JWKS ([`Jwks`](crate::discovery::Jwks)); [`verify_jwt`]
//! takes a fixed set.

mod claims;
mod jwk;
mod jws;
mod signer;
mod verify;

pub use crate::error::VerificationError;
pub(crate) use claims::verify_parsed;
pub use claims::{verify_jwt, Validation, VerifiedJwt};
pub use jwk::PublicJwk;
#[allow(unused_imports)]
pub(crate) use jwk::{b64, b64_decode, b64_into, push_json_str, thumbprint_of_members};
pub(crate) use jws::header_b64_with_jwk;
pub use jws::sign_compact;
pub(crate) use jws::sign_compact_parts;
pub(crate) use signer::public_jwk_of;
pub use signer::{P256Signer, RingSigner, Signer};
pub(crate) use verify::CompactJws;
pub use verify::{verify_compact, JwsAlgorithm, VerifyingJwk};
