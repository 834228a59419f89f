//! [`TokenKey`]: what a cached token is valid for.

use std::fmt;
use std::sync::Arc;

use crate::token::Scope;

/// What a cached token is valid for: issuer, client, normalized scope set, resources,
/// audiences and sender binding. Two requests with equal keys may share a token; anything that
/// differs gets its own.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    issuer: Arc<str>,
    client_id: Arc<str>,
    scope: Scope,
    resources: Vec<String>,
    audiences: Vec<String>,
    binding: Binding,
    subject: Option<String>,
}

/// How a token is bound to its holder.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[non_exhaustive]
pub enum Binding {
    /// A bearer token.
    #[default]
    Bearer,
    /// DPoP-bound to the key with this RFC 7638 thumbprint (`cnf.jkt`).
    Dpop(String),
    /// Bound to the client certificate with this SHA-256 thumbprint (`cnf.x5t#S256`).
    Mtls(String),
    /// Both (mTLS client authentication with DPoP-bound tokens).
    DpopMtls {
        /// The DPoP key thumbprint.
        jkt: String,
        /// The certificate thumbprint.
        x5t: String,
    },
}

impl TokenKey {
    /// A key for tokens of `client_id` at `issuer`, with no scope, resource or binding yet.
    pub fn new(issuer: &str, client_id: &str) -> Self {
        TokenKey {
            issuer: issuer.into(),
            client_id: client_id.into(),
            scope: Scope::empty(),
            resources: Vec::new(),
            audiences: Vec::new(),
            binding: Binding::Bearer,
            subject: None,
        }
    }

    /// Set the scope (order-insensitive).
    pub fn with_scope(mut self, scope: Scope) -> Self {
        self.scope = scope;
        self
    }

    /// Add a resource (RFC 8707); order-insensitive.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        let r = resource.into();
        if let Err(pos) = self.resources.binary_search(&r) {
            self.resources.insert(pos, r);
        }
        self
    }

    /// Add an audience; order-insensitive.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        let a = audience.into();
        if let Err(pos) = self.audiences.binary_search(&a) {
            self.audiences.insert(pos, a);
        }
        self
    }

    /// Set the binding.
    pub fn with_binding(mut self, binding: Binding) -> Self {
        self.binding = binding;
        self
    }

    /// Distinguish tokens of different subjects (users, delegating parents) for one client.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The client.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The resources, sorted.
    pub fn resources(&self) -> &[String] {
        &self.resources
    }

    /// The audiences, sorted.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// The binding.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// A stable string naming this key, for [`TokenStore`](crate::store::TokenStore) entries.
    pub fn store_key(&self) -> String {
        let b = match &self.binding {
            Binding::Bearer => "bearer".to_owned(),
            Binding::Dpop(j) => format!("dpop:{j}"),
            Binding::Mtls(x) => format!("x5t:{x}"),
            Binding::DpopMtls { jkt, x5t } => format!("dpop:{jkt}+x5t:{x5t}"),
        };
        serde_json::json!([
            &*self.issuer,
            &*self.client_id,
            self.scope.to_string(),
            self.resources,
            self.audiences,
            b,
            self.subject
        ])
        .to_string()
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("issuer", &&*self.issuer)
            .field("client_id", &&*self.client_id)
            .field("scope", &self.scope.to_string())
            .field("resources", &self.resources)
            .field("audiences", &self.audiences)
            .field("binding", &self.binding)
            .field("subject", &self.subject)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_normalizes_scope_and_resources() {
        let a = TokenKey::new("https://as", "c")
            .with_scope(Scope::parse("b a"))
            .with_resource("https://r2")
            .with_resource("https://r1");
        let b = TokenKey::new("https://as", "c")
            .with_scope(Scope::parse("a b a"))
            .with_resource("https://r1")
            .with_resource("https://r2")
            .with_resource("https://r1");
        assert_eq!(a, b);
        assert_eq!(a.store_key(), b.store_key());
        let c = b.clone().with_binding(Binding::Dpop("jkt".into()));
        assert_ne!(a, c);
        assert_ne!(a.store_key(), c.store_key());
        assert_ne!(a, a.clone().with_subject("user-1"));
    }
}
