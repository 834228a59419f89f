//! Hardening: behaviours found by driving the crate against hostile servers and real servers it
//! was never tested with. Every test is named `hardening_<item>_<what it shows>`, so
//! `cargo test hardening` runs them all and `cargo test hardening_05` one item.

mod agent_calls;
mod grant_loss;
mod local_inputs;
mod server_text;
