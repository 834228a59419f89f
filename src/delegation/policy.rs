//! Delegation policy on verified tokens: the parent token's `may_act` must name the child
//! (RFC 8693 §4.4), and the issued token's `act` chain may be at most so deep.
//!
//! Both read claims verified against the authorization server's JWKS ([`Jwks`]); without a
//! JWKS given with [`DelegationBuilder::verify_with`], the policy fetches the keys of the
//! server the exchange goes to.

use crate::agent::Agent;
use crate::discovery::Jwks;
use crate::error::{sanitize, Error, Result};
use crate::grant::OAuthClient;
use crate::grant::ACCESS_TOKEN_TYPE;
use crate::secret::SecretString;
use crate::token::{AccessToken, TokenSet};

use super::builder::{DelegationBuilder, Parent};
use super::chain::{verify_delegation_chain, VerifiedChain};

/// Where the exchange's actor token comes from.
#[derive(Clone)]
pub(super) enum Actor {
    Token {
        token: SecretString,
        token_type: String,
    },
    Agent(Agent),
}

impl Actor {
    pub(super) async fn token(&self) -> Result<(SecretString, String)> {
        match self {
            Actor::Token { token, token_type } => Ok((token.clone(), token_type.clone())),
            Actor::Agent(a) => {
                let t = a.access_token(None).await?;
                Ok((
                    SecretString::new(t.token().access_token.secret()),
                    ACCESS_TOKEN_TYPE.to_owned(),
                ))
            }
        }
    }
}

/// What a delegation verifies and enforces.
#[derive(Clone, Default)]
pub(super) struct Policy {
    /// The keys tokens are verified with; set when anything is to be verified.
    pub(super) jwks: Option<Jwks>,
    pub(super) require_may_act: bool,
    pub(super) max_chain_depth: Option<usize>,
}

impl DelegationBuilder {
    /// Verify the tokens of this delegation against `jwks` (the authorization server's keys,
    /// see [`Jwks`]): every token the exchange returns must verify (signature, issuer,
    /// validity), its verified chain is kept ([`ChildAgent::verified_chain`]) and carried by
    /// the [`AgentEvent::TokenExchanged`](crate::AgentEvent::TokenExchanged) audit event.
    /// Grandchildren inherit it. Share one `Jwks` between delegations, so the keys are
    /// fetched once.
    ///
    /// [`ChildAgent::verified_chain`]: super::ChildAgent::verified_chain
    pub fn verify_with(mut self, jwks: Jwks) -> Self {
        self.policy.jwks = Some(jwks);
        self
    }

    /// Require the parent token's verified `may_act` claim (RFC 8693 §4.4) to name the child:
    /// its actor, by the actor agent's client id or the verified `sub` or `client_id` of the
    /// actor token. Checked before the exchange (nothing is sent when it fails), and the
    /// issued token's current actor must then be that child. Needs an actor
    /// ([`actor_agent`](Self::actor_agent) or [`actor`](Self::actor)).
    ///
    /// # Security
    /// Without a JWKS from [`verify_with`](Self::verify_with), the keys of the authorization
    /// server the exchange goes to are fetched for this delegation.
    pub fn require_may_act(mut self, on: bool) -> Self {
        self.policy.require_may_act = on;
        self
    }

    /// Refuse an issued token whose verified `act` chain has more than `depth` actors (a
    /// child of an agent has 1, a grandchild 2 when each exchange names an actor). The token
    /// is revoked and the spawn or renewal fails with [`Error::Delegation`].
    pub fn max_chain_depth(mut self, depth: usize) -> Self {
        self.policy.max_chain_depth = Some(depth);
        self
    }
}

impl Policy {
    /// The policy of a new delegation from `parent`: a child's JWKS is inherited, and one is
    /// made for `client`'s server when a rule needs verified claims and none is given.
    pub(super) fn resolve(mut self, parent: &Parent, client: &OAuthClient) -> Policy {
        if self.jwks.is_none() {
            if let Parent::Child(c) = parent {
                self.jwks = c.inner.exchanger.policy.jwks.clone();
            }
        }
        if self.jwks.is_none() && (self.require_may_act || self.max_chain_depth.is_some()) {
            self.jwks = Some(Jwks::new(client.server().clone()));
        }
        self
    }

    /// Who the child is, for `may_act`: the actor agent's client id, or the verified `sub`
    /// and `client_id` of the actor token.
    async fn child_names(&self, jwks: &Jwks, actor: Option<&Actor>) -> Result<Vec<String>> {
        match actor {
            None => Err(Error::Delegation(
                "may_act is required but the delegation names no actor (actor_agent or actor)"
                    .into(),
            )),
            Some(Actor::Agent(a)) => Ok(a
                .client()
                .map(|c| vec![c.client_id().to_owned()])
                .unwrap_or_default()),
            Some(Actor::Token { token, .. }) => {
                let chain = verify_delegation_chain(
                    &AccessToken::new(token.expose_secret()),
                    jwks,
                    jwks.issuer(),
                )
                .await
                .map_err(|e| refused("the actor token", e))?;
                Ok(chain.sub.into_iter().chain(chain.client_id).collect())
            }
        }
    }

    /// Before the exchange: the parent's token must verify and its `may_act` name the child.
    /// Returns the child's names, for the check of the issued token.
    pub(super) async fn check_parent(
        &self,
        subject: &TokenSet,
        actor: Option<&Actor>,
    ) -> Result<Option<Vec<String>>> {
        let (Some(jwks), true) = (&self.jwks, self.require_may_act) else {
            return Ok(None);
        };
        let names = self.child_names(jwks, actor).await?;
        let parent = verify_delegation_chain(&subject.access_token, jwks, jwks.issuer())
            .await
            .map_err(|e| refused("the parent token", e))?;
        if parent.may_act.is_none() {
            return Err(Error::Delegation(
                "may_act is required but the parent token has none".into(),
            ));
        }
        if !names.iter().any(|n| parent.may_act_names(n)) {
            return Err(Error::Delegation(format!(
                "the parent token's may_act does not name the child `{}`",
                sanitize(names.first().map_or("", String::as_str), 100)
            )));
        }
        Ok(Some(names))
    }

    /// After the exchange: the issued token must verify, its chain be at most
    /// `max_chain_depth` deep, and its current actor be the child when `may_act` was
    /// required. `None` when nothing is verified.
    pub(super) async fn check_issued(
        &self,
        token: &TokenSet,
        child: Option<&[String]>,
    ) -> Result<Option<VerifiedChain>> {
        let Some(jwks) = &self.jwks else {
            return Ok(None);
        };
        let chain = verify_delegation_chain(&token.access_token, jwks, jwks.issuer())
            .await
            .map_err(|e| refused("the issued token", e))?;
        if let Some(max) = self.max_chain_depth {
            if chain.depth() > max {
                return Err(Error::Delegation(format!(
                    "the issued token's act chain has depth {}, more than max_chain_depth {max}",
                    chain.depth()
                )));
            }
        }
        if let Some(names) = child {
            let current = chain.actors.first().map(|a| a.name().to_owned());
            if !current.as_ref().is_some_and(|c| names.contains(c)) {
                return Err(Error::Delegation(format!(
                    "the issued token's current actor is `{}`, not the child",
                    sanitize(current.as_deref().unwrap_or("nobody"), 100)
                )));
            }
        }
        Ok(Some(chain))
    }
}

/// A verification failure of `what` as a delegation refusal; other errors (fetching the
/// JWKS) as they are.
fn refused(what: &str, e: Error) -> Error {
    match e {
        Error::Verification(v) => Error::Delegation(format!("{what} does not verify: {v}")),
        e => e,
    }
}

/// The event's view of a verified chain: the subject and the actors' names, outermost first.
pub(super) fn event_chain(chain: Option<&VerifiedChain>) -> (Option<String>, Option<Vec<String>>) {
    match chain {
        Some(c) => (
            c.sub.clone(),
            Some(c.actor_names().into_iter().map(str::to_owned).collect()),
        ),
        None => (None, None),
    }
}
