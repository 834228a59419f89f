//! The embedded server's token exchange (RFC 8693): subject and actor tokens, narrowing, `act`
//! chains.

use serde_json::{json, Map, Value};

use super::http_util::OAuthErr;
use super::state::{bump, now, Inner, NewAccess, Shared};
use crate::Scope;

use super::grants::{
    check_scope, resources, token_response, Answer, TokenRequest, AT_TYPE, JWT_TYPE,
};

impl Shared {
    pub(super) fn token_exchange(&self, inner: &mut Inner, req: TokenRequest<'_>) -> Answer {
        if req.params.one("requested_token_type")? == Some(super::identity::ID_JAG_TYPE) {
            return self.issue_id_jag(req);
        }
        let (client, params, jkt) = (req.client, req.params, req.jkt);
        let subject_token = params.required("subject_token")?;
        let subject_type = params.required("subject_token_type")?;
        if subject_type != AT_TYPE && subject_type != JWT_TYPE {
            return Err(OAuthErr::invalid_request("unsupported subject_token_type"));
        }
        if let Some(rt) = params.one("requested_token_type")? {
            if rt != AT_TYPE && rt != JWT_TYPE {
                return Err(OAuthErr::invalid_request(
                    "unsupported requested_token_type",
                ));
            }
        }
        let subject = self
            .active_access(inner, subject_token)
            .ok_or_else(|| OAuthErr::invalid_request("subject_token is invalid"))?;
        let actor = match params.one("actor_token")? {
            Some(actor_token) => {
                let ty = params.one("actor_token_type")?.ok_or_else(|| {
                    OAuthErr::invalid_request("actor_token_type is required with actor_token")
                })?;
                if ty != AT_TYPE && ty != JWT_TYPE {
                    return Err(OAuthErr::invalid_request("unsupported actor_token_type"));
                }
                Some(
                    self.active_access(inner, actor_token)
                        .ok_or_else(|| OAuthErr::invalid_request("actor_token is invalid"))?,
                )
            }
            None if params.has("actor_token_type") => {
                return Err(OAuthErr::invalid_request(
                    "actor_token_type without actor_token",
                ))
            }
            None => None,
        };
        let subject_scope = Scope::parse(
            subject
                .get("scope")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        let scope = match params.one("scope")? {
            Some(s) => {
                let s = Scope::parse(s);
                if !s.is_subset(&subject_scope) {
                    return Err(OAuthErr::invalid_scope(
                        "requested scope exceeds the subject token's scope",
                    ));
                }
                s
            }
            None => subject_scope,
        };
        check_scope(self, client, &scope)?;
        let mut aud: Vec<String> = params
            .all("audience")
            .into_iter()
            .map(str::to_owned)
            .collect();
        for r in resources(params)? {
            if !aud.contains(&r) {
                aud.push(r);
            }
        }
        if aud.is_empty() {
            aud = crate::jwt::audiences(&subject);
        }
        let subject_act = subject.get("act").cloned();
        let act = match actor {
            Some(actor) => {
                let mut a = Map::new();
                a.insert(
                    "sub".into(),
                    actor.get("sub").cloned().unwrap_or(Value::Null),
                );
                if let Some(prev) = subject_act {
                    a.insert("act".into(), prev);
                }
                Some(Value::Object(a))
            }
            None => subject_act,
        };
        let remaining = subject.get("exp").and_then(Value::as_i64).unwrap_or(0) - now();
        let mut ttl = self.ttl().min(remaining);
        if let Some(e) = params.one("expires_in")? {
            let e: i64 = e.parse().ok().filter(|e| *e > 0).ok_or_else(|| {
                OAuthErr::invalid_request("expires_in must be a positive integer")
            })?;
            ttl = ttl.min(e);
        }
        let grant_id = subject
            .get("jti")
            .and_then(Value::as_str)
            .and_then(|j| inner.access.get(j))
            .map(|r| r.grant_id)
            .unwrap_or_default();
        let sub = subject
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let access = self.issue_access(
            inner,
            NewAccess {
                grant_id,
                sub: &sub,
                client_id: &client.client_id,
                scope: &scope,
                aud,
                jkt: jkt.clone(),
                act,
                ttl,
            },
        );
        let mut m = token_response(access, &jkt, &scope);
        m.insert("issued_token_type".into(), json!(AT_TYPE));
        bump(&self.counters.token_exchange);
        Ok(Value::Object(m))
    }
}
