//! Audit events: what the agent did with tokens, with fingerprints, never tokens.
//!
//! Every event is also emitted as a `tracing` event with target `agent_oauth`. Register a hook
//! with [`AgentBuilder::on_event`](crate::AgentBuilder::on_event) to ship them to an audit log.

use std::fmt;
use std::sync::Arc;

/// Something that happened to a token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A new token was obtained (any grant but refresh and exchange).
    TokenAcquired {
        /// Client identifier.
        client_id: String,
        /// Resource the token is for, if any.
        resource: Option<String>,
        /// Granted scope.
        scope: String,
        /// Fingerprint of the access token.
        fingerprint: String,
    },
    /// A token was refreshed.
    TokenRefreshed {
        /// Client identifier.
        client_id: String,
        /// Resource the token is for, if any.
        resource: Option<String>,
        /// Fingerprint of the new access token.
        fingerprint: String,
    },
    /// A token was exchanged for a narrower one (RFC 8693), e.g. for a child agent.
    TokenExchanged {
        /// The parent's client identifier.
        parent_client_id: String,
        /// Who the child token is for (its actor or client label).
        child: String,
        /// Granted scope.
        scope: String,
        /// Resources / audiences of the child token.
        resources: Vec<String>,
        /// Lifetime in seconds, if known.
        lifetime_secs: Option<u64>,
        /// Fingerprint of the parent token that was exchanged.
        parent_fingerprint: String,
        /// Fingerprint of the issued child token.
        child_fingerprint: String,
        /// Thumbprint of the key the child token is bound to, if any.
        child_jkt: Option<String>,
        /// The child token's `sub`, verified against the issuer's JWKS; `None` when the
        /// delegation does not verify tokens
        /// ([`DelegationBuilder::verify_with`](crate::delegation::DelegationBuilder::verify_with)).
        verified_sub: Option<String>,
        /// The child token's verified `act` chain, actors' names outermost (the current
        /// actor) first; `None` when the delegation does not verify tokens.
        verified_actors: Option<Vec<String>>,
    },
    /// A token was revoked (RFC 7009).
    TokenRevoked {
        /// Fingerprint of the revoked token.
        fingerprint: String,
    },
    /// The agent needs the user to authorize it at an authorization server (first use, expired
    /// access-token-only session, refresh token rejected, or a step-up to more scope) and is
    /// calling the authorization hook.
    AuthorizationRequired {
        /// The authorization server.
        issuer: String,
        /// The resource the token is for, if any.
        resource: Option<String>,
        /// The scope asked for (space-separated; empty when none is asked).
        scope: String,
        /// Why: `first_use`, `expired`, `reauthorization` or `step_up`.
        reason: &'static str,
    },
    /// A principal the agent acts for has no usable grant at an authorization server: a
    /// login by that principal must start (see [`ConsentRequest`]). The call that needed the
    /// token fails with [`Error::ConsentRequired`](crate::Error::ConsentRequired); no other
    /// principal's token and no client-credentials token is used instead.
    ConsentRequired {
        /// What a user interface needs to start the principal's login.
        request: ConsentRequest,
    },
    /// A client was registered at an authorization server (RFC 7591 dynamic registration), or
    /// a stored registration was dropped after the server refused it.
    ClientRegistered {
        /// The authorization server.
        issuer: String,
        /// The client identifier it issued.
        client_id: String,
    },
    /// A resource rejected a token (401 `invalid_token` / 403 `insufficient_scope`).
    TokenRejected {
        /// The resource's origin.
        origin: String,
        /// The error code.
        error: String,
        /// Fingerprint of the rejected token.
        fingerprint: String,
    },
    /// A server's `Date` header was further from our clock than
    /// one day and was ignored: proofs and
    /// assertions for that origin keep using the offset known before (or none).
    ClockOffsetIgnored {
        /// The origin that sent the `Date`.
        origin: String,
        /// The offset it implied: server time minus local time, in whole seconds.
        offset_secs: i64,
    },
    /// The token store failed to take tokens the server issued (a rotated refresh token). They
    /// are kept in memory and used from there (the access token is handed out, the next refresh
    /// presents the newest refresh token), and the write is retried in the background with
    /// backoff until it succeeds. Emitted once per failed attempt.
    StoreWriteFailed {
        /// Fingerprint of the access token whose grant is not yet persisted.
        fingerprint: String,
        /// Failed attempts so far for this write (1 for the write made right after the refresh).
        attempt: u32,
        /// The store's error.
        error: String,
    },
    /// A store write that had failed succeeded: the store holds the newest tokens again.
    StoreWriteRecovered {
        /// Fingerprint of the access token whose grant is now persisted.
        fingerprint: String,
        /// Failed attempts before this success.
        failed_attempts: u32,
    },
}

/// What a user interface needs to start a principal's login: who must consent, at which
/// authorization server and client, for which resource and scope, and why.
///
/// Carried by [`AgentEvent::ConsentRequired`] and
/// [`Error::ConsentRequired`](crate::Error::ConsentRequired). Start the login with the
/// principal's handle (`agent.for_principal(id)`): `authorization_url` then
/// `complete_authorization`, `login_device`, or `adopt_grant` with tokens obtained elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsentRequest {
    /// The principal's identifier.
    pub principal: String,
    /// The authorization server.
    pub issuer: String,
    /// The agent's client there.
    pub client_id: String,
    /// The server's authorization endpoint, when its metadata names one.
    pub authorization_endpoint: Option<String>,
    /// The resource the token is for, if any.
    pub resource: Option<String>,
    /// The scope asked for (space-separated; empty when none is asked).
    pub scope: String,
    /// Why: `first_use` (no grant), `expired`, `reauthorization` (the grant was rejected or
    /// revoked) or `step_up` (more scope than the grant covers).
    pub reason: &'static str,
}

/// A hook receiving [`AgentEvent`]s.
#[derive(Clone)]
pub(crate) struct EventHook(Arc<dyn Fn(&AgentEvent) + Send + Sync>);

impl EventHook {
    /// Wrap a function.
    pub(crate) fn new(f: impl Fn(&AgentEvent) + Send + Sync + 'static) -> Self {
        EventHook(Arc::new(f))
    }

    /// Emit to tracing and to the hook.
    pub(crate) fn emit(hook: Option<&EventHook>, event: AgentEvent) {
        tracing::info!(target: "agent_oauth", event = ?event, "token event");
        if let Some(h) = hook {
            (h.0)(&event);
        }
    }
}

impl fmt::Debug for EventHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventHook")
    }
}
