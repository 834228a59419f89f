//! Shared test support: the oidc-provider interop harness and in-process HTTP servers.

pub mod oidc_provider;
pub mod server;
#[cfg(feature = "mtls")]
pub mod mtls_pki;
