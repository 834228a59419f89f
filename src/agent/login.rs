//! User-delegated grants: device and authorization-code logins, adopting a grant, logout.

use url::Url;

use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::{DeviceAuthorization, PendingAuthorization, TokenParams};
use crate::session::{within_deadline, RefreshingSource};
use crate::token::TokenSet;

use super::Agent;

impl Agent {
    /// Log in with the device flow (RFC 8628): `show` receives the code to display; the grant's
    /// refresh token is stored and later tokens are refreshed from it.
    ///
    /// # Errors
    /// Device flow errors; [`Error::Store`].
    pub async fn login_device(&self, show: impl FnOnce(&DeviceAuthorization)) -> Result<TokenSet> {
        let params = self.login_params();
        let tokens = self.inner.client.device_flow(&params, show).await?;
        self.adopt_grant(tokens).await
    }

    /// Start an authorization code flow (PKCE, `state`, `dpop_jkt`); open the returned URL, then
    /// pass the callback to [`complete_authorization`](Self::complete_authorization).
    ///
    /// # Errors
    /// Discovery errors.
    pub async fn authorization_url(&self, redirect_uri: &str) -> Result<PendingAuthorization> {
        let params = self.login_params();
        within_deadline(
            &self.inner.transport,
            self.inner.client.authorization_url(redirect_uri, &params),
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
        let tokens = within_deadline(
            &self.inner.transport,
            self.inner.client.exchange_code(pending, callback),
        )
        .await?;
        // Not under the deadline: the grant is kept whatever time it takes to store it.
        self.adopt_grant(tokens).await
    }

    /// Keep a grant obtained elsewhere (its refresh token is stored; tokens for resources are
    /// refreshed from it from now on).
    ///
    /// # Errors
    /// [`Error::Config`] without a refresh token; [`Error::Store`].
    pub async fn adopt_grant(&self, tokens: TokenSet) -> Result<TokenSet> {
        if tokens.refresh_token.is_none() {
            return Err(Error::config("the grant has no refresh token to keep"));
        }
        self.inner.grant.seed(&tokens, &self.login_params()).await?;
        EventHook::emit(
            self.inner.events.as_ref(),
            AgentEvent::TokenAcquired {
                client_id: self.inner.client.client_id().to_owned(),
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
    /// # Errors
    /// Revocation and store errors. The local state is cleared even when revocation fails.
    pub async fn logout(&self) -> Result<()> {
        let ended = self.inner.grant.logout().await;
        // When the store could not be cleared, the grant (and its cached tokens) stay.
        if !matches!(ended, Err(Error::Store(_))) {
            self.inner.cache.retain(|_| false);
        }
        ended
    }

    /// The agent's grant as the source of tokens with `params`.
    pub(super) fn grant_source(&self, params: TokenParams) -> RefreshingSource {
        RefreshingSource::of(&self.inner.grant, params)
    }
}
