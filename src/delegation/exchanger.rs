//! The exchanger: obtains and renews a child's token by RFC 8693 token exchange through the
//! parent, with exactly the original narrowing, bound to the child's own key.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use url::Url;

use crate::agent::Agent;
use crate::cache::TokenSource;
use crate::dpop::DpopKey;
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::{OAuthClient, TokenExchangeRequest, TokenParams};
use crate::token::{AccessToken, Scope, TokenSet, TokenType};

use super::builder::{capped_expiry, lifetime_cap, Parent, Subject};
use super::chain::{unverified_delegation_chain, VerifiedChain};
use super::policy::{event_chain, Actor, Policy};

/// A token issued to the child, kept until it expires so it can be revoked.
pub(super) struct Issued {
    pub(super) token: AccessToken,
    pub(super) expires_at: Option<SystemTime>,
}

/// Everything needed to (re-)exchange for the child: the narrowed parameters, fixed at spawn.
pub(super) struct Exchanger {
    pub(super) parent: Parent,
    pub(super) parent_label: String,
    pub(super) root: Agent,
    /// The root's client at the authorization server the exchange goes to.
    pub(super) client: OAuthClient,
    pub(super) subject: Subject,
    pub(super) scope: Scope,
    pub(super) resources: Vec<Url>,
    pub(super) audiences: Vec<Url>,
    pub(super) params: TokenParams,
    pub(super) lifetime: Option<Duration>,
    pub(super) actor: Option<Actor>,
    pub(super) key: Option<DpopKey>,
    pub(super) label: String,
    pub(super) issued: Mutex<Vec<Issued>>,
    pub(super) ended: AtomicBool,
    /// What is verified and enforced on the tokens.
    pub(super) policy: Policy,
    /// The verified chain of the latest token, when the policy verifies.
    pub(super) verified: Mutex<Option<VerifiedChain>>,
}

impl Exchanger {
    pub(super) fn issued(&self) -> std::sync::MutexGuard<'_, Vec<Issued>> {
        crate::sync::lock(&self.issued)
    }

    /// Exchange the parent's token (`subject`, or fetched now) for a child token.
    pub(super) async fn exchange(&self, subject: Option<TokenSet>) -> Result<TokenSet> {
        let subject = match subject {
            Some(s) => s,
            None => self.subject.fetch(&self.parent).await?,
        };
        let clock = self.root.transport().clock().clone();
        let now = clock.now();
        let remaining = subject.remaining(now);
        if remaining == Some(Duration::ZERO) {
            return Err(Error::Delegation(format!(
                "the parent `{}` holds no valid token",
                self.parent_label
            )));
        }
        let cap = lifetime_cap(self.lifetime, remaining);
        let mut params = self.params.clone();
        if let (Some(_), Some(c)) = (self.lifetime, cap) {
            params = params.param("expires_in", c.as_secs().max(1).to_string());
        }
        let child = self
            .policy
            .check_parent(&subject, self.actor.as_ref())
            .await?;
        let mut request = TokenExchangeRequest::new(subject.access_token.secret()).params(params);
        if let Some(actor) = &self.actor {
            let (token, token_type) = actor.token().await?;
            request = request.actor(token, token_type);
        }
        let mut token = self
            .client
            .token_exchange(&request, self.key.as_ref())
            .await?;

        // The server must not hand out more than was asked for.
        let mut refusal = None;
        if !token.scope.is_subset(&self.scope) {
            refusal = Some(format!(
                "the server granted scope `{}`, wider than the requested `{}`",
                token.scope, self.scope
            ));
        }
        if let Some(key) = &self.key {
            if token.token_type != TokenType::Dpop {
                refusal = Some("the server did not bind the child token to the child key".into());
            } else if let Some(jkt) =
                unverified_delegation_chain(&token.access_token).and_then(|c| c.jkt)
            {
                if jkt != key.thumbprint() {
                    refusal = Some("the child token is bound to another key".into());
                }
            }
        }
        let verified = match refusal {
            Some(why) => Err(Error::Delegation(why)),
            None => self.policy.check_issued(&token, child.as_deref()).await,
        };
        let verified = match verified {
            Ok(v) => v,
            Err(e) => {
                let _ = self
                    .client
                    .revoke(token.access_token.secret(), Some("access_token"))
                    .await;
                return Err(e);
            }
        };
        let (verified_sub, verified_actors) = event_chain(verified.as_ref());
        *crate::sync::lock(&self.verified) = verified;

        // Never outlive the requested lifetime or the parent's token.
        token.expires_at = capped_expiry(
            token.expires_at,
            token.issued_at,
            self.lifetime,
            subject.expires_at,
        );
        token.refresh_token = None;

        {
            let mut issued = self.issued();
            issued.retain(|i| i.expires_at.is_none_or(|e| e > now));
            issued.push(Issued {
                token: token.access_token.clone(),
                expires_at: token.expires_at,
            });
        }
        let mut targets: Vec<String> = self.resources.iter().map(Url::to_string).collect();
        targets.extend(self.audiences.iter().map(Url::to_string));
        EventHook::emit(
            self.root.events(),
            AgentEvent::TokenExchanged {
                parent_client_id: self.client.client_id().to_owned(),
                child: self.label.clone(),
                scope: token.scope.to_string(),
                resources: targets,
                lifetime_secs: token.lifetime().map(|d| d.as_secs()),
                parent_fingerprint: subject.access_token.fingerprint(),
                child_fingerprint: token.access_token.fingerprint(),
                child_jkt: self.key.as_ref().map(|k| k.thumbprint().to_owned()),
                verified_sub,
                verified_actors,
            },
        );
        Ok(token)
    }

    /// Tokens issued and not yet expired, removed from the list.
    pub(super) fn take_live(&self) -> Vec<AccessToken> {
        let now = self.root.transport().clock().now();
        self.issued()
            .drain(..)
            .filter(|i| i.expires_at.is_none_or(|e| e > now))
            .map(|i| i.token)
            .collect()
    }
}

/// Renews the child's token through its parent.
pub(super) struct ChildSource(pub(super) Arc<Exchanger>);

impl TokenSource for ChildSource {
    fn fetch(
        &self,
        _current: Option<TokenSet>,
    ) -> crate::cache::BoxFuture<'static, Result<TokenSet>> {
        let ex = self.0.clone();
        Box::pin(async move {
            if ex.ended.load(Ordering::SeqCst) {
                return Err(Error::Delegation(format!(
                    "the delegation to `{}` was revoked",
                    ex.label
                )));
            }
            ex.exchange(None).await.map_err(|e| match e {
                Error::Delegation(_) => e,
                e if e.is_retryable() => e,
                e => Error::Delegation(format!(
                    "cannot renew the token of `{}` through its parent `{}`: {e}",
                    ex.label, ex.parent_label
                )),
            })
        })
    }
}
