//! The session layer: what the agent, its child agents and the middleware share.
//!
//! - [`grant`](RefreshingSource): a grant, the one home of its refresh token (seeding,
//!   rotation under the store's lock, persist before hand-out, in-memory custody when the store
//!   fails, re-read on rejection, logout);
//! - `request`: the request builder shared by agent and child requests;
//! - `attempt`: one protected-call attempt (authorization headers, the nonce retry,
//!   classification of the answer, events).

mod attempt;
mod grant;
mod request;

pub(crate) use attempt::{attempt, authorize_headers_with, within_deadline, Outcome};
pub use grant::RefreshingSource;
pub(crate) use grant::{Grant, GrantKey};
pub(crate) use request::{method_shortcuts, request_builder_methods, RequestParts};
