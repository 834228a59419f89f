//! Where tokens live between uses.
//!
//! A [`TokenStore`] is the durable home of refresh tokens (and optionally the last access token)
//! for each grant. Writes are compare-and-swap on a per-key version, and
//! [`lock`](TokenStore::lock) serializes refreshes of one grant, so several threads, tasks or
//! processes sharing a store never spend the same refresh token twice.
//!
//! - [`MemoryStore`]: in-process only, for tests and short-lived agents.
//! - [`FileStore`]: one file per key in a private directory, shared between processes.

mod file_store;
mod store;

pub use file_store::FileStore;
pub use store::{MemoryStore, StoreLock, StoreOutcome, StoredGrant, TokenStore, Versioned};
