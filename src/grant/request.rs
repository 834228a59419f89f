//! Parameters every token request can carry.

use crate::token::Scope;

/// Optional members of a token request: `scope` (RFC 6749 §3.3), `resource` (RFC 8707 §2),
/// `audience` (RFC 8693 §2.1), `authorization_details` (RFC 9396 §2) and any extra parameters.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TokenParams {
    /// Requested scope; `None` leaves it to the server's default.
    pub scope: Option<Scope>,
    /// Target resources (absolute URIs, RFC 8707).
    pub resources: Vec<String>,
    /// Logical audiences (RFC 8693).
    pub audiences: Vec<String>,
    /// Rich authorization request details (a JSON array, RFC 9396).
    pub authorization_details: Option<serde_json::Value>,
    /// Further parameters, sent as given.
    pub extra: Vec<(String, String)>,
}

impl TokenParams {
    /// No optional parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Request `scope` (space-separated).
    pub fn scope(mut self, scope: impl Into<Scope>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Add a target `resource` (RFC 8707).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resources.push(resource.into());
        self
    }

    /// Add an `audience` (RFC 8693).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Set `authorization_details` (RFC 9396).
    pub fn authorization_details(mut self, details: serde_json::Value) -> Self {
        self.authorization_details = Some(details);
        self
    }

    /// Add an extra parameter.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// Append these parameters to a parameter list.
    pub(crate) fn apply_to(&self, params: &mut Vec<(String, String)>) {
        let mut add = |k: &str, v: String| params.push((k.to_owned(), v));
        if let Some(scope) = self.scope.as_ref().filter(|s| !s.is_empty()) {
            add("scope", scope.to_string());
        }
        for r in &self.resources {
            add("resource", r.clone());
        }
        for a in &self.audiences {
            add("audience", a.clone());
        }
        if let Some(d) = &self.authorization_details {
            add("authorization_details", d.to_string());
        }
        for (k, v) in &self.extra {
            add(k, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::FormRequest;

    #[test]
    fn grant_params_all_members_encoded() {
        let p = TokenParams::new()
            .scope("b a")
            .resource("https://api.example/a")
            .resource("https://api.example/b")
            .audience("billing")
            .authorization_details(serde_json::json!([{"type":"payment"}]))
            .param("task_id", "42");
        let mut f = FormRequest::new(url::Url::parse("https://as/token").expect("url"));
        p.apply_to(&mut f.params);
        let names: Vec<_> = f.params.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "scope",
                "resource",
                "resource",
                "audience",
                "authorization_details",
                "task_id"
            ]
        );
        assert_eq!(f.get("scope"), Some("a b"));
        assert_eq!(
            f.get("authorization_details"),
            Some(r#"[{"type":"payment"}]"#)
        );
    }
}
