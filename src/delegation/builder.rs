//! [`DelegationBuilder`]: what a child may do, checked as a subset of the parent before anything
//! is sent, and the spawn that exchanges the parent's token for the child's.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::Value;
use url::Url;

use crate::agent::{parse_resource, Agent, Authority};
use crate::cache::{CacheConfig, TokenCache, TokenKey, TokenSource};
use crate::dpop::DpopKey;
use crate::error::{Error, Result};
use crate::grant::{OAuthClient, TokenParams};
use crate::secret::SecretString;
use crate::token::{AccessToken, Scope, TokenSet};

use super::child::ChildInner;
use super::exchanger::{ChildSource, Exchanger};
use super::policy::{Actor, Policy};
use super::*;

impl Agent {
    /// Start a delegation to a child agent (RFC 8693 token exchange of this agent's token).
    pub fn delegate(&self) -> DelegationBuilder {
        DelegationBuilder::new(Parent::Agent(self.clone()))
    }
}

/// Who delegates: an agent, or a child agent (for grandchildren).
#[derive(Clone)]
pub(super) enum Parent {
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

    fn label(&self, client: &OAuthClient) -> String {
        match self {
            Parent::Agent(_) => client.client_id().to_owned(),
            Parent::Child(c) => c.label().to_owned(),
        }
    }
}

/// Configures a delegation; finish with [`spawn`](Self::spawn). Setters never fail; `spawn`
/// reports the first problem.
#[must_use]
pub struct DelegationBuilder {
    pub(super) parent: Parent,
    pub(super) scope: Option<Scope>,
    pub(super) resources: Vec<String>,
    pub(super) audiences: Vec<String>,
    pub(super) lifetime: Option<Duration>,
    pub(super) actor: Option<Actor>,
    pub(super) label: Option<String>,
    pub(super) authorization_details: Option<Value>,
    pub(super) extra: Vec<(String, String)>,
    pub(super) revoke_on_drop: bool,
    pub(super) dpop_key: Option<DpopKey>,
    pub(super) policy: Policy,
}

impl fmt::Debug for DelegationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DelegationBuilder")
            .field(
                "parent",
                &match &self.parent {
                    Parent::Agent(a) => a.client().map(|c| c.client_id().to_owned()),
                    Parent::Child(c) => Some(c.label().to_owned()),
                },
            )
            .field("scope", &self.scope.as_ref().map(ToString::to_string))
            .field("resources", &self.resources)
            .field("audiences", &self.audiences)
            .field("lifetime", &self.lifetime)
            .field("label", &self.label)
            .field("revoke_on_drop", &self.revoke_on_drop)
            .field("verified", &self.policy.jwks.is_some())
            .finish_non_exhaustive()
    }
}

impl DelegationBuilder {
    pub(super) fn new(parent: Parent) -> Self {
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
            policy: Policy::default(),
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
    /// [`ChildAgent`] is dropped without [`revoke`](ChildAgent::revoke) (default off). Needs a
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
        let request = Request {
            scope: self.scope.as_ref(),
            resources: &self.resources,
            audiences: &self.audiences,
            lifetime: self.lifetime,
            params: &self.extra,
        };
        let targets = targets(
            &match &parent {
                Parent::Agent(a) => ParentView::Agent {
                    resources: a.resources(),
                    covering: Box::new(|url| a.resource_for(url).map(|i| i.resource.clone())),
                },
                Parent::Child(c) => ParentView::Child {
                    resources: c.resources(),
                    covers: Box::new(|url| c.covers(url)),
                },
            },
            &request,
        )?;
        let parent_info = match (&parent, &targets.parent_resource) {
            (Parent::Agent(agent), Some(url)) => agent.resource_for(url),
            _ => None,
        };
        let subject = match (&parent, &parent_info) {
            (Parent::Agent(agent), Some(info)) => Subject::Agent(
                info.authority.clone(),
                agent.params_for(Some(&info.resource), info.scope.as_ref()),
            ),
            (Parent::Agent(_), None) => return Err(Error::config("delegation parent mismatch")),
            (Parent::Child(_), _) => Subject::Child,
        };

        let parent_token = subject.fetch(&parent).await?;
        let root = parent.root().clone();
        let now = root.transport().clock().now();
        let Narrowing {
            scope,
            resources,
            audiences,
        } = narrow(targets, &parent_token, request.scope, now)?;

        let key = match self.dpop_key {
            Some(k) => Some(k),
            None => root.dpop_key().map(|_| DpopKey::generate()),
        };
        let label = match (&self.label, &self.actor) {
            (Some(l), _) => l.clone(),
            (None, Some(Actor::Agent(a))) => a
                .client()
                .map_or_else(random_label, |c| c.client_id().to_owned()),
            (None, Some(Actor::Token { token, .. })) => {
                unverified_delegation_chain(&AccessToken::new(token.expose_secret()))
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

        // The exchange goes to the authorization server whose token the subject is.
        let client = match (&subject, &parent) {
            (Subject::Agent(authority, _), _) => authority.client.clone(),
            (Subject::Child, Parent::Child(c)) => c.inner.exchanger.client.clone(),
            (Subject::Child, Parent::Agent(_)) => {
                return Err(Error::config("delegation parent mismatch"))
            }
        };
        let policy = self.policy.resolve(&parent, &client);
        let exchanger = Arc::new(Exchanger {
            parent_label: parent.label(&client),
            policy,
            verified: Mutex::new(None),
            client,
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
        let cache_key = TokenKey::new(
            exchanger.client.server().issuer(),
            exchanger.client.client_id(),
        )
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

/// What a child asks for, as set on the [`DelegationBuilder`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Request<'a> {
    pub(super) scope: Option<&'a Scope>,
    pub(super) resources: &'a [String],
    pub(super) audiences: &'a [String],
    pub(super) lifetime: Option<Duration>,
    pub(super) params: &'a [(String, String)],
}

/// Finds the agent resource covering a URL.
pub(super) type Covering<'a> = Box<dyn Fn(&Url) -> Option<Url> + 'a>;

/// The parent's side of a narrowing, known before its token is fetched.
pub(super) enum ParentView<'a> {
    /// An agent: the child's token is exchanged from the agent's token for the one resource
    /// that covers every target of the child.
    Agent {
        /// The agent's resources.
        resources: Vec<String>,
        /// The agent resource covering a URL (the most specific one).
        covering: Covering<'a>,
    },
    /// A child (for a grandchild): targets must be covered by what the child may call.
    Child {
        /// The child's resources.
        resources: Vec<String>,
        /// Does the child cover a URL (its resources and audiences)?
        covers: Box<dyn Fn(&Url) -> bool + 'a>,
    },
}

/// Where a child's tokens may go, checked against the parent.
#[derive(Debug)]
pub(super) struct Targets {
    pub(super) resources: Vec<Url>,
    pub(super) audiences: Vec<Url>,
    /// For an agent parent, its resource whose token is exchanged.
    pub(super) parent_resource: Option<Url>,
}

/// What a child gets: never more than its parent holds.
#[derive(Debug, PartialEq)]
pub(super) struct Narrowing {
    pub(super) scope: Scope,
    pub(super) resources: Vec<Url>,
    pub(super) audiences: Vec<Url>,
}

/// The first half of the narrowing, before anything is sent: the request's own rules (no
/// reserved parameter, a lifetime of at least a second) and its targets, every resource and
/// audience covered by the parent (for an agent, all by one of its resources).
///
/// # Errors
/// [`Error::Delegation`] for a request wider than the parent or malformed;
/// [`Error::Config`] for a resource that is not an absolute URL without fragment.
pub(super) fn targets(parent: &ParentView<'_>, requested: &Request<'_>) -> Result<Targets> {
    if let Some((k, _)) = requested
        .params
        .iter()
        .find(|(k, _)| RESERVED_PARAMS.contains(&k.as_str()))
    {
        return Err(Error::Delegation(format!(
            "parameter `{k}` cannot be set with param(); use the builder's own setter"
        )));
    }
    if requested
        .lifetime
        .is_some_and(|l| l < Duration::from_secs(1))
    {
        return Err(Error::Delegation(
            "a delegated lifetime must be at least one second".into(),
        ));
    }

    // Resources: each covered by a parent resource.
    let names = if !requested.resources.is_empty() {
        requested.resources.to_vec()
    } else {
        match parent {
            ParentView::Agent { resources, .. } if resources.len() != 1 => {
                return Err(Error::Delegation(format!(
                    "the parent agent has {} resources; name the child's resource",
                    resources.len()
                )));
            }
            ParentView::Agent { resources, .. } | ParentView::Child { resources, .. } => {
                resources.clone()
            }
        }
    };
    let mut resources = Vec::new();
    for r in &names {
        resources.push(parse_resource(r)?);
    }
    let mut audiences = Vec::new();
    for a in requested.audiences {
        let url = Url::parse(a).map_err(|_| {
            Error::Delegation(format!(
                "audience `{}` is not an absolute URI covered by the parent's resources",
                crate::error::sanitize(a, 200)
            ))
        })?;
        audiences.push(url);
    }
    let parent_resource = match parent {
        ParentView::Agent { covering, .. } => {
            let mut chosen: Option<Url> = None;
            for url in resources.iter().chain(audiences.iter()) {
                let info = covering(url).ok_or_else(|| {
                    Error::Delegation(format!(
                        "`{url}` is not covered by any of the parent's resources"
                    ))
                })?;
                match &chosen {
                    Some(c) if *c != info => {
                        return Err(Error::Delegation(format!(
                            "`{url}` lies under parent resource `{}`, not `{}`: one child \
                             token is exchanged from one parent token",
                            info, c
                        )))
                    }
                    Some(_) => {}
                    None => chosen = Some(info),
                }
            }
            Some(chosen.ok_or_else(|| {
                Error::Delegation("a delegation needs at least one resource".into())
            })?)
        }
        ParentView::Child { covers, .. } => {
            if let Some(url) = resources
                .iter()
                .chain(audiences.iter())
                .find(|u| !covers(u))
            {
                return Err(Error::Delegation(format!(
                    "`{url}` is not covered by the parent child's resources"
                )));
            }
            None
        }
    };
    Ok(Targets {
        resources,
        audiences,
        parent_resource,
    })
}

/// The second half of the narrowing, once the parent's token is known: the scope is a subset
/// of what that token grants (by default all of it), and the token is still valid at `now`.
///
/// # Errors
/// [`Error::Delegation`] for a wider scope or an expired parent token.
pub(super) fn narrow(
    targets: Targets,
    parent_token: &TokenSet,
    requested_scope: Option<&Scope>,
    now: SystemTime,
) -> Result<Narrowing> {
    let scope = match requested_scope {
        Some(s) if !s.is_subset(&parent_token.scope) => {
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
        Some(s) => s.clone(),
        None => parent_token.scope.clone(),
    };
    if parent_token.is_expired(now) {
        return Err(Error::Delegation("the parent's token has expired".into()));
    }
    Ok(Narrowing {
        scope,
        resources: targets.resources,
        audiences: targets.audiences,
    })
}

/// The lifetime to ask for: the requested one, capped by what the parent's token has left.
pub(super) fn lifetime_cap(
    requested: Option<Duration>,
    parent_remaining: Option<Duration>,
) -> Option<Duration> {
    match (requested, parent_remaining) {
        (Some(l), Some(r)) => Some(l.min(r)),
        (l, r) => l.or(r),
    }
}

/// When a child token expires: the earliest of the server's expiry, `issued_at` plus the
/// requested lifetime (a lifetime too long to add, like `Duration::MAX`, caps nothing) and the
/// parent token's expiry.
pub(super) fn capped_expiry(
    expires_at: Option<SystemTime>,
    issued_at: SystemTime,
    lifetime: Option<Duration>,
    parent_expires_at: Option<SystemTime>,
) -> Option<SystemTime> {
    [
        expires_at,
        lifetime.and_then(|l| issued_at.checked_add(l)),
        parent_expires_at,
    ]
    .into_iter()
    .flatten()
    .min()
}

fn random_label() -> String {
    let id = crate::secret::random_id();
    format!("child-{}", id.get(..8).unwrap_or(&id))
}

/// Which token of the parent is the subject token.
pub(super) enum Subject {
    /// The agent's token for these parameters (its resource covering the child's).
    Agent(Arc<Authority>, TokenParams),
    /// The child's current token.
    Child,
}

impl Subject {
    pub(super) async fn fetch(&self, parent: &Parent) -> Result<TokenSet> {
        match (self, parent) {
            (Subject::Agent(authority, params), Parent::Agent(agent)) => Ok(agent
                .handle(authority, params.clone())
                .get()
                .await?
                .token()
                .clone()),
            (_, Parent::Child(child)) => child.token().await,
            (Subject::Child, Parent::Agent(_)) => Err(Error::config("delegation parent mismatch")),
        }
    }
}

#[cfg(test)]
mod tests;
