//! JOSE building blocks: public JWKs and thumbprints, the [`Signer`] seam, compact JWS.
//!
//! Only what the crate needs to sign is here: EC P-256 public keys (RFC 7517, thumbprints per
//! RFC 7638) and ES256 compact JWS (RFC 7515, RFC 7518 §3.4). Signing goes through [`Signer`],
//! so a key can live in an HSM or KMS; [`RingSigner`] (ring) is the default and [`P256Signer`]
//! (pure-Rust RustCrypto) the alternative.

mod jwk;
mod jws;
mod signer;

pub use jwk::PublicJwk;
#[allow(unused_imports)]
pub(crate) use jwk::{b64, b64_decode, b64_into, push_json_str, thumbprint_of_members};
pub(crate) use jws::header_b64_with_jwk;
pub use jws::sign_compact;
pub(crate) use signer::public_jwk_of;
pub use signer::{P256Signer, RingSigner, Signer};
