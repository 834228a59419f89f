//! The agent's client at one authorization server ([`Authority`]): the configured one, and
//! those learnt from resources, each created on first use by the [`Registrar`] (trust policy,
//! then registration: pre-registered, Client ID Metadata Document, or dynamic registration).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use crate::cache::Principal;
use crate::client_auth::ClientAuth;
use crate::discovery::{AuthorizationServer, MetadataPatch, ServerMetadata, TrustPolicy};
use crate::dpop::{DpopKey, NonceCache};
use crate::error::{Error, Result};
use crate::event::{AgentEvent, EventHook};
use crate::grant::OAuthClient;
use crate::registration::{
    choose_auth_method, forget_registration, load_registration, register, save_registration,
    ClientMetadata, Registration, RegistrationKind,
};
use crate::session::{Grant, GrantKey};
use crate::token::{Binding, Scope};
use crate::transport::HttpTransport;

use super::Agent;

/// The agent's client at one authorization server: its OAuth client, the user grants it holds
/// there (its own, and one per principal it acts for: the one home of each refresh token), and
/// the binding of its tokens.
pub(crate) struct Authority {
    pub(crate) client: OAuthClient,
    /// The agent's own user grant ([`Principal::agent`]).
    own: Arc<UserGrant>,
    pub(crate) binding: Binding,
    pub(crate) kind: RegistrationKind,
    /// The grants of other principals, opened from the store on first use.
    principals: tokio::sync::Mutex<HashMap<Principal, Arc<UserGrant>>>,
}

/// One principal's grant at an authorization server, and the scope it last authorized.
pub(crate) struct UserGrant {
    pub(crate) grant: Grant,
    /// The scope of the grant's last authorization; a refresh cannot widen it, a step-up
    /// beyond it needs the user again.
    granted: Mutex<Option<Scope>>,
}

impl UserGrant {
    fn new(grant: Grant) -> Arc<Self> {
        Arc::new(UserGrant {
            grant,
            granted: Mutex::new(None),
        })
    }

    /// Record what the user authorized (the token's scope, else what was asked).
    pub(crate) fn set_granted(&self, scope: Scope) {
        *crate::sync::lock(&self.granted) = Some(scope);
    }

    /// Does the grant cover `wanted`? Unknown (a grant found in the store) counts as yes:
    /// the server decides at refresh time.
    pub(crate) fn covers(&self, wanted: Option<&Scope>) -> bool {
        match (&*crate::sync::lock(&self.granted), wanted) {
            (Some(granted), Some(w)) => w.is_subset(granted),
            _ => true,
        }
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("issuer", &self.issuer())
            .field("client_id", &self.client.client_id())
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Authority {
    pub(crate) fn new(
        client: OAuthClient,
        grant: Grant,
        binding: Binding,
        kind: RegistrationKind,
    ) -> Self {
        Authority {
            client,
            own: UserGrant::new(grant),
            binding,
            kind,
            principals: tokio::sync::Mutex::default(),
        }
    }

    pub(crate) fn issuer(&self) -> &str {
        self.client.server().issuer()
    }

    /// The user grant `principal` holds here: the agent's own, or the principal's, opened from
    /// the store on its first use (once, however many calls ask at the same time).
    ///
    /// # Errors
    /// [`Error::Store`] when the store cannot be read.
    pub(crate) async fn user_grant(&self, principal: &Principal) -> Result<Arc<UserGrant>> {
        if principal.is_agent() {
            return Ok(self.own.clone());
        }
        let mut map = self.principals.lock().await;
        if let Some(g) = map.get(principal) {
            return Ok(g.clone());
        }
        let key = GrantKey::for_principal(
            self.issuer(),
            self.client.client_id(),
            self.binding.clone(),
            principal.clone(),
        );
        let g = UserGrant::new(self.own.grant.sibling(key).await?);
        map.insert(principal.clone(), g.clone());
        Ok(g)
    }
}

/// What the builder was told about DPoP: a mode, or a key (the last setter called wins).
#[derive(Debug, Clone)]
pub(super) enum DpopChoice {
    Off,
    /// Bind when the server supports ES256, with this key (generated once per agent).
    Auto(DpopKey),
    Key(DpopKey),
}

/// How the agent creates its client at an authorization server.
#[derive(Clone)]
pub(crate) struct Registrar {
    pub(super) trust: TrustPolicy,
    /// Used at every learnt issuer when set (pre-registered at all of them).
    pub(super) client_id: Option<String>,
    pub(super) auth: ClientAuth,
    /// Pre-registered clients at named issuers.
    pub(super) per_issuer: Vec<(String, String, ClientAuth)>,
    /// The agent's Client ID Metadata Document URL, used where the server supports CIMD.
    pub(super) metadata_url: Option<String>,
    pub(super) dpop: DpopChoice,
    pub(super) nonces: Arc<NonceCache>,
    pub(super) accept_bearer: bool,
    pub(super) default_expires_in: Option<Duration>,
    pub(super) metadata_patch: Option<MetadataPatch>,
    /// The thumbprint of the client certificate, when there is one (RFC 8705 binding).
    pub(super) mtls_thumbprint: Option<String>,
    /// Refuse the code flow at servers that do not advertise PKCE S256.
    pub(super) require_pkce: bool,
    /// What the agent says about itself when it registers (RFC 7591).
    pub(super) client_metadata: Option<ClientMetadata>,
    /// The redirect URI of the authorization hook (code flow), registered with the client.
    pub(super) redirect_uri: Option<String>,
    /// Whether user grants are obtained (an authorization hook is set).
    pub(super) user_grants: bool,
}

impl Registrar {
    /// The DPoP key tokens may be bound to (per server: see [`client`](Self::client)).
    pub(super) fn dpop_key(&self) -> Option<&DpopKey> {
        match &self.dpop {
            DpopChoice::Off => None,
            DpopChoice::Auto(k) | DpopChoice::Key(k) => Some(k),
        }
    }

    /// A handle for `issuer` with the agent's metadata patch.
    pub(super) fn server(
        &self,
        issuer: &str,
        transport: &HttpTransport,
    ) -> Result<AuthorizationServer> {
        let server = AuthorizationServer::new(issuer, transport.clone())?;
        Ok(match self.metadata_patch.clone() {
            Some(p) => server.with_metadata_patch(p),
            None => server,
        })
    }

    /// The OAuth client `client_id` at `server` (whose metadata is `md`) and the binding of its
    /// tokens: DPoP with the agent's key (in auto mode, only where the server supports ES256
    /// and no client certificate binds the tokens instead), and the certificate.
    pub(super) fn client(
        &self,
        server: AuthorizationServer,
        md: &ServerMetadata,
        client_id: &str,
        auth: ClientAuth,
    ) -> (OAuthClient, Binding) {
        let dpop = match &self.dpop {
            DpopChoice::Off => None,
            DpopChoice::Auto(_) if self.mtls_thumbprint.is_some() => None,
            DpopChoice::Auto(k) => md.supports_dpop_alg("ES256").then(|| k.clone()),
            DpopChoice::Key(k) => Some(k.clone()),
        };
        let mut binding = match &dpop {
            Some(k) => Binding::dpop(k.thumbprint()),
            None => Binding::bearer(),
        };
        if let Some(x5t) = &self.mtls_thumbprint {
            binding = binding.with_mtls(x5t.clone());
        }
        let mut cb = OAuthClient::builder(server, client_id)
            .auth(auth)
            .accept_bearer_with_dpop(self.accept_bearer)
            .nonce_cache(self.nonces.clone());
        if let Some(d) = self.default_expires_in {
            cb = cb.default_expires_in(d);
        }
        if let Some(k) = dpop {
            cb = cb.dpop(k);
        }
        #[cfg(feature = "mtls")]
        if self.mtls_thumbprint.is_some() {
            cb = cb.mtls_endpoints(true);
        }
        (cb.build(), binding)
    }
}

impl Agent {
    /// The authority that serves a resource naming `issuer`: the configured one, or one learnt
    /// before, or a new one (trust-checked, registered) — created once however many calls ask
    /// at the same time.
    ///
    /// # Errors
    /// [`Error::Discovery`] for an untrusted issuer or a metadata problem; registration errors.
    pub(crate) async fn authority_for(&self, issuer: &str) -> Result<Arc<Authority>> {
        let transport = self.inner.transport.clone();
        let registrar = &self.inner.registrar;
        self.authority_with(
            issuer,
            || async move { registrar.server(issuer, &transport) },
        )
        .await
    }

    /// The authority of a resource that publishes no RFC 9728 metadata (MCP 2025-03-26): its
    /// origin, with the metadata (or default endpoints) found there.
    ///
    /// # Errors
    /// As [`authority_for`](Self::authority_for).
    pub(crate) async fn legacy_authority(&self, resource: &Url) -> Result<Arc<Authority>> {
        let server = AuthorizationServer::legacy(resource, self.inner.transport.clone()).await?;
        let issuer = server.issuer().to_owned();
        self.authority_with(&issuer, || async move { Ok(server) })
            .await
    }

    /// The authority for `issuer`: the configured one, one learnt before, or a new one at the
    /// server `server` gives (after the trust check), created under the lock.
    async fn authority_with<F, Fut>(&self, issuer: &str, server: F) -> Result<Arc<Authority>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<AuthorizationServer>>,
    {
        if let Some(home) = self.inner.home.as_ref().filter(|h| h.issuer() == issuer) {
            return Ok(home.clone());
        }
        let mut learnt = self.inner.learnt.lock().await;
        if let Some(a) = learnt.iter().find(|a| a.issuer() == issuer) {
            return Ok(a.clone());
        }
        self.inner.registrar.trust.check(issuer)?;
        let authority = Arc::new(self.create_authority(server().await?).await?);
        learnt.push(authority.clone());
        Ok(authority)
    }

    async fn create_authority(&self, server: AuthorizationServer) -> Result<Authority> {
        let md = server.metadata().await?;
        // Endpoints learnt from the network pass the trust policy too (SSRF).
        let trust = &self.inner.registrar.trust;
        for endpoint in [
            &md.authorization_endpoint,
            &md.token_endpoint,
            &md.registration_endpoint,
            &md.device_authorization_endpoint,
            &md.revocation_endpoint,
            &md.introspection_endpoint,
            &md.pushed_authorization_request_endpoint,
        ]
        .into_iter()
        .flatten()
        {
            trust.check_endpoint(server.issuer(), endpoint)?;
        }
        let (client_id, auth, kind) = self.registration_at(&server, &md).await?;
        let registrar = &self.inner.registrar;
        let issuer = server.issuer().to_owned();
        let (client, binding) = registrar.client(server, &md, &client_id, auth);
        let grant = Grant::open(
            client.clone(),
            self.inner.store.clone(),
            GrantKey::new(&issuer, &client_id, binding.clone()),
            self.inner.events.clone(),
        )
        .await?;
        tracing::info!(target: "agent_oauth", %issuer, client_id = %client_id, ?kind,
            "authorization server ready");
        Ok(Authority::new(client, grant, binding, kind))
    }

    /// The client to use at `server`: pre-registered for this issuer, else the builder's
    /// client id, else the agent's Client ID Metadata Document where the server supports it,
    /// else dynamic registration.
    async fn registration_at(
        &self,
        server: &AuthorizationServer,
        md: &ServerMetadata,
    ) -> Result<(String, ClientAuth, RegistrationKind)> {
        let registrar = &self.inner.registrar;
        let issuer = server.issuer();
        if let Some((_, id, auth)) = registrar.per_issuer.iter().find(|(i, ..)| i == issuer) {
            return Ok((id.clone(), auth.clone(), RegistrationKind::PreRegistered));
        }
        if let Some(id) = &registrar.client_id {
            return Ok((
                id.clone(),
                registrar.auth.clone(),
                RegistrationKind::PreRegistered,
            ));
        }
        if crate::registration::client_id_metadata_document_supported(md) {
            if let Some(url) = &registrar.metadata_url {
                // A metadata document names no shared secret: a public client, or one that
                // signs assertions with its own key.
                let auth = if registrar.auth.method_name() == Some("private_key_jwt") {
                    registrar.auth.clone()
                } else {
                    ClientAuth::none()
                };
                return Ok((url.clone(), auth, RegistrationKind::MetadataDocument));
            }
        }
        if let Some(endpoint) = &md.registration_endpoint {
            return self.dynamic_registration(server, md, endpoint).await;
        }
        Err(Error::config(format!(
            "no client for authorization server `{}`: no client id is configured for it, it \
             does not support Client ID Metadata Documents (or none is configured) and it has \
             no registration endpoint",
            crate::error::sanitize(issuer, 200)
        )))
    }

    /// The registration slot in the store: one per client name at an issuer.
    fn registration_slot(&self) -> String {
        self.inner
            .registrar
            .client_metadata
            .as_ref()
            .and_then(|m| m.client_name.clone())
            .unwrap_or_else(|| "agent".to_owned())
    }

    /// The metadata sent to a registration endpoint: the agent's own, completed with the
    /// redirect URI of its hook, the grants it uses and an authentication method the server
    /// supports.
    fn registration_metadata(&self, md: &ServerMetadata) -> ClientMetadata {
        let registrar = &self.inner.registrar;
        let mut m = self.own_metadata();
        if m.token_endpoint_auth_method.is_none() {
            let has_key = registrar.auth.method_name() == Some("private_key_jwt");
            let method =
                choose_auth_method(md.token_endpoint_auth_methods_supported.as_deref(), has_key);
            m = m.token_endpoint_auth_method(method);
        }
        m
    }

    /// The Client ID Metadata Document to host at the agent's
    /// [`client_metadata_url`](crate::AgentBuilder::client_metadata_url), rendered from the
    /// agent's configuration: its [client metadata](crate::AgentBuilder::client_metadata), the
    /// redirect URI of its authorization hook, the grants it uses, and `none` as the token
    /// endpoint authentication method (`private_key_jwt` when the agent signs assertions; the
    /// document must then carry its public `jwks`, given with `client_metadata`). `None`
    /// without a metadata URL.
    ///
    /// # Errors
    /// [`Error::Config`] for what a metadata document may not hold (a URL that is not HTTPS
    /// with a path, a shared-secret method, private key material).
    pub fn client_id_metadata_document(&self) -> Result<Option<serde_json::Value>> {
        let registrar = &self.inner.registrar;
        let Some(url) = &registrar.metadata_url else {
            return Ok(None);
        };
        let mut m = self.own_metadata();
        if m.token_endpoint_auth_method.is_none() {
            let method = if registrar.auth.method_name() == Some("private_key_jwt") {
                "private_key_jwt"
            } else {
                "none"
            };
            m = m.token_endpoint_auth_method(method);
        }
        m.client_id_metadata_document(url).map(Some)
    }

    /// The agent's client metadata without an authentication method: its own, completed with
    /// the redirect URI of its hook and the grants it uses.
    fn own_metadata(&self) -> ClientMetadata {
        let registrar = &self.inner.registrar;
        let mut m = registrar
            .client_metadata
            .clone()
            .unwrap_or_else(|| ClientMetadata::new("agent-oauth agent"));
        if registrar.user_grants {
            if m.redirect_uris.is_empty() {
                if let Some(r) = &registrar.redirect_uri {
                    m = m.redirect_uris([r.clone()]);
                }
            }
        } else {
            m = m
                .grant_types(["client_credentials"])
                .response_types(Vec::<String>::new());
        }
        m
    }

    /// The client a registration gives: its id and authentication.
    fn registered_client(
        &self,
        r: &Registration,
    ) -> Result<(String, ClientAuth, RegistrationKind)> {
        let auth = if r.token_endpoint_auth_method == "private_key_jwt" {
            self.inner.registrar.auth.clone()
        } else {
            r.client_auth(None)?
        };
        Ok((r.client_id.clone(), auth, RegistrationKind::Dynamic))
    }

    /// Dynamic Client Registration (RFC 7591) at `endpoint`, or the registration stored by an
    /// earlier run (unless its secret expired).
    async fn dynamic_registration(
        &self,
        server: &AuthorizationServer,
        md: &ServerMetadata,
        endpoint: &str,
    ) -> Result<(String, ClientAuth, RegistrationKind)> {
        let issuer = server.issuer();
        let slot = self.registration_slot();
        let store = &self.inner.store;
        match load_registration(store, issuer, &slot).await {
            Ok(Some(r)) if !r.is_expired(std::time::SystemTime::now()) => {
                tracing::info!(target: "agent_oauth", %issuer, client_id = %r.client_id,
                    "using the stored registration");
                return self.registered_client(&r);
            }
            Ok(_) => {}
            // A damaged record is replaced by a new registration.
            Err(e) => tracing::warn!(target: "agent_oauth", %issuer, error = %e,
                "stored registration unreadable; registering again"),
        }
        let metadata = self.registration_metadata(md);
        let r = register(&self.inner.transport, endpoint, &metadata, None).await?;
        if let Err(e) = save_registration(store, issuer, &slot, &r).await {
            tracing::warn!(target: "agent_oauth", %issuer, error = %e,
                "registration not stored; it lasts as long as this agent");
        }
        EventHook::emit(
            self.inner.events.as_ref(),
            AgentEvent::ClientRegistered {
                issuer: issuer.to_owned(),
                client_id: r.client_id.clone(),
            },
        );
        self.registered_client(&r)
    }

    /// The server refused a dynamically registered client (`invalid_client`): forget the
    /// registration, register again, and put the new authority where the old one was.
    pub(crate) async fn reregister(&self, old: &Arc<Authority>) -> Result<Arc<Authority>> {
        let issuer = old.issuer().to_owned();
        forget_registration(&self.inner.store, &issuer, &self.registration_slot()).await?;
        let mut learnt = self.inner.learnt.lock().await;
        let fresh = match learnt.iter().find(|a| a.issuer() == issuer) {
            Some(current) if !Arc::ptr_eq(current, old) => current.clone(),
            _ => {
                let server = old.client.server().clone();
                let fresh = Arc::new(self.create_authority(server).await?);
                learnt.retain(|a| a.issuer() != issuer);
                learnt.push(fresh.clone());
                fresh
            }
        };
        drop(learnt);
        self.forget_fast_handles();
        let mut w = crate::sync::write(&self.inner.resources);
        for r in w.iter_mut().filter(|r| Arc::ptr_eq(&r.authority, old)) {
            *r = super::ResourceInfo::new(r.resource.clone(), r.scope.clone(), fresh.clone());
        }
        Ok(fresh)
    }
}
