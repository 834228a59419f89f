//! The grant an agent uses when no user is asked: client credentials (the default), a JWT bearer
//! grant from a workload identity, or enterprise-managed authorization with ID-JAGs.

use std::sync::Arc;

use super::builder::AgentBuilder;
use crate::assertion::AssertionSource;
use crate::error::{Error, Result};
use crate::grant::{IdJagIssuer, OAuthClient, TokenParams};
use crate::token::TokenSet;

/// How an agent obtains tokens on its own.
#[derive(Clone, Debug, Default)]
pub(crate) enum MachineGrant {
    /// RFC 6749 §4.4.
    #[default]
    ClientCredentials,
    /// RFC 7523 §2.1 with the source's assertion.
    JwtBearer(AssertionSource),
    /// An ID-JAG from the enterprise identity provider, redeemed by the JWT bearer grant.
    IdJag(Arc<IdJagIssuer>),
}

impl MachineGrant {
    /// Should this grant be used at `client`'s server, rather than the user's authorization
    /// hook? ID-JAGs are used unless the server says it takes none
    /// ([`supports_id_jag`](crate::ServerMetadata::supports_id_jag)).
    pub(crate) async fn applies(&self, client: &OAuthClient) -> Result<bool> {
        Ok(match self {
            MachineGrant::ClientCredentials => false,
            MachineGrant::JwtBearer(_) => true,
            MachineGrant::IdJag(_) => {
                client.server().metadata().await?.supports_id_jag() != Some(false)
            }
        })
    }

    /// A token from `client`'s server with `params`.
    pub(crate) async fn fetch(
        &self,
        client: &OAuthClient,
        params: &TokenParams,
    ) -> Result<TokenSet> {
        match self {
            MachineGrant::ClientCredentials => client.client_credentials(params).await,
            MachineGrant::JwtBearer(source) => client.jwt_bearer_from(source, params).await,
            MachineGrant::IdJag(issuer) => {
                if client.server().metadata().await?.supports_id_jag() == Some(false) {
                    return Err(Error::config(format!(
                        "the authorization server {} does not accept ID-JAGs \
                         (authorization_grant_profiles_supported)",
                        client.server().issuer()
                    )));
                }
                issuer.access_token(client, params).await
            }
        }
    }
}

impl AgentBuilder {
    /// Obtain tokens with the JWT bearer grant (RFC 7523 §2.1), the assertion read from
    /// `source` before each token request: a workload identity such as a Kubernetes projected
    /// service-account token or a SPIFFE JWT-SVID ([`AssertionSource::file`]). Replaces the
    /// client credentials grant; `scope` and `resource` are sent as for any token.
    ///
    /// Workload identity federation often registers no client: combine with
    /// [`client_auth(ClientAuth::omitted())`](crate::ClientAuth::omitted), and no
    /// [`client_id`](Self::client_id) is needed.
    ///
    /// ```no_run
    /// # async fn run() -> agent_oauth::Result<()> {
    /// use agent_oauth::{assertion::AssertionSource, Agent, ClientAuth};
    /// let agent = Agent::builder()
    ///     .issuer("https://as.example.com")
    ///     .client_auth(ClientAuth::omitted())
    ///     .jwt_bearer(AssertionSource::file("/var/run/secrets/tokens/agent-token"))
    ///     .resource("https://api.example.com/")
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn jwt_bearer(mut self, source: AssertionSource) -> Self {
        self.machine = MachineGrant::JwtBearer(source);
        self
    }

    /// Enterprise-managed authorization: tokens for each resource come from an ID-JAG that
    /// `issuer` obtains at the enterprise identity provider for the resource's authorization
    /// server, redeemed there by the JWT bearer grant with the agent's client credentials.
    /// Used at every authorization server that does not say it takes no ID-JAGs; a server that
    /// does say so gets the user [authorization hook](Self::on_authorization) when one is set.
    pub fn enterprise_authorization(mut self, issuer: Arc<IdJagIssuer>) -> Self {
        self.machine = MachineGrant::IdJag(issuer);
        self
    }
}
