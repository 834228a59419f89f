//! Handles acting for one principal ([`Agent::for_principal`]) and the consent a principal
//! without a grant must give.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::cache::{Principal, TokenHandle, TokenRef};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, ConsentRequest, EventHook};
use crate::grant::TokenParams;

use super::{Agent, Authority, AuthorizationReason};

/// The agent itself, for handles that act for no other principal.
static AGENT: Principal = Principal::agent();

/// Kept handles by resource string, and the handles epoch they were made in.
type Kept = (u64, Vec<(Box<str>, TokenHandle)>);

/// What a principal's handle keeps: who it acts for, and `access_token`'s handles by resource
/// string, valid while the agent's handle epoch has not moved.
pub(super) struct Acting {
    principal: Principal,
    fast: arc_swap::ArcSwap<Kept>,
}

impl Agent {
    /// A handle acting for `principal` (a user or workload the agent serves): it shares the
    /// agent (transport, cache, store, registrations, authorization servers) and is as cheap to
    /// clone, and every token it asks for, caches and stores is that principal's alone.
    ///
    /// A principal's tokens come only from its own grant, obtained by its login through this
    /// handle ([`authorization_url`](Self::authorization_url) and
    /// [`complete_authorization`](Self::complete_authorization),
    /// [`login_device`](Self::login_device), or [`adopt_grant`](Self::adopt_grant)) or found
    /// in the store. Without one, a call fails with [`Error::ConsentRequired`] and an
    /// [`AgentEvent::ConsentRequired`] is emitted: a principal is never served the agent's
    /// client-credentials token or another principal's token, and the authorization hook
    /// (the agent's own interactive login) is not run for it. Child agents spawned from the
    /// handle ([`delegate`](Self::delegate)) narrow the principal's tokens.
    ///
    /// `Principal::agent()` gives a handle acting for the agent itself, like the agent.
    ///
    /// ```no_run
    /// # async fn run(agent: agent_oauth::Agent) -> agent_oauth::Result<()> {
    /// let alice = agent.for_principal("user:alice");
    /// match alice.get("https://api.example.com/me").send().await {
    ///     Err(agent_oauth::Error::ConsentRequired(request)) => {
    ///         // Send alice to log in at request.issuer, then complete_authorization on `alice`.
    ///         println!("{} must log in at {}", request.principal, request.issuer);
    ///     }
    ///     other => println!("{:?}", other.map(|r| r.status())),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn for_principal(&self, principal: impl Into<crate::cache::Principal>) -> Agent {
        let principal = principal.into();
        Agent {
            inner: self.inner.clone(),
            acting: (!principal.is_agent()).then(|| {
                Arc::new(Acting {
                    principal,
                    fast: arc_swap::ArcSwap::default(),
                })
            }),
        }
    }

    /// Who this handle acts for ([`Principal::agent`] unless made by
    /// [`for_principal`](Self::for_principal)).
    pub fn principal(&self) -> &Principal {
        self.acting.as_ref().map_or(&AGENT, |a| &a.principal)
    }

    /// The same agent acting for itself (what a token source holding only the agent's state
    /// rebuilds).
    pub(super) fn from_inner(inner: Arc<super::AgentInner>, principal: &Principal) -> Agent {
        Agent {
            inner,
            acting: None,
        }
        .for_principal(principal.clone())
    }

    /// The handles epoch: moves whenever kept handles must be dropped.
    pub(super) fn handles_epoch(&self) -> u64 {
        self.inner.handles_epoch.load(Ordering::Acquire)
    }

    /// `access_token` for a principal's handle: its kept handle when still valid, else resolved
    /// and kept (up to 16 resources).
    pub(super) async fn principal_access_token(
        &self,
        acting: &Acting,
        resource: Option<&str>,
    ) -> Result<TokenRef> {
        let name = resource.unwrap_or("");
        let epoch = self.handles_epoch();
        let kept = {
            let fast = acting.fast.load();
            (fast.0 == epoch)
                .then(|| {
                    fast.1
                        .iter()
                        .find(|(k, _)| **k == *name)
                        .map(|(_, h)| h.clone())
                })
                .flatten()
        };
        let handle = match kept {
            Some(h) => match h.peek() {
                Some(hit) => return Ok(hit),
                None => h,
            },
            None => {
                let h = self.resolve_handle(resource)?;
                acting.fast.rcu(|cur| {
                    let mut list = if cur.0 == epoch {
                        cur.1.clone()
                    } else {
                        Vec::new()
                    };
                    if list.len() < 16 && !list.iter().any(|(k, _)| **k == *name) {
                        list.push((name.into(), h.clone()));
                    }
                    (epoch, list)
                });
                h
            }
        };
        // The shared flight clock bounds the wait: no timer per caller (a stampede of first
        // calls would arm and cancel thousands).
        handle
            .get_within(self.inner.transport.config().deadline)
            .await
    }

    /// The principal has no usable grant at `authority`: report what its login needs.
    pub(super) async fn consent_required(
        &self,
        authority: &Authority,
        principal: &Principal,
        params: &TokenParams,
        reason: AuthorizationReason,
    ) -> Error {
        let authorization_endpoint = authority
            .client
            .server()
            .metadata()
            .await
            .ok()
            .and_then(|md| md.authorization_endpoint.clone());
        let request = ConsentRequest {
            principal: principal.id().unwrap_or_default().to_owned(),
            issuer: authority.issuer().to_owned(),
            client_id: authority.client.client_id().to_owned(),
            authorization_endpoint,
            resource: params.resources.first().cloned(),
            scope: params.scope.clone().unwrap_or_default().to_string(),
            reason: reason.as_str(),
        };
        tracing::info!(target: "agent_oauth", principal = %principal,
            issuer = %request.issuer, reason = request.reason, "consent required");
        EventHook::emit(
            self.events(),
            AgentEvent::ConsentRequired {
                request: request.clone(),
            },
        );
        Error::ConsentRequired(Box::new(request))
    }
}
