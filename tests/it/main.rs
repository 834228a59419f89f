//! Integration tests: one binary, one module per feature, `support` shared by all.
//!
//! Every module is named after the feature it covers, so `cargo test --all-features <module>`
//! runs one feature's tests (`cargo test --all-features dpop::`, `... hardening_05`).
//! Modules that need an optional feature are gated on it. Tests that drive node oidc-provider 9
//! start it through `support::oidc_provider` and skip when Node.js is missing (they fail
//! instead under `CI`). Scenarios that make sense on any authorization server are written once
//! against `support::servers::Server` and run against both the embedded
//! [`agent_oauth::testkit::TestServer`] and oidc-provider.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]
// Helpers in `support` used only by feature-gated modules.
#![cfg_attr(
    not(all(feature = "mtls", feature = "josekit", feature = "middleware")),
    allow(dead_code, unused_imports)
)]

#[path = "../support/mod.rs"]
mod support;

mod agent;
mod challenge;
mod delegation;
mod discovery;
mod dpop;
mod hardening;
mod identity;
mod interop_harness;
#[cfg(feature = "middleware")]
mod middleware;
#[cfg(feature = "mtls")]
mod mtls;
#[cfg(feature = "redis")]
mod redis_fleet;
#[cfg(feature = "redis")]
mod redis_store;
mod registration;
mod streaming;
mod testkit_mcp;
mod testkit_server;
mod tokens;
mod transport;
