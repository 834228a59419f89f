//! The Agent end to end against the embedded server: 401 discovery, DPoP nonces at the
//! resource, refresh on `invalid_token`, scope upgrades, and tokens never leaving their resource.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agent_flows;
mod interop_agent;
mod logs;
#[cfg(feature = "middleware")]
mod middleware;
mod resource_nonce;
