//! Shared test support: the oidc-provider interop harness and in-process HTTP servers.

#[cfg(feature = "mtls")]
pub mod mtls_pki;
pub mod oidc_provider;
pub mod server;
