//! The Agent end to end: 401 discovery, DPoP nonces at the resource, refresh on
//! `invalid_token`, scope upgrades, and tokens never leaving their resource.
//!
//! - `scenarios`: against both servers (`support::servers`);
//! - `agent_flows`, `logs`, `middleware`: against the embedded server.
//!
//! The Agent's DPoP nonce handling at a resource is in `dpop::resource_nonce`.

mod agent_flows;
mod logs;
#[cfg(feature = "middleware")]
mod middleware;
mod scenarios;
