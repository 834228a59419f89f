//! The session layer: what the agent, its child agents and the middleware share.
//!
//! - [`grant`](RefreshingSource): a grant, the one home of its refresh token (seeding,
//!   rotation under the store's lock, persist before hand-out, in-memory custody when the store
//!   fails, re-read on rejection, logout);
//! - `request`: the request builder shared by agent and child requests;
//! - `protected`: the `Session` trait (token, `Authorization` and `DPoP` headers, answer to a
//!   rejection) that the agent and child agents implement, and the one protected-call loop
//!   over it;
//! - `attempt`: one protected-call attempt (the shared DPoP nonce retry, classification of
//!   the answer, rejection events) and the deadline of a whole call.

mod attempt;
mod grant;
mod protected;
mod request;

pub(crate) use attempt::{within_deadline, Outcome, Rejection};
pub use grant::RefreshingSource;
pub(crate) use grant::{Grant, GrantKey};
pub(crate) use protected::{protected_call, Session};
pub(crate) use request::{method_shortcuts, request_builder_methods, RequestParts};
