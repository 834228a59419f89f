//! Where tokens live: the in-memory [`TokenCache`] and the durable [`TokenStore`](crate::store::TokenStore).
//!
//! The cache maps a [`TokenKey`] (issuer, client, scope set, resources, audiences, binding) to
//! the current token, serves hits without locks, refreshes ahead of expiry in the background,
//! and makes exactly one request per key however many tasks ask at once.
//!
//! The cache holds access tokens only. A grant's refresh token lives with the grant
//! ([`RefreshingSource`](crate::RefreshingSource)), which persists it in a [`TokenStore`](crate::store::TokenStore) (with optionally the last
//! access token). Writes are compare-and-swap on a per-key version, and
//! [`lock`](crate::store::TokenStore::lock) serializes refreshes of one grant, so several threads, tasks or
//! processes sharing a store never spend the same refresh token twice
//! ([`RefreshingSource`](crate::RefreshingSource)).
//!
//! - [`MemoryStore`](crate::store::MemoryStore): in-process only, for tests and short-lived agents.
//! - [`FileStore`](crate::store::FileStore): one file per key in a private directory, shared between processes.

mod key;
mod token_cache;

pub use key::{Principal, TokenKey};
pub(crate) use token_cache::BoxFuture;
pub use token_cache::{CacheConfig, CachedToken, TokenCache, TokenHandle, TokenRef, TokenSource};
