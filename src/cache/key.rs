//! [`TokenKey`]: what a cached token is valid for, and [`Principal`]: who it is for.

use std::fmt;
use std::sync::Arc;

use crate::token::Scope;

/// How a token is bound to its holder: the one binding type, defined with the tokens.
use crate::token::Binding;

/// Who an agent acts for: a user or workload it serves, or the agent itself.
///
/// Every cache key, store key and grant carries one, so a token obtained for one principal is
/// never handed to another. [`Principal::agent`] (the default) is the agent's own identity:
/// its client-credentials tokens and the user grant of a single-user agent. Any other
/// principal (`Principal::new("user:alice")`) has its own grants, obtained by its own login
/// (see `Agent::for_principal`).
///
/// The identifier is compared exactly (no case folding or trimming); it is not a secret.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Principal(Option<Arc<str>>);

impl Principal {
    /// The agent itself (the default principal).
    pub const fn agent() -> Self {
        Principal(None)
    }

    /// The principal named `id` (a user, a workload, a tenant: the caller's choice of name).
    pub fn new(id: impl AsRef<str>) -> Self {
        Principal(Some(id.as_ref().into()))
    }

    /// Whether this is the agent itself.
    pub fn is_agent(&self) -> bool {
        self.0.is_none()
    }

    /// The identifier; `None` for the agent itself.
    pub fn id(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Principal(agent)"),
            Some(id) => f.debug_tuple("Principal").field(&&**id).finish(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("(agent)"),
            Some(id) => f.write_str(&crate::error::sanitize(id, 200)),
        }
    }
}

impl From<&str> for Principal {
    fn from(id: &str) -> Self {
        Principal::new(id)
    }
}

impl From<String> for Principal {
    fn from(id: String) -> Self {
        Principal::new(id)
    }
}

/// What a cached token is valid for: issuer, client, principal, normalized scope set,
/// resources, audiences and sender binding. Two requests with equal keys may share a token;
/// anything that differs gets its own.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    issuer: Arc<str>,
    client_id: Arc<str>,
    principal: Principal,
    scope: Scope,
    resources: Vec<String>,
    audiences: Vec<String>,
    binding: Binding,
    subject: Option<String>,
}

impl TokenKey {
    /// A key for tokens of `client_id` at `issuer`, with no scope, resource or binding yet.
    pub fn new(issuer: &str, client_id: &str) -> Self {
        TokenKey {
            issuer: issuer.into(),
            client_id: client_id.into(),
            principal: Principal::agent(),
            scope: Scope::empty(),
            resources: Vec::new(),
            audiences: Vec::new(),
            binding: Binding::bearer(),
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

    /// Set the binding. Where it was learnt ([`Binding::from_token`]) is not part of the key.
    pub fn with_binding(mut self, binding: Binding) -> Self {
        self.binding = Binding {
            from_token: false,
            ..binding
        };
        self
    }

    /// Distinguish tokens of different subjects (users, delegating parents) for one client.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Set the principal the token is for (default: [`Principal::agent`]).
    pub fn with_principal(mut self, principal: Principal) -> Self {
        self.principal = principal;
        self
    }

    /// The principal the token is for.
    pub fn principal(&self) -> &Principal {
        &self.principal
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
    ///
    /// The agent's own keys ([`Principal::agent`]) keep the form they always had (seven JSON
    /// members); another principal's key has its identifier as an eighth, so no key of one
    /// principal can equal a key of another.
    pub fn store_key(&self) -> String {
        let b = match (&self.binding.jkt, &self.binding.x5t_s256) {
            (None, None) => "bearer".to_owned(),
            (Some(jkt), None) => format!("dpop:{jkt}"),
            (None, Some(x5t)) => format!("x5t:{x5t}"),
            (Some(jkt), Some(x5t)) => format!("dpop:{jkt}+x5t:{x5t}"),
        };
        let mut parts = vec![
            serde_json::json!(&*self.issuer),
            serde_json::json!(&*self.client_id),
            serde_json::json!(self.scope.to_string()),
            serde_json::json!(self.resources),
            serde_json::json!(self.audiences),
            serde_json::json!(b),
            serde_json::json!(self.subject),
        ];
        if let Some(id) = self.principal.id() {
            parts.push(serde_json::json!({ "principal": id }));
        }
        serde_json::Value::Array(parts).to_string()
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("issuer", &&*self.issuer)
            .field("client_id", &&*self.client_id)
            .field("principal", &self.principal)
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
        let c = b.clone().with_binding(Binding::dpop("jkt"));
        assert_ne!(a, c);
        assert_ne!(a.store_key(), c.store_key());
        assert_ne!(a, a.clone().with_subject("user-1"));
    }

    #[test]
    fn cache_key_store_key_names_each_binding_as_before() {
        let key = |b: Binding| TokenKey::new("https://as", "c").with_binding(b).store_key();
        let tail = |b: Binding| {
            let k = key(b);
            let v: serde_json::Value = serde_json::from_str(&k).expect("json");
            v[5].as_str().expect("binding").to_owned()
        };
        assert_eq!(tail(Binding::bearer()), "bearer");
        assert_eq!(tail(Binding::dpop("j")), "dpop:j");
        assert_eq!(tail(Binding::mtls("x")), "x5t:x");
        assert_eq!(tail(Binding::dpop("j").with_mtls("x")), "dpop:j+x5t:x");
        // A certificate rotation replaces the thumbprint and keeps the DPoP key.
        assert_eq!(
            tail(Binding::dpop("j").with_mtls("x").with_mtls("y")),
            "dpop:j+x5t:y"
        );
        assert_eq!(
            key(Binding::bearer()),
            r#"["https://as","c","",[],[],"bearer",null]"#
        );
    }

    #[test]
    fn principal_is_part_of_cache_and_store_keys() {
        let base = TokenKey::new("https://as", "c")
            .with_scope(Scope::parse("read"))
            .with_resource("https://api");
        let alice = base.clone().with_principal(Principal::new("user:alice"));
        let bob = base.clone().with_principal(Principal::new("user:bob"));
        assert_ne!(alice, bob);
        assert_ne!(alice, base);
        assert_ne!(alice.store_key(), bob.store_key());
        assert_ne!(alice.store_key(), base.store_key());
        // The agent's own key keeps its historic form.
        assert_eq!(
            base.clone().with_principal(Principal::agent()).store_key(),
            base.store_key()
        );
        assert_eq!(
            alice.store_key(),
            r#"["https://as","c","read",["https://api"],[],"bearer",null,{"principal":"user:alice"}]"#
        );
        // An identifier that looks like JSON or like another key cannot collide.
        let tricky = base
            .clone()
            .with_principal(Principal::new(r#"user:alice"},{"principal":"x"#));
        assert_ne!(tricky.store_key(), alice.store_key());
        assert_eq!(alice.principal().id(), Some("user:alice"));
        assert!(base.principal().is_agent());
        assert_eq!(format!("{:?}", Principal::agent()), "Principal(agent)");
        assert_eq!(Principal::from("u"), Principal::new(String::from("u")));
    }

    #[test]
    fn cache_key_ignores_where_a_binding_was_read() {
        let read = Binding {
            from_token: true,
            ..Binding::dpop("j")
        };
        let k = TokenKey::new("https://as", "c").with_binding(read);
        assert_eq!(
            k,
            TokenKey::new("https://as", "c").with_binding(Binding::dpop("j"))
        );
        assert!(!k.binding().from_token);
    }
}
