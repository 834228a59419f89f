//! Integration tests, one module per feature. Shared helpers live in `support`.

#[path = "../support/mod.rs"]
mod support;

mod discovery;
mod interop_discovery;
mod transport;
