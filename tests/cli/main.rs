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
mod oidc;
mod profiles;
mod usage;
mod with_serve;

#[path = "../support/oidc_provider.rs"]
mod oidc_provider;

/// The shared harness of `tests/support`, under the path the other test binaries use.
mod support {
    pub(crate) use super::oidc_provider;
}
