//! User authorization on demand: the hook an agent calls when a user grant has to be obtained
//! (first use, an expired access-token-only session, a refresh token the server ended, a
//! step-up to more scope), and the code and device flows it drives.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use url::Url;

use crate::cache::BoxFuture;
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::{DeviceAuthorization, OAuthClient, TokenParams};
use crate::token::{Scope, TokenSet};

/// Why the agent asks the user to authorize it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorizationReason {
    /// No grant yet at this authorization server.
    FirstUse,
    /// The grant had no refresh token and its access token expired.
    Expired,
    /// The server ended the refresh token (revoked, expired, reused).
    Reauthorization,
    /// The resource asked for more scope (403 `insufficient_scope`).
    StepUp,
}

impl AuthorizationReason {
    /// The reason as it appears in [`AgentEvent::AuthorizationRequired`].
    pub fn as_str(self) -> &'static str {
        match self {
            AuthorizationReason::FirstUse => "first_use",
            AuthorizationReason::Expired => "expired",
            AuthorizationReason::Reauthorization => "reauthorization",
            AuthorizationReason::StepUp => "step_up",
        }
    }
}

/// What the agent asks the user to authorize, handed to the hook given to
/// [`AgentBuilder::on_authorization`](crate::AgentBuilder::on_authorization).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AuthorizationPrompt {
    /// The URL to open in a browser: the authorization request (PKCE `S256`, `state`,
    /// `resource`, `scope`).
    pub url: Url,
    /// The redirect URI the server will send the browser back to.
    pub redirect_uri: String,
    /// The authorization server.
    pub issuer: String,
    /// The resource the token is for, if any.
    pub resource: Option<String>,
    /// The scope asked for (empty when none is asked).
    pub scope: Scope,
    /// Why the agent asks.
    pub reason: AuthorizationReason,
}

type CodeHook = dyn Fn(AuthorizationPrompt) -> BoxFuture<'static, Result<Url>> + Send + Sync;
type DeviceHook = dyn Fn(&DeviceAuthorization) + Send + Sync;

/// How an agent obtains a user grant when it needs one.
#[derive(Clone)]
pub(crate) enum Authorizer {
    /// Authorization code + PKCE: the hook opens the prompt's URL and returns the URL the
    /// server redirected to.
    Code {
        redirect_uri: String,
        hook: Arc<CodeHook>,
    },
    /// Device authorization (RFC 8628): the hook shows the code; the agent polls.
    Device(Arc<DeviceHook>),
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Authorizer::Code { redirect_uri, .. } => f
                .debug_struct("Code")
                .field("redirect_uri", redirect_uri)
                .finish_non_exhaustive(),
            Authorizer::Device(_) => f.write_str("Device"),
        }
    }
}

impl Authorizer {
    pub(crate) fn code<F, Fut>(redirect_uri: String, hook: F) -> Self
    where
        F: Fn(AuthorizationPrompt) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Url>> + Send + 'static,
    {
        Authorizer::Code {
            redirect_uri,
            hook: Arc::new(move |p| Box::pin(hook(p))),
        }
    }

    pub(crate) fn device(hook: impl Fn(&DeviceAuthorization) + Send + Sync + 'static) -> Self {
        Authorizer::Device(Arc::new(hook))
    }

    /// The redirect URI to register, for the code flow.
    pub(crate) fn redirect_uri(&self) -> Option<&str> {
        match self {
            Authorizer::Code { redirect_uri, .. } => Some(redirect_uri),
            Authorizer::Device(_) => None,
        }
    }

    /// Run the flow at `client` for tokens with `params`. For the code flow the server's
    /// metadata must advertise PKCE `S256` when `require_pkce` (MCP: clients MUST refuse to
    /// proceed otherwise).
    pub(crate) async fn authorize(
        &self,
        client: &OAuthClient,
        params: &TokenParams,
        reason: AuthorizationReason,
        require_pkce: bool,
        events: Option<&EventHook>,
    ) -> Result<TokenSet> {
        let issuer = client.server().issuer().to_owned();
        let resource = params.resources.first().cloned();
        let scope = params.scope.clone().unwrap_or_default();
        EventHook::emit(
            events,
            AgentEvent::AuthorizationRequired {
                issuer: issuer.clone(),
                resource: resource.clone(),
                scope: scope.to_string(),
                reason: reason.as_str(),
            },
        );
        tracing::info!(target: "agent_oauth", %issuer, reason = reason.as_str(),
            "user authorization required");
        match self {
            Authorizer::Code { redirect_uri, hook } => {
                let md = client.server().metadata().await?;
                if require_pkce && !md.supports_pkce_s256() {
                    return Err(Error::Discovery(format!(
                        "authorization server `{}` does not advertise PKCE S256 \
                         (code_challenge_methods_supported); refusing the code flow",
                        crate::error::sanitize(&issuer, 200)
                    )));
                }
                let pending = client.authorization_url(redirect_uri, params).await?;
                let prompt = AuthorizationPrompt {
                    url: pending.url.clone(),
                    redirect_uri: redirect_uri.clone(),
                    issuer,
                    resource,
                    scope,
                    reason,
                };
                let callback = hook(prompt).await?;
                client.exchange_code(&pending, &callback).await
            }
            Authorizer::Device(show) => client.device_flow(params, |d| show(d)).await,
        }
    }
}
