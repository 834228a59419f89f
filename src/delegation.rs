//! Delegation to sub-agents: narrowed, sender-constrained tokens by token exchange (RFC 8693).
//!
//! [`Agent::delegate`] starts a [`DelegationBuilder`]. [`spawn`](DelegationBuilder::spawn)
//! checks locally that the request only narrows what the parent holds — scope a subset of the
//! parent token's granted scope, every resource and audience covered by one of the parent's
//! resources, lifetime at most what the parent token has left — and refuses anything wider with
//! [`Error::Delegation`] before a request is sent. It then exchanges the parent's access token
//! (the subject token) for a child token. When the parent uses DPoP, the child gets its own
//! fresh [`DpopKey`] and the exchange's proof is signed with it, so the issued token is bound to
//! the child (`cnf.jkt` is the child key's thumbprint) and useless with the parent's key.
//!
//! The resulting [`ChildAgent`] calls its resources like an [`Agent`] does (token,
//! `Authorization` + `DPoP`, resource nonce retry, one renewal on `invalid_token`), and can
//! delegate again ([`ChildAgent::delegate`]): a grandchild is narrowed relative to the child,
//! and with actor tokens the issued tokens carry a nested `act` chain, readable with
//! [`delegation_chain`].
//!
//! A child never has a refresh token. Each of its credentials lives at most
//! min(requested lifetime, parent token's expiry); near its end the child exchanges again
//! through its parent, with exactly the parameters of its first exchange, so it can never gain
//! more than that first narrowing. When the parent no longer holds a valid token (its grant was
//! revoked, say) or the delegation was [revoked](ChildAgent::revoke), renewal fails with
//! [`Error::Delegation`].
//!
//! Every exchange emits [`AgentEvent::TokenExchanged`] (fingerprints and the child key's
//! thumbprint, never tokens) to `tracing` and the parent's event hook.
//!
//! ```no_run
//! # async fn run(agent: agent_oauth::Agent) -> agent_oauth::Result<()> {
//! use std::time::Duration;
//! let child = agent
//!     .delegate()
//!     .scope("invoices:read")
//!     .resource("https://api.example.com/invoices")
//!     .lifetime(Duration::from_secs(300))
//!     .actor_label("summarizer")
//!     .param("task_id", "42")
//!     .spawn()
//!     .await?;
//! let resp = child.get("https://api.example.com/invoices/42").send().await?;
//! println!("{}", resp.status());
//! child.finish().await?; // revoke (RFC 7009)
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use http::Method;
use serde_json::{Map, Value};
use url::Url;

use crate::agent::{
    attempt, authorize_headers_with, method_shortcuts, parse_resource, request_builder_methods,
    within_deadline, Agent, Outcome, RequestParts,
};
use crate::cache::{CacheConfig, TokenCache, TokenHandle, TokenKey, TokenSource};
use crate::discovery::resource_matches;
use crate::dpop::DpopKey;
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::{TokenExchangeRequest, TokenParams, ACCESS_TOKEN_TYPE};
use crate::secret::SecretString;
use crate::token::{AccessToken, Scope, TokenSet, TokenType};
use crate::transport::HttpResponse;

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

/// Deepest `act` nesting [`delegation_chain`] follows.
const MAX_ACT_DEPTH: usize = 32;

/// Largest token [`delegation_chain`] decodes.
const MAX_TOKEN_LEN: usize = 64 * 1024;

impl Agent {
    /// Start a delegation to a child agent (RFC 8693 token exchange of this agent's token).
    pub fn delegate(&self) -> DelegationBuilder {
        DelegationBuilder::new(Parent::Agent(self.clone()))
    }
}

/// Who delegates: an agent, or a child agent (for grandchildren).
#[derive(Clone)]
enum Parent {
    Agent(Agent),
    Child(ChildAgent),
}

impl Parent {
    fn root(&self) -> &Agent {
        match self {
            Parent::Agent(a) => a,
            Parent::Child(c) => &c.inner.exchanger.root,
        }
    }

    fn label(&self) -> String {
        match self {
            Parent::Agent(a) => a.client().client_id().to_owned(),
            Parent::Child(c) => c.label().to_owned(),
        }
    }
}

/// Where the exchange's actor token comes from.
#[derive(Clone)]
enum Actor {
    Token {
        token: SecretString,
        token_type: String,
    },
    Agent(Agent),
}

impl Actor {
    async fn token(&self) -> Result<(SecretString, String)> {
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

/// Configures a delegation; finish with [`spawn`](Self::spawn). Setters never fail; `spawn`
/// reports the first problem.
#[must_use]
pub struct DelegationBuilder {
    parent: Parent,
    scope: Option<Scope>,
    resources: Vec<String>,
    audiences: Vec<String>,
    lifetime: Option<Duration>,
    actor: Option<Actor>,
    label: Option<String>,
    authorization_details: Option<Value>,
    extra: Vec<(String, String)>,
    revoke_on_drop: bool,
    dpop_key: Option<DpopKey>,
}

impl fmt::Debug for DelegationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelegationBuilder")
            .field("parent", &self.parent.label())
            .field("scope", &self.scope.as_ref().map(ToString::to_string))
            .field("resources", &self.resources)
            .field("audiences", &self.audiences)
            .field("lifetime", &self.lifetime)
            .field("label", &self.label)
            .field("revoke_on_drop", &self.revoke_on_drop)
            .finish_non_exhaustive()
    }
}

impl DelegationBuilder {
    fn new(parent: Parent) -> Self {
        DelegationBuilder {
            parent,
            scope: None,
            resources: Vec::new(),
            audiences: Vec::new(),
            lifetime: None,
            actor: None,
            label: None,
            authorization_details: None,
            extra: Vec::new(),
            revoke_on_drop: false,
            dpop_key: None,
        }
    }

    /// The child's scope: a subset of the parent token's granted scope (default: all of it).
    pub fn scope(mut self, scope: impl Into<Scope>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// A resource (RFC 8707) for the child, covered by one of the parent's resources. May be
    /// called several times; they must all lie under the same parent resource, whose token is
    /// exchanged. Default: the parent's only resource (an agent with several must name one), or
    /// all of a child's resources.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// An audience (RFC 8693), an absolute URI covered by the parent resource.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Upper bound on the lifetime of each of the child's credentials (also capped by the
    /// parent token's expiry). Sent as the non-standard `expires_in` request parameter, which
    /// servers may ignore; the cap is enforced locally either way.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = Some(lifetime);
        self
    }

    /// Send this actor token (RFC 8693 §2.1): the issued token names the actor in `act`.
    /// It is sent again on every renewal, so it should outlive the delegation; see
    /// [`actor_agent`](Self::actor_agent) for one that renews itself.
    pub fn actor(mut self, token: impl Into<SecretString>, token_type: impl Into<String>) -> Self {
        self.actor = Some(Actor::Token {
            token: token.into(),
            token_type: token_type.into(),
        });
        self
    }

    /// Use `agent`'s access token (its default scope, no resource) as the actor token of every
    /// exchange: the child acts as that agent's client. Its client id is the default label.
    pub fn actor_agent(mut self, agent: &Agent) -> Self {
        self.actor = Some(Actor::Agent(agent.clone()));
        self
    }

    /// A label for the child in audit events and logs (default: the actor's client or subject,
    /// else a random `child-…` name). Not sent to the server.
    pub fn actor_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Rich authorization details (RFC 9396), sent as given. Whether they narrow the parent's
    /// authorization is for the server to check.
    pub fn authorization_details(mut self, details: Value) -> Self {
        self.authorization_details = Some(details);
        self
    }

    /// An extra request parameter (e.g. a task id). Parameters of the exchange itself and the
    /// narrowed ones (`scope`, `resource`, `audience`, `expires_in`, ...) are refused.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Revoke the child's tokens (best effort, RFC 7009) when the last clone of the
    /// [`ChildAgent`] is dropped without [`finish`](ChildAgent::finish) (default off). Needs a
    /// running tokio runtime at that point; without one nothing is revoked.
    pub fn revoke_on_drop(mut self, on: bool) -> Self {
        self.revoke_on_drop = on;
        self
    }

    /// Bind the child's tokens to this key instead of a freshly generated one. Without it the
    /// child gets a new key when the parent uses DPoP, and is a bearer holder otherwise.
    pub fn dpop_key(mut self, key: DpopKey) -> Self {
        self.dpop_key = Some(key);
        self
    }

    /// Check the narrowing, exchange the parent's token and return the child.
    ///
    /// # Errors
    /// [`Error::Delegation`] for a request wider than the parent's token or resources (nothing
    /// is sent), or a reserved [`param`](Self::param); [`Error::Config`] for malformed URLs;
    /// the parent's token errors; the exchange's errors (e.g. [`Error::OAuth`]
    /// `invalid_scope` / `invalid_target` from the server).
    pub async fn spawn(self) -> Result<ChildAgent> {
        let parent = self.parent.clone();
        if let Some((k, _)) = self
            .extra
            .iter()
            .find(|(k, _)| RESERVED_PARAMS.contains(&k.as_str()))
        {
            return Err(Error::Delegation(format!(
                "parameter `{k}` cannot be set with param(); use the builder's own setter"
            )));
        }
        if self.lifetime.is_some_and(|l| l < Duration::from_secs(1)) {
            return Err(Error::Delegation(
                "a delegated lifetime must be at least one second".into(),
            ));
        }

        // Resources: each covered by a parent resource.
        let names = if self.resources.is_empty() {
            match &parent {
                Parent::Agent(a) => {
                    let known = a.resources();
                    if known.len() != 1 {
                        return Err(Error::Delegation(format!(
                            "the parent agent has {} resources; name the child's resource",
                            known.len()
                        )));
                    }
                    known
                }
                Parent::Child(c) => c.resources(),
            }
        } else {
            self.resources.clone()
        };
        let mut resources = Vec::new();
        for r in &names {
            resources.push(parse_resource(r)?);
        }
        let mut audiences = Vec::new();
        for a in &self.audiences {
            let url = Url::parse(a).map_err(|_| {
                Error::Delegation(format!(
                    "audience `{}` is not an absolute URI covered by the parent's resources",
                    crate::error::sanitize(a, 200)
                ))
            })?;
            audiences.push(url);
        }
        let subject = match &parent {
            Parent::Agent(agent) => {
                let mut chosen: Option<crate::agent::ResourceInfo> = None;
                for url in resources.iter().chain(audiences.iter()) {
                    let info = agent.resource_for(url).ok_or_else(|| {
                        Error::Delegation(format!(
                            "`{url}` is not covered by any of the parent's resources"
                        ))
                    })?;
                    match &chosen {
                        Some(c) if c.resource != info.resource => {
                            return Err(Error::Delegation(format!(
                                "`{url}` lies under parent resource `{}`, not `{}`: one child \
                                 token is exchanged from one parent token",
                                info.resource, c.resource
                            )))
                        }
                        Some(_) => {}
                        None => chosen = Some(info),
                    }
                }
                let info = chosen.ok_or_else(|| {
                    Error::Delegation("a delegation needs at least one resource".into())
                })?;
                Subject::Agent(agent.params_for(Some(&info.resource), info.scope.as_ref()))
            }
            Parent::Child(child) => {
                for url in resources.iter().chain(audiences.iter()) {
                    if !child.covers(url) {
                        return Err(Error::Delegation(format!(
                            "`{url}` is not covered by the parent child's resources"
                        )));
                    }
                }
                Subject::Child
            }
        };

        // Scope: a subset of what the parent's token actually grants.
        let parent_token = subject.fetch(&parent).await?;
        let scope = match self.scope {
            Some(s) => {
                if !s.is_subset(&parent_token.scope) {
                    let extra: Vec<&str> = s
                        .iter()
                        .filter(|v| !parent_token.scope.contains(v))
                        .collect();
                    return Err(Error::Delegation(format!(
                        "requested scope `{s}` widens the parent's scope `{}` (not granted: {})",
                        parent_token.scope,
                        extra.join(" ")
                    )));
                }
                s
            }
            None => parent_token.scope.clone(),
        };
        let root = parent.root().clone();
        let now = root.transport().clock().now();
        if parent_token.is_expired(now) {
            return Err(Error::Delegation("the parent's token has expired".into()));
        }

        let key = match self.dpop_key {
            Some(k) => Some(k),
            None => root.dpop_key().map(|_| DpopKey::generate()),
        };
        let label = match (&self.label, &self.actor) {
            (Some(l), _) => l.clone(),
            (None, Some(Actor::Agent(a))) => a.client().client_id().to_owned(),
            (None, Some(Actor::Token { token, .. })) => {
                delegation_chain(&AccessToken::new(token.expose_secret()))
                    .and_then(|c| c.sub)
                    .unwrap_or_else(random_label)
            }
            (None, None) => random_label(),
        };
        let mut params = TokenParams::new();
        if !scope.is_empty() {
            params = params.scope(scope.clone());
        }
        for r in &resources {
            params = params.resource(r.as_str());
        }
        for a in &audiences {
            params = params.audience(a.as_str());
        }
        if let Some(d) = self.authorization_details {
            params = params.authorization_details(d);
        }
        for (k, v) in self.extra {
            params = params.param(k, v);
        }

        let exchanger = Arc::new(Exchanger {
            parent_label: parent.label(),
            parent,
            root,
            subject,
            scope,
            resources,
            audiences,
            params,
            lifetime: self.lifetime,
            actor: self.actor,
            key,
            label,
            issued: Mutex::new(Vec::new()),
            ended: AtomicBool::new(false),
        });
        let token = exchanger.exchange(Some(parent_token)).await?;
        let cache = TokenCache::new(CacheConfig::default());
        let cache_key = TokenKey::new(exchanger.root.issuer(), exchanger.root.client().client_id())
            .with_subject(format!("delegation:{}", crate::secret::random_id()));
        let source = exchanger.clone();
        let handle = cache.handle(&cache_key, move || {
            Arc::new(ChildSource(source)) as Arc<dyn TokenSource>
        });
        handle.insert(token);
        Ok(ChildAgent {
            inner: Arc::new(ChildInner {
                exchanger,
                handle,
                _cache: cache,
                revoke_on_drop: self.revoke_on_drop,
            }),
        })
    }
}

fn random_label() -> String {
    let id = crate::secret::random_id();
    format!("child-{}", id.get(..8).unwrap_or(&id))
}

/// Which token of the parent is the subject token.
enum Subject {
    /// The agent's token for these parameters (its resource covering the child's).
    Agent(TokenParams),
    /// The child's current token.
    Child,
}

impl Subject {
    async fn fetch(&self, parent: &Parent) -> Result<TokenSet> {
        match (self, parent) {
            (Subject::Agent(params), Parent::Agent(agent)) => {
                Ok(agent.handle(params.clone()).get().await?.token().clone())
            }
            (_, Parent::Child(child)) => child.token().await,
            (Subject::Child, Parent::Agent(_)) => Err(Error::config("delegation parent mismatch")),
        }
    }
}

/// A token issued to the child, kept until it expires so it can be revoked.
struct Issued {
    token: AccessToken,
    expires_at: Option<SystemTime>,
}

/// Everything needed to (re-)exchange for the child: the narrowed parameters, fixed at spawn.
struct Exchanger {
    parent: Parent,
    parent_label: String,
    root: Agent,
    subject: Subject,
    scope: Scope,
    resources: Vec<Url>,
    audiences: Vec<Url>,
    params: TokenParams,
    lifetime: Option<Duration>,
    actor: Option<Actor>,
    key: Option<DpopKey>,
    label: String,
    issued: Mutex<Vec<Issued>>,
    ended: AtomicBool,
}

impl Exchanger {
    fn issued(&self) -> std::sync::MutexGuard<'_, Vec<Issued>> {
        match self.issued.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Exchange the parent's token (`subject`, or fetched now) for a child token.
    async fn exchange(&self, subject: Option<TokenSet>) -> Result<TokenSet> {
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
        let cap = match (self.lifetime, remaining) {
            (Some(l), Some(r)) => Some(l.min(r)),
            (l, r) => l.or(r),
        };
        let mut params = self.params.clone();
        if let (Some(_), Some(c)) = (self.lifetime, cap) {
            params = params.param("expires_in", c.as_secs().max(1).to_string());
        }
        let mut request = TokenExchangeRequest::new(subject.access_token.secret()).params(params);
        if let Some(actor) = &self.actor {
            let (token, token_type) = actor.token().await?;
            request = request.actor(token, token_type);
        }
        let mut token = self
            .root
            .client()
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
            } else if let Some(jkt) = delegation_chain(&token.access_token).and_then(|c| c.jkt) {
                if jkt != key.thumbprint() {
                    refusal = Some("the child token is bound to another key".into());
                }
            }
        }
        if let Some(why) = refusal {
            let _ = self
                .root
                .client()
                .revoke(token.access_token.secret(), Some("access_token"))
                .await;
            return Err(Error::Delegation(why));
        }

        // Never outlive the requested lifetime or the parent's token.
        token.expires_at = [
            token.expires_at,
            // A lifetime too long to add (`Duration::MAX`) caps nothing.
            self.lifetime.and_then(|l| token.issued_at.checked_add(l)),
            subject.expires_at,
        ]
        .into_iter()
        .flatten()
        .min();
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
                parent_client_id: self.root.client().client_id().to_owned(),
                child: self.label.clone(),
                scope: token.scope.to_string(),
                resources: targets,
                lifetime_secs: token.lifetime().map(|d| d.as_secs()),
                parent_fingerprint: subject.access_token.fingerprint(),
                child_fingerprint: token.access_token.fingerprint(),
                child_jkt: self.key.as_ref().map(|k| k.thumbprint().to_owned()),
            },
        );
        Ok(token)
    }

    /// Tokens issued and not yet expired, removed from the list.
    fn take_live(&self) -> Vec<AccessToken> {
        let now = self.root.transport().clock().now();
        self.issued()
            .drain(..)
            .filter(|i| i.expires_at.is_none_or(|e| e > now))
            .map(|i| i.token)
            .collect()
    }
}

/// Renews the child's token through its parent.
struct ChildSource(Arc<Exchanger>);

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

struct ChildInner {
    exchanger: Arc<Exchanger>,
    handle: TokenHandle,
    _cache: TokenCache,
    revoke_on_drop: bool,
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
        rt.spawn(async move {
            for t in tokens {
                revoke_one(&root, &t).await.ok();
            }
        });
    }
}

async fn revoke_one(root: &Agent, token: &AccessToken) -> Result<()> {
    root.client()
        .revoke(token.secret(), Some("access_token"))
        .await?;
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
    inner: Arc<ChildInner>,
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
    /// [`delegation_chain`]); `None` when the token is not a JWT or none is cached.
    pub fn chain(&self) -> Option<DelegationChain> {
        let t = self.inner.handle.peek()?;
        delegation_chain(&t.token().access_token)
    }

    /// Delegate further: a grandchild narrowed relative to this child's token.
    pub fn delegate(&self) -> DelegationBuilder {
        DelegationBuilder::new(Parent::Child(self.clone()))
    }

    /// End the delegation: revoke every live token of the child (RFC 7009, by the parent
    /// client) and refuse further renewals. Grandchildren can no longer renew either.
    ///
    /// # Errors
    /// The first revocation error (the others are still attempted).
    pub async fn revoke(&self) -> Result<()> {
        let ex = &self.inner.exchanger;
        ex.ended.store(true, Ordering::SeqCst);
        self.inner.handle.invalidate();
        let mut first = None;
        for t in ex.take_live() {
            if let Err(e) = revoke_one(&ex.root, &t).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The task is done: [`revoke`](Self::revoke) and drop the child.
    ///
    /// # Errors
    /// As [`revoke`](Self::revoke).
    pub async fn finish(self) -> Result<()> {
        self.revoke().await
    }

    fn covers(&self, url: &Url) -> bool {
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
    child: ChildAgent,
    parts: RequestParts,
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

impl ChildRequest {
    async fn send_with(
        &self,
        url: &Url,
        token: &TokenSet,
        nonce: Option<&str>,
    ) -> Result<HttpResponse> {
        let ex = &self.child.inner.exchanger;
        let transport = ex.root.transport();
        transport
            .execute_observed(
                self.parts.policy(),
                || {
                    let mut req = self.parts.build(url)?;
                    let method = req.method().clone();
                    authorize_headers_with(
                        transport,
                        ex.key.as_ref(),
                        req.headers_mut(),
                        &method,
                        url,
                        token,
                        nonce,
                    )?;
                    Ok(req)
                },
                |u, h| {
                    ex.root.nonces().update_from_headers(u, h);
                },
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
        let mut renewed = false;
        loop {
            let token = self.child.token().await?;
            let (this, url, token) = (&self, &url, &token);
            let outcome = attempt(
                ex.root.nonces(),
                ex.root.events(),
                url,
                token,
                |nonce| async move { this.send_with(url, token, nonce.as_deref()).await },
            )
            .await?;
            match outcome {
                Outcome::Done(resp) => return Ok(resp),
                Outcome::Unauthorized(_) if !renewed => {
                    renewed = true;
                    self.child.inner.handle.invalidate();
                }
                // A child never asks for more than its narrowing.
                Outcome::Unauthorized(err)
                | Outcome::InsufficientScope(err)
                | Outcome::Refused(err) => return Err(err),
            }
        }
    }
}

/// The claims of a JWT access token, decoded WITHOUT verifying its signature, issuer, audience
/// or expiry. Fine for display, audit and tests; never for an authorization decision.
#[derive(Debug, Clone, PartialEq)]
pub struct UnverifiedClaims(Map<String, Value>);

impl UnverifiedClaims {
    /// A claim.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    /// All claims.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

/// Who a token is for and who acts for them (RFC 8693 §4.1 `act`, §4.4 `may_act`), read from
/// [`UnverifiedClaims`]: nothing here is verified.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DelegationChain {
    /// `sub`: the party the token is about (the original subject).
    pub sub: Option<String>,
    /// The `act` chain, outermost first: `actors[0]` is the current actor, each next one the
    /// actor before it. An actor without `sub` is named by its `client_id`, else `""`.
    pub actors: Vec<String>,
    /// `may_act`, as sent.
    pub may_act: Option<Value>,
    /// `scope`.
    pub scope: Scope,
    /// `aud` (a single string becomes one element).
    pub aud: Vec<String>,
    /// `exp` (seconds since the epoch).
    pub exp: Option<i64>,
    /// `cnf.jkt`: the thumbprint of the DPoP key the token is bound to.
    pub jkt: Option<String>,
    /// `client_id` (RFC 9068).
    pub client_id: Option<String>,
    /// Every claim.
    pub claims: UnverifiedClaims,
}

/// Decode a JWT access token's payload WITHOUT verification and read its delegation chain.
/// `None` when the token is not a JWT with a JSON object payload.
pub fn delegation_chain(token: &AccessToken) -> Option<DelegationChain> {
    let t = token.secret();
    if t.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = t.split('.');
    let (_, payload, _, None) = (parts.next()?, parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let Value::Object(claims) = serde_json::from_slice(&bytes).ok()? else {
        return None;
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    let mut actors = Vec::new();
    let mut act = claims.get("act");
    while let Some(Value::Object(a)) = act {
        if actors.len() >= MAX_ACT_DEPTH {
            break;
        }
        actors.push(
            text(a.get("sub"))
                .or_else(|| text(a.get("client_id")))
                .unwrap_or_default(),
        );
        act = a.get("act");
    }
    let aud = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    Some(DelegationChain {
        sub: text(claims.get("sub")),
        actors,
        may_act: claims.get("may_act").cloned(),
        scope: claims
            .get("scope")
            .and_then(Value::as_str)
            .map(Scope::parse)
            .unwrap_or_default(),
        aud,
        exp: claims.get("exp").and_then(Value::as_i64),
        jkt: text(claims.get("cnf").and_then(|c| c.get("jkt"))),
        client_id: text(claims.get("client_id")),
        claims: UnverifiedClaims(claims),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &Value) -> AccessToken {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        AccessToken::new(format!(
            "{}.{}.sig",
            e.encode(br#"{"alg":"none"}"#),
            e.encode(claims.to_string())
        ))
    }

    #[test]
    fn delegation_chain_reads_nested_act() {
        let t = jwt(&serde_json::json!({
            "sub": "user", "scope": "b a", "aud": "https://api", "exp": 10,
            "cnf": {"jkt": "abc"}, "client_id": "parent",
            "act": {"sub": "grandchild", "act": {"client_id": "child"}},
            "may_act": {"sub": "x"},
        }));
        let c = delegation_chain(&t).expect("chain");
        assert_eq!(c.sub.as_deref(), Some("user"));
        assert_eq!(c.actors, ["grandchild", "child"]);
        assert_eq!(c.scope, Scope::parse("a b"));
        assert_eq!(c.aud, ["https://api"]);
        assert_eq!(c.exp, Some(10));
        assert_eq!(c.jkt.as_deref(), Some("abc"));
        assert_eq!(c.client_id.as_deref(), Some("parent"));
        assert_eq!(c.may_act, Some(serde_json::json!({"sub": "x"})));
        assert_eq!(c.claims.get("sub"), Some(&Value::from("user")));
    }

    #[test]
    fn delegation_chain_rejects_non_jwt() {
        assert!(delegation_chain(&AccessToken::new("opaque")).is_none());
        assert!(delegation_chain(&AccessToken::new("a.b.c.d")).is_none());
        assert!(delegation_chain(&AccessToken::new("a.!!.c")).is_none());
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        assert!(delegation_chain(&AccessToken::new(format!("a.{}.c", e.encode("[1]")))).is_none());
    }
}
