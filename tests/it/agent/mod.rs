//! The Agent end to end: 401 discovery, DPoP nonces at the resource, refresh on
//! `invalid_token`, scope upgrades, and tokens never leaving their resource.
//!
//! - `scenarios`: against both servers (`support::servers`);
//! - `agent_flows`, `logs`: against the embedded server.
//!
//! The Agent's DPoP nonce handling at a resource is in `dpop::resource_nonce`, its
//! reqwest-middleware adapter in `middleware`.

mod agent_flows;
mod logs;
mod principals;
mod scenarios;
mod url_first;
mod user_grants;
