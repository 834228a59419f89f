//! The grant an agent uses when no user is asked: client credentials (the default), a JWT bearer
//! grant from a workload identity, or enterprise-managed authorization with ID-JAGs.

use std::sync::Arc;

use super::builder::AgentBuilder;
use crate::assertion::AssertionSource;
use crate::cache::Principal;
use crate::error::{Error, Result};
use crate::grant::{IdJagIssuer, OAuthClient, TokenParams};
use crate::token::TokenSet;

/// Which principal's ID-JAGs an issuer obtains: `None` for a principal without one.
type IssuerFor = Arc<dyn Fn(&Principal) -> Option<Arc<IdJagIssuer>> + Send + Sync>;

/// How an agent obtains tokens on its own.
#[derive(Clone, Default)]
pub(crate) enum MachineGrant {
    /// RFC 6749 §4.4.
    #[default]
    ClientCredentials,
    /// RFC 7523 §2.1 with the source's assertion.
    JwtBearer(AssertionSource),
    /// An ID-JAG from the enterprise identity provider, redeemed by the JWT bearer grant: the
    /// issuer of the principal the tokens are for.
    IdJag(IssuerFor),
}

impl std::fmt::Debug for MachineGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MachineGrant::ClientCredentials => f.write_str("ClientCredentials"),
            MachineGrant::JwtBearer(s) => f.debug_tuple("JwtBearer").field(s).finish(),
            MachineGrant::IdJag(_) => f.write_str("IdJag"),
        }
    }
}

impl MachineGrant {
    /// Should this grant be used at `client`'s server, rather than the user's authorization
    /// hook? ID-JAGs are used unless the server says it takes none
    /// ([`supports_id_jag`](crate::ServerMetadata::supports_id_jag)).
    pub(crate) async fn applies(&self, client: &OAuthClient) -> Result<bool> {
        Ok(match self {
            MachineGrant::ClientCredentials => false,
            MachineGrant::JwtBearer(_) => true,
            MachineGrant::IdJag(issuer_for) => {
                issuer_for(&Principal::agent()).is_some()
                    && client.server().metadata().await?.supports_id_jag() != Some(false)
            }
        })
    }

    /// A token for `principal` (not the agent) through its own ID-JAG issuer, when it has one
    /// and the server takes ID-JAGs; `None` otherwise (the principal must consent).
    pub(crate) async fn principal_token(
        &self,
        client: &OAuthClient,
        principal: &Principal,
        params: &TokenParams,
    ) -> Result<Option<TokenSet>> {
        let MachineGrant::IdJag(issuer_for) = self else {
            return Ok(None);
        };
        let Some(issuer) = issuer_for(principal) else {
            return Ok(None);
        };
        if client.server().metadata().await?.supports_id_jag() == Some(false) {
            return Ok(None);
        }
        issuer.access_token(client, params).await.map(Some)
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
            MachineGrant::IdJag(issuer_for) => {
                let issuer = issuer_for(&Principal::agent()).ok_or_else(|| {
                    Error::config("enterprise authorization has no ID-JAG issuer for the agent")
                })?;
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
        self.machine = MachineGrant::IdJag(Arc::new(move |p: &Principal| {
            p.is_agent().then(|| issuer.clone())
        }));
        self
    }

    /// Enterprise-managed authorization for the users an agent serves
    /// ([`Agent::for_principal`](crate::Agent::for_principal)): `issuer_for` gives each
    /// principal's own [`IdJagIssuer`] (built on that user's ID token), or `None` for a
    /// principal that must log in instead ([`Error::ConsentRequired`]). Every principal's
    /// ID-JAGs and tokens stay its own; the agent itself (`Principal::agent()`) uses what
    /// `issuer_for` gives for it, if anything, as with
    /// [`enterprise_authorization`](Self::enterprise_authorization).
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # use agent_oauth::grant::IdJagIssuer;
    /// # fn idp_issuer_for_user(id: &str) -> Option<Arc<IdJagIssuer>> { None }
    /// # async fn run() -> agent_oauth::Result<()> {
    /// let agent = agent_oauth::Agent::builder()
    ///     .issuer("https://auth.mcp.example")
    ///     .client_id("mcp-client")
    ///     .enterprise_authorization_for(|p| p.id().and_then(idp_issuer_for_user))
    ///     .build()
    ///     .await?;
    /// let alice = agent.for_principal("alice@acme.example");
    /// # Ok(()) }
    /// ```
    pub fn enterprise_authorization_for<F>(mut self, issuer_for: F) -> Self
    where
        F: Fn(&Principal) -> Option<Arc<IdJagIssuer>> + Send + Sync + 'static,
    {
        self.machine = MachineGrant::IdJag(Arc::new(issuer_for));
        self
    }
}
