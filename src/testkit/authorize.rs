//! The authorization endpoint: auto-approves every valid request for the test user.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::config::TestClient;
use super::grants::{check_scope, resources};
use super::http_util::{json_no_store, no_store, OAuthErr, Params};
use super::state::{now, secs, CodeRecord, Shared};
use crate::Scope;

/// Does `given` match the registered `registered` redirect URI? Exact match, except that the
/// port of loopback IP literals may vary (RFC 8252 §7.3).
fn redirect_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    let (Ok(r), Ok(g)) = (Url::parse(registered), Url::parse(given)) else {
        return false;
    };
    let loopback =
        |u: &Url| u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1") | Some("[::1]"));
    loopback(&r)
        && loopback(&g)
        && r.host_str() == g.host_str()
        && r.path() == g.path()
        && r.query() == g.query()
        && g.fragment().is_none()
}

fn redirect(to: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = Url::parse(to) else {
        return OAuthErr::invalid_request("invalid redirect_uri").response(None);
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    let mut headers = no_store();
    match HeaderValue::from_str(url.as_str()) {
        Ok(v) => {
            headers.insert(header::LOCATION, v);
            (StatusCode::FOUND, headers).into_response()
        }
        Err(_) => OAuthErr::invalid_request("invalid redirect_uri").response(None),
    }
}

impl Shared {
    /// `GET /authorize`.
    pub(crate) fn authorize(&self, query: Option<&str>) -> Response {
        let params = Params::parse(query.unwrap_or_default().as_bytes());
        // Errors that cannot be redirected: unknown client, bad redirect_uri.
        let client = match params.one("client_id") {
            Ok(Some(id)) => match self.client(id) {
                Some(c) => c,
                None => return OAuthErr::invalid_client("client is invalid").response(None),
            },
            Ok(None) => {
                return OAuthErr::invalid_request("missing required parameter 'client_id'")
                    .response(None)
            }
            Err(e) => return e.response(None),
        };
        let redirect_uri = match params.one("redirect_uri") {
            Ok(Some(r))
                if client
                    .redirect_uris
                    .iter()
                    .any(|reg| redirect_matches(reg, r)) =>
            {
                r.to_owned()
            }
            Ok(Some(_)) => {
                return OAuthErr::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_redirect_uri",
                    "redirect_uri did not match any of the client's registered redirect_uris",
                )
                .response(None)
            }
            Ok(None) => match client.redirect_uris.as_slice() {
                [only] => only.clone(),
                _ => {
                    return OAuthErr::invalid_request("missing required parameter 'redirect_uri'")
                        .response(None)
                }
            },
            Err(e) => return e.response(None),
        };
        let sent = params.has("redirect_uri");
        let state = params.one("state").ok().flatten().map(str::to_owned);
        match self.authorize_checked(&client, &params, &redirect_uri, sent) {
            Ok(code) => {
                let mut pairs = vec![("code", code.as_str())];
                if let Some(s) = &state {
                    pairs.push(("state", s));
                }
                pairs.push(("iss", &self.issuer));
                redirect(&redirect_uri, &pairs)
            }
            Err(e) => {
                let mut pairs = vec![
                    ("error", e.error),
                    ("error_description", e.description.as_str()),
                ];
                if let Some(s) = &state {
                    pairs.push(("state", s));
                }
                pairs.push(("iss", &self.issuer));
                redirect(&redirect_uri, &pairs)
            }
        }
    }

    fn authorize_checked(
        &self,
        client: &TestClient,
        params: &Params,
        redirect_uri: &str,
        redirect_uri_sent: bool,
    ) -> Result<String, OAuthErr> {
        params.one("state")?;
        if params.has("request") {
            return Err(OAuthErr::new(
                StatusCode::BAD_REQUEST,
                "request_not_supported",
                "request parameter is not supported",
            ));
        }
        if params.has("request_uri") {
            return Err(OAuthErr::new(
                StatusCode::BAD_REQUEST,
                "request_uri_not_supported",
                "request_uri parameter is not supported",
            ));
        }
        match params.one("response_type")? {
            Some("code") => {}
            Some(_) => {
                return Err(OAuthErr::new(
                    StatusCode::BAD_REQUEST,
                    "unsupported_response_type",
                    "unsupported response_type requested",
                ))
            }
            None => {
                return Err(OAuthErr::invalid_request(
                    "missing required parameter 'response_type'",
                ))
            }
        }
        let challenge = params.one("code_challenge")?.ok_or_else(|| {
            OAuthErr::invalid_request(
                "Authorization Server policy requires PKCE to be used for this request",
            )
        })?;
        match params.one("code_challenge_method")? {
            Some("S256") => {}
            _ => {
                return Err(OAuthErr::invalid_request(
                    "not supported value of code_challenge_method",
                ))
            }
        }
        if challenge.len() != 43
            || !challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(OAuthErr::invalid_request(
                "code_challenge must be a base64url SHA-256 hash",
            ));
        }
        let scope = Scope::parse(params.one("scope")?.unwrap_or_default());
        check_scope(self, client, &scope)?;
        let resources = resources(params)?;
        let dpop_jkt = params.one("dpop_jkt")?.map(str::to_owned);
        Ok(self.new_code(CodeRecord {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            redirect_uri_sent,
            code_challenge: challenge.to_owned(),
            scope,
            resources,
            dpop_jkt,
            exp: now().saturating_add(secs(self.config.authorization_code_ttl).max(1)),
            grant_id: None,
        }))
    }

    /// `GET /device`: with `user_code`, approve it for the test user (auto-approve policy).
    pub(crate) fn device_page(&self, query: Option<&str>) -> Response {
        let params = Params::parse(query.unwrap_or_default().as_bytes());
        match params.one("user_code") {
            Ok(Some(code)) if self.decide_device(code, true) => json_no_store(
                StatusCode::OK,
                serde_json::json!({"approved": true, "user": super::state::USER}),
                None,
            ),
            Ok(Some(_)) => {
                OAuthErr::invalid_request("the code was not found, expired or already used")
                    .response(None)
            }
            _ => (
                StatusCode::OK,
                HeaderMap::new(),
                "Open this page with ?user_code=XXXX-XXXX to approve a device for agent-user.\n",
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_on_any_port() {
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:5555/other"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
        assert!(redirect_matches(
            "https://app.example/cb",
            "https://app.example/cb"
        ));
    }
}
