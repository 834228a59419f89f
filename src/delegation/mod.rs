//! Delegation to sub-agents: narrowed, sender-constrained tokens by token exchange (RFC 8693).
//!
//! [`Agent::delegate`](crate::Agent::delegate) starts a [`DelegationBuilder`]. [`spawn`](DelegationBuilder::spawn)
//! checks locally that the request only narrows what the parent holds — scope a subset of the
//! parent token's granted scope, every resource and audience covered by one of the parent's
//! resources, lifetime at most what the parent token has left — and refuses anything wider with
//! [`Error::Delegation`](crate::Error::Delegation) before a request is sent. It then exchanges the parent's access token
//! (the subject token) for a child token. When the parent uses DPoP, the child gets its own
//! fresh [`DpopKey`](crate::DpopKey) and the exchange's proof is signed with it, so the issued token is bound to
//! the child (`cnf.jkt` is the child key's thumbprint) and useless with the parent's key.
//!
//! The resulting [`ChildAgent`] calls its resources like an [`Agent`](crate::Agent) does (token,
//! `Authorization` + `DPoP`, resource nonce retry, one renewal on `invalid_token`), and can
//! delegate again ([`ChildAgent::delegate`]): a grandchild is narrowed relative to the child,
//! and with actor tokens the issued tokens carry a nested `act` chain.
//!
//! For JWT access tokens the chain can be verified: [`verify_delegation_chain`] checks the
//! token's signature against the authorization server's keys ([`Jwks`](crate::discovery::Jwks):
//! fetched from `jwks_uri`, cached, refetched on an unknown `kid`), its issuer and validity,
//! and returns a [`VerifiedChain`] (actors outermost first, with their depth). A delegation
//! can verify every token it gets ([`DelegationBuilder::verify_with`]), require that the
//! parent token's `may_act` (RFC 8693 §4.4) names the child
//! ([`DelegationBuilder::require_may_act`]) and cap the chain's depth
//! ([`DelegationBuilder::max_chain_depth`]); refusals are
//! [`Error::Delegation`](crate::Error::Delegation) saying why, and the audit event carries
//! the verified chain. [`unverified_delegation_chain`] reads the claims without any check,
//! for servers whose keys the client cannot get.
//!
//! A child never has a refresh token. Each of its credentials lives at most
//! min(requested lifetime, parent token's expiry); near its end the child exchanges again
//! through its parent, with exactly the parameters of its first exchange, so it can never gain
//! more than that first narrowing. When the parent no longer holds a valid token (its grant was
//! revoked, say) or the delegation was [revoked](ChildAgent::revoke), renewal fails with
//! [`Error::Delegation`](crate::Error::Delegation).
//!
//! Every exchange emits [`AgentEvent::TokenExchanged`](crate::AgentEvent::TokenExchanged) (fingerprints, the child key's
//! thumbprint and, when verified, the chain; never tokens) to `tracing` and the parent's
//! event hook.
//!
//! ```no_run
//! # async fn run(agent: agent_oauth::Agent, worker: agent_oauth::Agent) -> agent_oauth::Result<()> {
//! use std::time::Duration;
//! use agent_oauth::discovery::Jwks;
//! let jwks = Jwks::new(agent.client().expect("issuer").server().clone());
//! let child = agent
//!     .delegate()
//!     .scope("invoices:read")
//!     .resource("https://api.example.com/invoices")
//!     .lifetime(Duration::from_secs(300))
//!     .actor_agent(&worker)
//!     .verify_with(jwks)
//!     .require_may_act(true) // the parent token's may_act must name `worker`
//!     .max_chain_depth(2)
//!     .param("task_id", "42")
//!     .spawn()
//!     .await?;
//! let chain = child.verified_chain().expect("verified");
//! println!("{} acts for {:?}", chain.actor_names().join(" <- "), chain.sub);
//! let resp = child.get("https://api.example.com/invoices/42").send().await?;
//! println!("{}", resp.status());
//! child.revoke().await?; // RFC 7009
//! # Ok(()) }
//! ```

mod builder;
mod chain;
mod child;
mod exchanger;
mod policy;

pub use builder::DelegationBuilder;
pub use chain::{
    unverified_delegation_chain, verify_delegation_chain, verify_delegation_chain_with, ChainActor,
    UnverifiedChain, UnverifiedClaims, VerifiedChain,
};
pub use child::{ChildAgent, ChildRequest};

#[allow(dead_code)]
fn _assert_send_sync() {
    fn check<T: Send + Sync + Clone>() {}
    fn send<T: Send>(_: &T) {}
    check::<ChildAgent>();
    fn futures(b: DelegationBuilder, r: ChildRequest, c: &ChildAgent) {
        send(&b.spawn());
        send(&r.send());
        send(&c.token());
        send(&c.revoke());
    }
}

/// Request parameters a caller may not set with [`DelegationBuilder::param`]: they are the
/// exchange itself, or what the local narrowing checks.
const RESERVED_PARAMS: &[&str] = &[
    "grant_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "requested_token_type",
    "scope",
    "resource",
    "audience",
    "authorization_details",
    "expires_in",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];

/// Deepest `act` nesting [`unverified_delegation_chain`] follows and [`VerifiedChain`] accepts.
const MAX_ACT_DEPTH: usize = 32;
