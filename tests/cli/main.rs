//! Integration tests of the `agent-oauth` binary (feature `cli`): the built binary is run as a
//! process against `agent-oauth serve` (itself a separate process) and against node
//! oidc-provider, and a headless Chromium completes a browser login. Test names start with
//! `cli_`, so `cargo test --all-features cli_` selects them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

mod browser;
mod delegation;
mod harness;
#[cfg(feature = "mtls")]
mod mtls;
mod oidc;
mod profiles;
mod usage;
mod with_serve;
mod workload;

#[cfg(feature = "mtls")]
#[path = "../support/mtls_pki.rs"]
mod mtls_pki;
#[path = "../support/oidc_provider.rs"]
mod oidc_provider;
#[allow(unused_imports)]
#[path = "../support/prelude.rs"]
mod prelude;

/// The shared harness of `tests/support`, under the paths the other test binaries use.
mod support {
    #[cfg(feature = "mtls")]
    pub(crate) use super::mtls_pki;
    pub(crate) use super::{oidc_provider, prelude};
}
