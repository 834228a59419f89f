//! Enterprise-managed authorization: Identity Assertion JWT Authorization Grants
//! (draft-ietf-oauth-identity-assertion-authz-grant; the MCP extension "Enterprise-Managed
//! Authorization").
//!
//! Two legs. At the enterprise identity provider, the user's identity assertion (an ID token)
//! is exchanged (RFC 8693) for an ID-JAG naming the target authorization server (`audience`)
//! and resource; at that authorization server, the ID-JAG is the assertion of a JWT bearer
//! grant (RFC 7523) for an access token.
//!
//! Identity providers cap how many ID-JAGs they issue per user and app, so an [`IdJagIssuer`]
//! keeps each ID-JAG per (subject, audience, resource, scope) and hands it out again until shortly
//! before it expires. A cached ID-JAG the authorization server refuses (`invalid_grant`: it may
//! accept each `jti` once) is dropped, and one new ID-JAG is asked for.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::client::OAuthClient;
use super::request::TokenParams;
use super::token_exchange::{TokenExchangeRequest, ID_TOKEN_TYPE};
use crate::assertion::AssertionSource;
use crate::error::{Error, OAuthErrorCode, Result};
use crate::secret::SecretString;
use crate::token::{RefreshToken, Scope, TokenSet};

/// Token type identifier of an ID-JAG (`requested_token_type`, `issued_token_type`).
pub const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// The authorization grant profile of ID-JAGs (`authorization_grant_profiles_supported`).
pub const ID_JAG_GRANT_PROFILE: &str = "urn:ietf:params:oauth:grant-profile:id-jag";

/// The most ID-JAGs kept by one issuer; the oldest half is dropped beyond it.
const MAX_CACHED: usize = 1024;

/// An Identity Assertion JWT Authorization Grant, as issued by the identity provider.
#[derive(Clone)]
pub struct IdJag {
    assertion: SecretString,
    expires_at: Option<SystemTime>,
    scope: Scope,
}

impl fmt::Debug for IdJag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdJag")
            .field("fingerprint", &self.assertion.fingerprint())
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

impl IdJag {
    /// The ID-JAG (a JWT): the `assertion` of the JWT bearer grant.
    pub fn assertion(&self) -> &SecretString {
        &self.assertion
    }

    /// When it expires (`expires_in` of the exchange, else its `exp`).
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The scope the identity provider granted (`scope` of the exchange), empty when not said.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct JagKey {
    subject: String,
    audience: String,
    resource: String,
    scope: String,
}

/// Obtains ID-JAGs for one user at an enterprise identity provider and redeems them at
/// authorization servers; cheap to share (`Arc`) between tasks.
pub struct IdJagIssuer {
    idp: OAuthClient,
    subject: AssertionSource,
    subject_token_type: String,
    renew_before: Duration,
    cache: tokio::sync::Mutex<HashMap<JagKey, IdJag>>,
    issued: AtomicU64,
}

impl fmt::Debug for IdJagIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdJagIssuer")
            .field("idp", &self.idp.server().issuer())
            .field("subject", &self.subject)
            .field("subject_token_type", &self.subject_token_type)
            .finish_non_exhaustive()
    }
}

impl IdJagIssuer {
    /// Exchange the ID tokens of `id_token` at the identity provider `idp` (the client the MCP
    /// client signs users in with, with its authentication there).
    ///
    /// The source can be [fixed](AssertionSource::fixed) (the ID token of a login), or a
    /// closure that gets a fresh ID token, e.g. by refreshing at the identity provider
    /// ([`OAuthClient::refresh`] returns one in [`TokenSet::id_token`]).
    pub fn new(idp: OAuthClient, id_token: AssertionSource) -> Self {
        IdJagIssuer {
            idp,
            subject: id_token,
            subject_token_type: ID_TOKEN_TYPE.to_owned(),
            renew_before: Duration::from_secs(30),
            cache: tokio::sync::Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
        }
    }

    /// Subject ID tokens from refreshing `refresh_token` at the identity provider (OpenID
    /// Connect Core §12.2: a refresh of an `openid` grant returns a new ID token), done only when
    /// the ID token obtained last is about to expire. A rotated refresh token replaces the old
    /// one in memory; nothing is persisted, so a process that must survive restarts keeps its
    /// identity provider grant with an [`Agent`](crate::Agent) login and its store instead.
    pub fn from_refresh_token(idp: OAuthClient, refresh_token: RefreshToken) -> Self {
        let state = Arc::new(tokio::sync::Mutex::new(refresh_token));
        let client = idp.clone();
        let source = AssertionSource::from_fn(move || {
            let (client, state) = (client.clone(), state.clone());
            async move {
                let mut current = state.lock().await;
                let t = client.refresh(&current, &TokenParams::new()).await?;
                if let Some(rotated) = t.refresh_token {
                    *current = rotated;
                }
                t.id_token.ok_or_else(|| {
                    Error::invalid("the identity provider's refresh returned no ID token")
                })
            }
        });
        Self::new(idp, source)
    }

    /// The subject token's type (default `urn:ietf:params:oauth:token-type:id_token`; a SAML
    /// assertion is `urn:ietf:params:oauth:token-type:saml2`).
    #[must_use]
    pub fn subject_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.subject_token_type = token_type.into();
        self
    }

    /// Ask for a new ID-JAG when less than this remains of the cached one (default 30 s).
    #[must_use]
    pub fn renew_before(mut self, margin: Duration) -> Self {
        self.renew_before = margin;
        self
    }

    /// How many ID-JAGs this issuer has obtained from the identity provider.
    pub fn issued(&self) -> u64 {
        self.issued.load(Ordering::Relaxed)
    }

    /// An ID-JAG for the authorization server `audience` (its issuer identifier) and `resource`
    /// (its RFC 9728 identifier), with `scope`: the cached one while it is fresh, else a new one.
    ///
    /// # Errors
    /// [`Error::Assertion`] when the subject token cannot be read;
    /// [`Error::OAuth`](crate::Error::OAuth) for the identity provider's refusal;
    /// [`Error::InvalidResponse`] when it answers with another token type.
    pub async fn id_jag(
        &self,
        audience: &str,
        resource: &str,
        scope: Option<&Scope>,
    ) -> Result<IdJag> {
        self.obtain(audience, resource, scope)
            .await
            .map(|(jag, _)| jag)
    }

    /// An ID-JAG and whether it came from the cache.
    async fn obtain(
        &self,
        audience: &str,
        resource: &str,
        scope: Option<&Scope>,
    ) -> Result<(IdJag, bool)> {
        let subject = self.subject.assertion().await?;
        let key = JagKey {
            subject: subject_identity(&subject),
            audience: audience.to_owned(),
            resource: resource.to_owned(),
            scope: scope.map(Scope::to_string).unwrap_or_default(),
        };
        // Held across the exchange: concurrent callers for one user share one ID-JAG.
        let mut cache = self.cache.lock().await;
        let now = SystemTime::now();
        if let Some(jag) = cache.get(&key) {
            let fresh = jag
                .expires_at
                .and_then(|exp| exp.duration_since(now).ok())
                .is_some_and(|left| left > self.renew_before);
            if fresh {
                return Ok((jag.clone(), true));
            }
        }
        let mut params = TokenParams::new().audience(audience).resource(resource);
        if let Some(s) = scope.filter(|s| !s.is_empty()) {
            params = params.scope(s.clone());
        }
        let request = TokenExchangeRequest::new(subject)
            .subject_token_type(self.subject_token_type.clone())
            .requested_token_type(ID_JAG_TOKEN_TYPE)
            .params(params);
        let issued = self.idp.token_exchange(&request, None).await?;
        if issued.issued_token_type.as_deref() != Some(ID_JAG_TOKEN_TYPE) {
            return Err(Error::invalid(format!(
                "the identity provider issued `{}`, not an ID-JAG",
                crate::error::sanitize(issued.issued_token_type.as_deref().unwrap_or(""), 80)
            )));
        }
        self.issued.fetch_add(1, Ordering::Relaxed);
        let exp_claim = crate::jwt::unverified_claims(issued.access_token.secret())
            .ok()
            .and_then(|c| c.get("exp").and_then(serde_json::Value::as_u64))
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s.min(1 << 40)));
        let jag = IdJag {
            assertion: SecretString::new(issued.access_token.secret().to_owned()),
            expires_at: issued.expires_at.or(exp_claim),
            scope: issued.scope,
        };
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, j| j.expires_at.is_some_and(|e| e > now));
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(key, jag.clone());
        Ok((jag, false))
    }

    /// Forget the cached ID-JAG for these parameters (after the authorization server refused it).
    async fn forget(&self, audience: &str, resource: &str, scope: Option<&Scope>) {
        let scope = scope.map(Scope::to_string).unwrap_or_default();
        self.cache
            .lock()
            .await
            .retain(|k, _| !(k.audience == audience && k.resource == resource && k.scope == scope));
    }

    /// Both legs: an ID-JAG for `client`'s authorization server and the first resource of
    /// `params`, redeemed there with the JWT bearer grant (with `params`: scope, resource).
    /// A cached ID-JAG refused with `invalid_grant` is replaced by a new one, once.
    ///
    /// # Errors
    /// [`Error::Config`] when `params` names no resource; as [`id_jag`](Self::id_jag) and
    /// [`OAuthClient::jwt_bearer`].
    pub async fn access_token(
        &self,
        client: &OAuthClient,
        params: &TokenParams,
    ) -> Result<TokenSet> {
        let resource = params
            .resources
            .first()
            .ok_or_else(|| Error::config("an ID-JAG is asked for a resource: name one"))?;
        let audience = client.server().issuer();
        let scope = params.scope.as_ref();
        let (jag, cached) = self.obtain(audience, resource, scope).await?;
        match client.jwt_bearer(jag.assertion(), params).await {
            Err(e)
                if cached
                    && e.oauth_error()
                        .is_some_and(|o| o.error == OAuthErrorCode::InvalidGrant) =>
            {
                tracing::debug!(target: "agent_oauth", audience,
                    "the authorization server refused the cached ID-JAG; asking for a new one");
                self.forget(audience, resource, scope).await;
                let jag = self.id_jag(audience, resource, scope).await?;
                client.jwt_bearer(jag.assertion(), params).await
            }
            other => other,
        }
    }
}

/// Who a subject token is about, for the cache key: `iss` and `sub` of a JWT (an ID token
/// re-issued for the same user keeps its ID-JAGs), else the token's fingerprint.
fn subject_identity(subject: &SecretString) -> String {
    let claims = crate::jwt::unverified_claims(subject.expose_secret()).ok();
    let text = |name: &str| {
        claims
            .as_ref()
            .and_then(|c| c.get(name))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    match (text("iss"), text("sub")) {
        (Some(iss), Some(sub)) => format!("{iss}\u{0}{sub}"),
        _ => subject.fingerprint(),
    }
}
