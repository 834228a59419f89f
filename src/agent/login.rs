//! User-delegated grants: device and authorization-code logins, adopting a grant, logout.

use std::sync::Arc;

use url::Url;

use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::{DeviceAuthorization, PendingAuthorization, TokenParams};
use crate::session::within_deadline;
use crate::token::TokenSet;

use super::resources::parse_resource;
use super::{Agent, Authority};

impl Agent {
    /// Log in with the device flow (RFC 8628): `show` receives the code to display; the grant's
    /// refresh token is stored and later tokens are refreshed from it.
    ///
    /// # Errors
    /// Device flow errors; [`Error::Store`].
    pub async fn login_device(&self, show: impl FnOnce(&DeviceAuthorization)) -> Result<TokenSet> {
        let home = self.home()?;
        let params = self.login_params();
        let tokens = home.client.device_flow(&params, show).await?;
        self.adopt_grant(tokens).await
    }

    /// The configured authorization server, which logins, adoption and logout are for.
    fn home(&self) -> Result<&Arc<Authority>> {
        self.inner.home.as_ref().ok_or_else(|| {
            Error::config(
                "logins need an agent with a configured issuer; an agent without one authorizes \
                 through its authorization hook (AgentBuilder::on_authorization)",
            )
        })
    }

    /// Start an authorization code flow (PKCE, `state`, `dpop_jkt`); open the returned URL, then
    /// pass the callback to [`complete_authorization`](Self::complete_authorization).
    ///
    /// # Errors
    /// Discovery errors.
    pub async fn authorization_url(&self, redirect_uri: &str) -> Result<PendingAuthorization> {
        let home = self.home()?;
        let params = self.login_params();
        within_deadline(
            &self.inner.transport,
            home.client.authorization_url(redirect_uri, &params),
        )
        .await
    }

    /// Parameters of a user login: the agent's scope and every known resource, so that tokens
    /// for each resource can later be refreshed from the one grant (RFC 8707 §2.2).
    fn login_params(&self) -> TokenParams {
        let mut params = self.params_for(None, None);
        for r in self.resources() {
            params = params.resource(r);
        }
        params
    }

    /// Finish an authorization code flow and keep its grant.
    ///
    /// # Errors
    /// Callback checks, token endpoint and store errors.
    pub async fn complete_authorization(
        &self,
        pending: &PendingAuthorization,
        callback: &Url,
    ) -> Result<TokenSet> {
        let home = self.home()?;
        let tokens = within_deadline(
            &self.inner.transport,
            home.client.exchange_code(pending, callback),
        )
        .await?;
        // Not under the deadline: the grant is kept whatever time it takes to store it.
        self.adopt_grant(tokens).await
    }

    /// Keep a grant obtained elsewhere: its refresh token is stored and tokens for the agent's
    /// resources are refreshed from it from now on. A grant without a refresh token is kept as
    /// an access-token-only session: its access token is used until it expires (then, with an
    /// [authorization hook](crate::AgentBuilder::on_authorization), the user is asked again).
    ///
    /// # Errors
    /// [`Error::Config`] without a configured issuer; [`Error::Store`].
    pub async fn adopt_grant(&self, tokens: TokenSet) -> Result<TokenSet> {
        let home = self.home()?.clone();
        let params = self.login_params();
        let user = home.user_grant(self.principal()).await?;
        if !tokens.scope.is_empty() {
            user.set_granted(tokens.scope.clone());
        }
        if tokens.refresh_token.is_some() {
            user.grant.seed(&tokens, &params).await?;
        } else {
            // No refresh token: the access token is the session. It goes to every resource the
            // login was for, under the scope it was asked with.
            let mut access = tokens.clone();
            access.refresh_token = None;
            let mut keys = vec![self.params_for(None, None)];
            for r in self.resources() {
                keys.push(self.params_for(Some(&parse_resource(&r)?), None));
            }
            for p in keys {
                self.handle(&home, p).insert(access.clone());
            }
        }
        EventHook::emit(
            self.inner.events.as_ref(),
            AgentEvent::TokenAcquired {
                client_id: home.client.client_id().to_owned(),
                resource: self.resources().first().cloned(),
                scope: tokens.scope.to_string(),
                fingerprint: tokens.access_token.fingerprint(),
            },
        );
        Ok(tokens)
    }

    /// End the user grant: revoke its refresh token (RFC 7009), remove it from the store, and
    /// drop every cached token. Later calls fall back to client credentials (or fail for a
    /// public client) until the next login.
    ///
    /// On a principal's handle ([`for_principal`](Self::for_principal)), only that principal's
    /// grants and cached tokens are ended; its later calls need a new login
    /// ([`Error::ConsentRequired`]).
    ///
    /// # Errors
    /// Revocation and store errors. The local state is cleared even when revocation fails.
    pub async fn logout(&self) -> Result<()> {
        let mut ended = Ok(());
        let learnt: Vec<_> = self.inner.learnt.lock().await.clone();
        let principal = self.principal();
        for a in self.inner.home.iter().chain(learnt.iter()) {
            let r = match a.user_grant(principal).await {
                Ok(user) => user.grant.logout().await,
                Err(e) => Err(e),
            };
            if ended.is_ok() {
                ended = r;
            }
        }
        // When the store could not be cleared, the grant (and its cached tokens) stay.
        if !matches!(ended, Err(Error::Store(_))) {
            self.inner.cache.retain(|k| k.principal() != principal);
            self.forget_handles();
        }
        ended
    }
}
