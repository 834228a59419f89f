//! The Agent end to end: 401 discovery, DPoP nonces at the resource, refresh on
//! `invalid_token`, scope upgrades, and tokens never leaving their resource.
//!
//! - `scenarios`: against both servers (`support::servers`);
//! - `agent_flows`, `logs`, `middleware`, `resource_nonce`: against the embedded server or a
//!   scripted resource.

mod agent_flows;
mod logs;
#[cfg(feature = "middleware")]
mod middleware;
mod resource_nonce;
mod scenarios;
