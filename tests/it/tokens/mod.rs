//! Token acquisition, caching and refresh-token rotation, end to end.
//!
//! Most tests run against the embedded test server ([`agent_oauth::testkit::TestServer`]);
//! `interop_tokens` and part of `multiprocess` run against node `oidc-provider` 9 (skipped
//! when Node.js is missing, see `tests/support/oidc_provider.rs`).
//!
//! Modules and test name prefixes:
//!
//! - `grants` (`grant_*`): every grant and client authentication method, fault injection;
//! - `refresh` (`refresh_*`): [`agent_oauth::RefreshingSource`] rotation with both stores;
//! - `cache` (`cache_*`): single flight and refresh-ahead against a real token endpoint;
//! - `interop_tokens` (`interop_tokens_*`): the same flows against oidc-provider;
//! - `multiprocess` (`refresh_multiprocess_*`): two OS processes refreshing one grant.

mod cache;
mod common;
mod grants;
mod interop;
mod multiprocess;
mod refresh;
