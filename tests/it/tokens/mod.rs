//! Token acquisition, caching and refresh-token rotation, end to end.
//!
//! Most tests run against the embedded test server ([`agent_oauth::testkit::TestServer`]);
//! `scenarios` and part of `multiprocess` run against it and node `oidc-provider` 9 alike
//! (`support::servers`; oidc-provider is skipped when Node.js is missing, see
//! `tests/support/oidc_provider.rs`).
//!
//! Modules and test name prefixes:
//!
//! - `grants` (`grant_*`): every grant and client authentication method, fault injection;
//! - `refresh` (`refresh_*`): [`agent_oauth::RefreshingSource`] rotation with both stores;
//! - `cache` (`cache_*`): single flight and refresh-ahead against a real token endpoint;
//! - `scenarios` (`grant_*`, `refresh_*`): client credentials with scope and resource,
//!   revocation and introspection, rotation through `RefreshingSource` and 50 concurrent
//!   refreshes, on both servers;
//! - `multiprocess` (`refresh_multiprocess_*`): two OS processes refreshing one grant;
//! - `store_multiprocess` (`store_multiprocess_*`): four OS processes rotating one refresh
//!   token through one `FileStore`.

mod cache;
pub(crate) mod common;
mod fleet_keys;
mod grants;
mod multiprocess;
mod refresh;
mod scenarios;
mod store_multiprocess;
