//! The embedded server's other endpoints: revocation (RFC 7009), introspection (RFC 7662), device
//! authorization (RFC 8628) and the codes it hands out.

use axum::http::HeaderMap;
use serde_json::{json, Map, Value};

use super::client_auth::authenticate;
use super::http_util::OAuthErr;
use super::jose::random_token;
use super::state::{now, secs, CodeRecord, DeviceRecord, DeviceStatus, Shared};
use crate::Scope;

use super::grants::{check_scope, form, normalize_user_code, resources, user_code, Answer};

impl Shared {
    /// RFC 7009 revocation. `Ok(())` is a 200 with an empty body.
    pub(crate) fn revoke(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), OAuthErr> {
        let params = form(headers, body)?;
        let mut guard = self.inner();
        let inner = &mut *guard;
        let client = authenticate(self, inner, headers, &params, &self.endpoint("/revoke"))?;
        let token = params.required("token")?;
        if let Some(rec) = inner.refresh.get(token) {
            if rec.client_id != client.client_id {
                return Err(OAuthErr::invalid_request(
                    "this token does not belong to you",
                ));
            }
            let grant_id = rec.grant_id;
            self.revoke_grant(inner, grant_id);
            return Ok(());
        }
        if let Some(jti) = self.access_jti(token) {
            if let Some(rec) = inner.access.get_mut(&jti) {
                if rec.client_id != client.client_id {
                    return Err(OAuthErr::invalid_request(
                        "this token does not belong to you",
                    ));
                }
                rec.revoked = true;
            }
        }
        Ok(())
    }

    /// RFC 7662 introspection.
    pub(crate) fn introspect(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let params = form(headers, body)?;
        let mut guard = self.inner();
        let inner = &mut *guard;
        let client = authenticate(self, inner, headers, &params, &self.endpoint("/introspect"))?;
        let token = params.required("token")?;
        let inactive = json!({ "active": false });
        if let Some(rec) = Shared::active_refresh(inner, token) {
            if client.auth.is_public() && rec.client_id != client.client_id {
                return Ok(inactive);
            }
            let mut m = Map::new();
            m.insert("active".into(), json!(true));
            m.insert("client_id".into(), json!(rec.client_id));
            m.insert("sub".into(), json!(rec.sub));
            m.insert("scope".into(), json!(rec.scope.to_string()));
            m.insert("iat".into(), json!(rec.iat));
            m.insert("exp".into(), json!(rec.exp));
            m.insert("iss".into(), json!(self.issuer));
            if let Some(jkt) = &rec.jkt {
                m.insert("cnf".into(), json!({ "jkt": jkt }));
            }
            return Ok(Value::Object(m));
        }
        let Some(claims) = self.active_access(inner, token) else {
            return Ok(inactive);
        };
        let owner = claims.get("client_id").and_then(Value::as_str);
        if client.auth.is_public() && owner != Some(client.client_id.as_str()) {
            return Ok(inactive);
        }
        let mut m = Map::new();
        m.insert("active".into(), json!(true));
        for k in [
            "iss",
            "sub",
            "client_id",
            "aud",
            "scope",
            "iat",
            "exp",
            "jti",
            "cnf",
            "act",
        ] {
            if let Some(v) = claims.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        let ty = if claims.contains_key("cnf") {
            "DPoP"
        } else {
            "Bearer"
        };
        m.insert("token_type".into(), json!(ty));
        Ok(Value::Object(m))
    }

    /// RFC 8628 §3.1 device authorization request.
    pub(crate) fn device_authorization(&self, headers: &HeaderMap, body: &[u8]) -> Answer {
        let params = form(headers, body)?;
        let mut guard = self.inner();
        let inner = &mut *guard;
        let client = authenticate(
            self,
            inner,
            headers,
            &params,
            &self.endpoint("/device/auth"),
        )?;
        let scope = Scope::parse(params.one("scope")?.unwrap_or_default());
        check_scope(self, &client, &scope)?;
        let resources = resources(&params)?;
        let device_code = random_token();
        let user_code = user_code();
        let ttl = secs(self.config.device_code_ttl).max(1);
        let interval = self.config.device_interval.as_secs().max(1);
        inner.devices.insert(
            device_code.clone(),
            DeviceRecord {
                client_id: client.client_id.clone(),
                user_code: user_code.clone(),
                scope,
                resources,
                exp: now().saturating_add(ttl),
                last_poll: None,
                status: DeviceStatus::Pending,
            },
        );
        let verification_uri = self.endpoint("/device");
        Ok(json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": format!("{verification_uri}?user_code={user_code}"),
            "expires_in": ttl,
            "interval": interval,
        }))
    }

    /// Approve or deny a pending device authorization; false when no such pending code.
    pub(crate) fn decide_device(&self, user_code: &str, approve: bool) -> bool {
        let wanted = normalize_user_code(user_code);
        let mut inner = self.inner();
        let t = now();
        for rec in inner.devices.values_mut() {
            if normalize_user_code(&rec.user_code) == wanted
                && rec.status == DeviceStatus::Pending
                && rec.exp > t
            {
                rec.status = if approve {
                    DeviceStatus::Approved
                } else {
                    DeviceStatus::Denied
                };
                return true;
            }
        }
        false
    }

    /// Record a new authorization code.
    pub(crate) fn new_code(&self, rec: CodeRecord) -> String {
        let code = random_token();
        let mut inner = self.inner();
        let t = now();
        if inner.codes.len() > 10_000 {
            inner.codes.retain(|_, c| c.exp > t);
        }
        inner.codes.insert(code.clone(), rec);
        code
    }
}
