//! [`ChildAgent`] and [`ChildRequest`]: protected requests with the child's token, only to the
//! child's resources, revoked when the task ends or on drop.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use http::Method;
use url::Url;

use crate::agent::Agent;
use crate::cache::{BoxFuture, CachedToken, TokenCache, TokenHandle};
use crate::discovery::resource_matches;
use crate::dpop::{DpopKey, NonceCache, ProofNonce};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::OAuthClient;
use crate::session::{
    method_shortcuts, protected_call, request_builder_methods, within_deadline, Outcome, Rejection,
    RequestParts, Session,
};
use crate::token::{AccessToken, Scope, TokenSet};
use crate::transport::{BodyMode, HttpResponse, HttpTransport};

use super::builder::{DelegationBuilder, Parent};
use super::chain::{unverified_delegation_chain, UnverifiedChain, VerifiedChain};
use super::exchanger::Exchanger;

pub(super) struct ChildInner {
    pub(super) exchanger: Arc<Exchanger>,
    pub(super) handle: TokenHandle,
    pub(super) _cache: TokenCache,
    pub(super) revoke_on_drop: bool,
}

impl Drop for ChildInner {
    fn drop(&mut self) {
        let ex = &self.exchanger;
        if !self.revoke_on_drop || ex.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::debug!(target: "agent_oauth", child = %ex.label,
                "no tokio runtime: the child's tokens are not revoked on drop");
            return;
        };
        let tokens = ex.take_live();
        if tokens.is_empty() {
            return;
        }
        let root = ex.root.clone();
        let client = ex.client.clone();
        rt.spawn(async move {
            for t in tokens {
                revoke_one(&root, &client, &t).await.ok();
            }
        });
    }
}

async fn revoke_one(root: &Agent, client: &OAuthClient, token: &AccessToken) -> Result<()> {
    client.revoke(token.secret(), Some("access_token")).await?;
    EventHook::emit(
        root.events(),
        AgentEvent::TokenRevoked {
            fingerprint: token.fingerprint(),
        },
    );
    Ok(())
}

/// A sub-agent holding a narrowed token obtained from its parent by token exchange.
/// Cheap to clone; `Send + Sync`. Created by [`DelegationBuilder::spawn`].
#[derive(Clone)]
pub struct ChildAgent {
    pub(super) inner: Arc<ChildInner>,
}

impl fmt::Debug for ChildAgent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ex = &self.inner.exchanger;
        f.debug_struct("ChildAgent")
            .field("label", &ex.label)
            .field("parent", &ex.parent_label)
            .field("scope", &ex.scope.to_string())
            .field("resources", &self.resources())
            .field("jkt", &ex.key.as_ref().map(DpopKey::thumbprint))
            .finish_non_exhaustive()
    }
}

impl ChildAgent {
    /// The child's label (audit events, logs).
    pub fn label(&self) -> &str {
        &self.inner.exchanger.label
    }

    /// The narrowed scope the child was given (it never gets more).
    pub fn scope(&self) -> &Scope {
        &self.inner.exchanger.scope
    }

    /// The resources the child's tokens are for; they are only ever sent to URLs these cover.
    pub fn resources(&self) -> Vec<String> {
        self.inner
            .exchanger
            .resources
            .iter()
            .map(Url::to_string)
            .collect()
    }

    /// The child's own DPoP key, if its tokens are DPoP-bound.
    pub fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.exchanger.key.as_ref()
    }

    /// The child's current token, renewed through the parent when it is about to expire.
    ///
    /// # Errors
    /// [`Error::Delegation`] when it cannot be renewed (parent without a valid token, revoked
    /// delegation); retryable transport and server errors as they are.
    pub async fn token(&self) -> Result<TokenSet> {
        Ok(self.inner.handle.get().await?.token().clone())
    }

    /// Exchange again now (same narrowed parameters), replacing the current token.
    ///
    /// # Errors
    /// As [`token`](Self::token).
    pub async fn renew(&self) -> Result<TokenSet> {
        Ok(self.inner.handle.refresh().await?.token().clone())
    }

    /// When the child's latest token expires (at most the requested lifetime, never after the
    /// parent token it was exchanged from); `None` once the delegation is revoked.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner
            .exchanger
            .issued()
            .last()
            .and_then(|i| i.expires_at)
    }

    /// The claims of the child's current token, decoded without verification (see
    /// [`unverified_delegation_chain`]); `None` when the token is not a JWT or none is cached.
    pub fn unverified_chain(&self) -> Option<UnverifiedChain> {
        let t = self.inner.handle.peek()?;
        unverified_delegation_chain(&t.token().access_token)
    }

    /// The verified chain of the child's latest token, when the delegation verifies tokens
    /// ([`DelegationBuilder::verify_with`], [`require_may_act`](DelegationBuilder::require_may_act),
    /// [`max_chain_depth`](DelegationBuilder::max_chain_depth)); `None` otherwise.
    pub fn verified_chain(&self) -> Option<VerifiedChain> {
        crate::sync::lock(&self.inner.exchanger.verified).clone()
    }

    /// Delegate further: a grandchild narrowed relative to this child's token.
    pub fn delegate(&self) -> DelegationBuilder {
        DelegationBuilder::new(Parent::Child(self.clone()))
    }

    /// End the delegation (call it when the child's task is done): revoke every live token of
    /// the child (RFC 7009, by the parent client) and refuse further renewals. Grandchildren can no longer renew either.
    ///
    /// # Errors
    /// The first revocation error (the others are still attempted).
    pub async fn revoke(&self) -> Result<()> {
        let ex = &self.inner.exchanger;
        ex.ended.store(true, Ordering::SeqCst);
        self.inner.handle.invalidate();
        let mut first = None;
        for t in ex.take_live() {
            if let Err(e) = revoke_one(&ex.root, &ex.client, &t).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    pub(super) fn covers(&self, url: &Url) -> bool {
        let ex = &self.inner.exchanger;
        ex.resources
            .iter()
            .chain(ex.audiences.iter())
            .any(|r| resource_matches(r, url))
    }

    /// Start a protected request with the child's token.
    pub fn request(&self, method: Method, url: impl AsRef<str>) -> ChildRequest {
        ChildRequest {
            child: self.clone(),
            parts: RequestParts::new(method, url.as_ref()),
        }
    }
}

/// A protected request of a [`ChildAgent`]. Finish with [`send`](Self::send).
#[must_use]
pub struct ChildRequest {
    pub(super) child: ChildAgent,
    pub(super) parts: RequestParts,
}

impl fmt::Debug for ChildRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildRequest")
            .field("child", &self.child.label())
            .field("method", &self.parts.method)
            .field("url", &self.parts.url.as_ref().map(Url::as_str).ok())
            .finish_non_exhaustive()
    }
}

method_shortcuts!(ChildAgent, ChildRequest);
request_builder_methods!(ChildRequest);

/// A child's protected calls: its own key and token, one renewal through the parent on
/// `invalid_token`, never more scope.
impl Session for ChildAgent {
    /// Whether the call already renewed the token.
    type Call = bool;

    fn transport(&self) -> &HttpTransport {
        self.inner.exchanger.root.transport()
    }

    fn nonces(&self) -> &NonceCache {
        self.inner.exchanger.root.nonces()
    }

    fn events(&self) -> Option<&EventHook> {
        self.inner.exchanger.root.events()
    }

    fn dpop_key(&self) -> Option<&DpopKey> {
        self.inner.exchanger.key.as_ref()
    }

    fn cached_token(&self, _renewed: &mut bool) -> Option<Arc<CachedToken>> {
        self.inner.handle.peek().map(|t| t.share())
    }

    fn token<'a>(&'a self, _renewed: &'a mut bool) -> BoxFuture<'a, Result<Arc<CachedToken>>> {
        Box::pin(async move { Ok(self.inner.handle.get().await?.share()) })
    }

    fn retry_after(&self, renewed: &mut bool, rejection: Rejection, _error: &Error) -> bool {
        // A child never asks for more than its narrowing.
        if rejection == Rejection::Unauthorized && !*renewed {
            *renewed = true;
            self.inner.handle.invalidate();
            return true;
        }
        false
    }
}

impl ChildRequest {
    /// Send one attempt with the child's token and key, each transport attempt's proof
    /// signed with the nonce current at that moment.
    async fn send_with(
        &self,
        url: &Url,
        token: &CachedToken,
        nonce: &ProofNonce<'_>,
    ) -> Result<HttpResponse> {
        let child = &self.child;
        child
            .transport()
            .execute_outgoing(
                self.parts.policy(),
                || {
                    let mut req = self.parts.build(url);
                    child.authorize(&mut req.headers, &req.method, url, token, Some(nonce))?;
                    Ok(req)
                },
                child.nonces(),
                BodyMode::Read,
            )
            .await
    }

    /// Send with the child's token and key: resource nonce retry, one renewal through the
    /// parent on `invalid_token`. Never asks for more scope.
    ///
    /// # Errors
    /// [`Error::Config`] when the URL is not under the child's resources; token errors
    /// ([`Error::Delegation`] when the token cannot be renewed); transport errors;
    /// [`Error::OAuth`] for a final 401 or a 403 `insufficient_scope`.
    pub async fn send(self) -> Result<HttpResponse> {
        let transport = self.child.inner.exchanger.root.transport().clone();
        within_deadline(&transport, self.send_inner()).await
    }

    async fn send_inner(self) -> Result<HttpResponse> {
        let url = self.parts.url()?;
        let ex = self.child.inner.exchanger.clone();
        ex.root.transport().check(&url)?;
        if !self.child.covers(&url) {
            return Err(Error::config(format!(
                "{} is not under the child's resources; tokens are only sent to their resource",
                url.origin().ascii_serialization()
            )));
        }
        let this = &self;
        let slot = crate::dpop::NonceSlot::new(&url, crate::dpop::NonceRole::Resource);
        let outcome = protected_call(
            &self.child,
            false,
            &url,
            &slot,
            || true,
            None,
            |token, nonce| {
                let url = &url;
                async move { this.send_with(url, &token, &nonce).await }
            },
        )
        .await?;
        match outcome {
            Outcome::Done(resp) => Ok(resp),
            Outcome::Rejected { error, .. } => Err(error),
        }
    }
}
