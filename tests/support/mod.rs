//! Shared test support: the public API the tests use (`prelude`), the oidc-provider interop
//! harness, in-process HTTP servers, and the `Server` abstraction that runs one scenario against
//! both the embedded server and oidc-provider.

#[cfg(feature = "mtls")]
pub mod mtls_pki;
pub mod oidc_provider;
pub mod prelude;
#[cfg(feature = "redis")]
pub mod redis;
pub mod server;
pub mod servers;
