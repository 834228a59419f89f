//! The Agent end to end against the embedded server: 401 discovery, DPoP nonces at the
//! resource, refresh on `invalid_token`, scope upgrades, and tokens never leaving their resource.

mod agent_flows;
mod interop;
mod logs;
#[cfg(feature = "middleware")]
mod middleware;
mod resource_nonce;
