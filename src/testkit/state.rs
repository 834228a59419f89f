//! Server state: grants, tokens, codes, nonces and counters.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use p256::ecdsa::SigningKey;
use serde_json::{json, Map, Value};

use super::config::{TestClient, TestServerConfig};
use super::dpop::{Nonces, ReplayCache};
use super::jose::{parse_public_jwk, public_jwk, random_token, sign_jwt, Jws};
use super::mcp::{McpCounters, McpStats};
use crate::Scope;

/// The subject of every user grant (authorization code and device flows).
pub(crate) const USER: &str = "agent-user";

/// Unix time in seconds.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Successful token responses per grant type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GrantStats {
    /// `client_credentials`
    pub client_credentials: u64,
    /// `authorization_code`
    pub authorization_code: u64,
    /// `refresh_token`
    pub refresh_token: u64,
    /// `urn:ietf:params:oauth:grant-type:device_code`
    pub device_code: u64,
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (access tokens)
    pub token_exchange: u64,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer`
    pub jwt_bearer: u64,
    /// ID-JAGs issued by token exchange (the server as an enterprise identity provider)
    pub id_jag: u64,
}

/// A snapshot of the server's counters ([`TestServer::stats`](super::TestServer::stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests that reached the token endpoint (including refused and fault-injected ones).
    pub token_requests: u64,
    /// Tokens issued, per grant type.
    pub grants: GrantStats,
    /// Grants revoked (by refresh token or code reuse, revocation, or [`revoke_all`]).
    ///
    /// [`revoke_all`]: super::TestServer::revoke_all
    pub revoked_grants: u64,
    /// `use_dpop_nonce` answers, at the token endpoint and the resource.
    pub nonce_challenges: u64,
    /// Requests that reached the protected resource at `/api`.
    pub resource_requests: u64,
    /// Requests to `/api` answered with 400, 401 or 403.
    pub resource_rejections: u64,
    /// Requests to the MCP resource at `/mcp`, by JSON-RPC method.
    pub mcp: McpStats,
    /// Requests for the signing keys at `/jwks`.
    pub jwks_requests: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) token_requests: AtomicU64,
    pub(crate) client_credentials: AtomicU64,
    pub(crate) authorization_code: AtomicU64,
    pub(crate) refresh_token: AtomicU64,
    pub(crate) device_code: AtomicU64,
    pub(crate) token_exchange: AtomicU64,
    pub(crate) jwt_bearer: AtomicU64,
    pub(crate) id_jag: AtomicU64,
    pub(crate) revoked_grants: AtomicU64,
    pub(crate) nonce_challenges: AtomicU64,
    pub(crate) resource_requests: AtomicU64,
    pub(crate) resource_rejections: AtomicU64,
    pub(crate) mcp: McpCounters,
    pub(crate) jwks_requests: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Stats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            token_requests: g(&self.token_requests),
            grants: GrantStats {
                client_credentials: g(&self.client_credentials),
                authorization_code: g(&self.authorization_code),
                refresh_token: g(&self.refresh_token),
                device_code: g(&self.device_code),
                token_exchange: g(&self.token_exchange),
                jwt_bearer: g(&self.jwt_bearer),
                id_jag: g(&self.id_jag),
            },
            revoked_grants: g(&self.revoked_grants),
            nonce_challenges: g(&self.nonce_challenges),
            resource_requests: g(&self.resource_requests),
            resource_rejections: g(&self.resource_rejections),
            mcp: self.mcp.snapshot(),
            jwks_requests: g(&self.jwks_requests),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) revoked: bool,
}

#[derive(Debug)]
pub(crate) struct AccessRecord {
    pub(crate) grant_id: u64,
    pub(crate) client_id: String,
    pub(crate) revoked: bool,
    pub(crate) exp: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct RefreshRecord {
    pub(crate) grant_id: u64,
    pub(crate) client_id: String,
    pub(crate) sub: String,
    pub(crate) scope: Scope,
    pub(crate) resources: Vec<String>,
    pub(crate) iat: i64,
    pub(crate) exp: i64,
    pub(crate) consumed: bool,
    /// Thumbprint the refresh token is bound to (public clients that used DPoP).
    pub(crate) jkt: Option<String>,
}

#[derive(Debug)]
pub(crate) struct CodeRecord {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) redirect_uri_sent: bool,
    pub(crate) code_challenge: String,
    pub(crate) scope: Scope,
    pub(crate) resources: Vec<String>,
    pub(crate) dpop_jkt: Option<String>,
    pub(crate) exp: i64,
    /// Set once the code has been exchanged; a second use revokes this grant.
    pub(crate) grant_id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved,
    Denied,
    Consumed,
}

#[derive(Debug)]
pub(crate) struct DeviceRecord {
    pub(crate) client_id: String,
    pub(crate) user_code: String,
    pub(crate) scope: Scope,
    pub(crate) resources: Vec<String>,
    pub(crate) exp: i64,
    pub(crate) last_poll: Option<Instant>,
    pub(crate) status: DeviceStatus,
}

/// Mutable state, behind one lock that is never held across an await.
#[derive(Debug)]
pub(crate) struct Inner {
    next_grant: u64,
    pub(crate) grants: HashMap<u64, Grant>,
    pub(crate) access: HashMap<String, AccessRecord>,
    pub(crate) refresh: HashMap<String, RefreshRecord>,
    pub(crate) codes: HashMap<String, CodeRecord>,
    pub(crate) devices: HashMap<String, DeviceRecord>,
    pub(crate) as_nonces: Nonces,
    pub(crate) rs_nonces: Nonces,
    pub(crate) as_replay: ReplayCache,
    pub(crate) rs_replay: ReplayCache,
    pub(crate) assertion_replay: ReplayCache,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Fault {
    pub(crate) remaining: usize,
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: TestServerConfig,
    pub(crate) issuer: String,
    key: SigningKey,
    kid: String,
    inner: Mutex<Inner>,
    pub(crate) counters: Counters,
    pub(crate) latency: Mutex<Duration>,
    pub(crate) fault: Mutex<Fault>,
    /// Clients registered at `/register`, in order.
    pub(crate) registered: Mutex<Vec<TestClient>>,
    /// Client ID metadata documents by URL, as given to the server.
    pub(crate) metadata_documents: Mutex<HashMap<String, Vec<u8>>>,
}

/// Lock ignoring poison: every critical section leaves the state consistent.
pub(crate) use crate::sync::lock;

/// Parameters of a new access token.
#[derive(Debug)]
pub(crate) struct NewAccess<'a> {
    pub(crate) grant_id: u64,
    pub(crate) sub: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scope: &'a Scope,
    pub(crate) aud: Vec<String>,
    pub(crate) jkt: Option<String>,
    pub(crate) act: Option<Value>,
    pub(crate) ttl: i64,
}

impl Shared {
    pub(crate) fn new(config: TestServerConfig, issuer: String) -> Shared {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let kid = parse_public_jwk(&public_jwk(key.verifying_key()))
            .map(|k| k.thumbprint)
            .unwrap_or_else(|_| "testkit".to_owned());
        let inner = Inner {
            next_grant: 1,
            grants: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            devices: HashMap::new(),
            as_nonces: Nonces::new(config.dpop_nonce_rotation),
            rs_nonces: Nonces::new(config.dpop_nonce_rotation),
            as_replay: ReplayCache::default(),
            rs_replay: ReplayCache::default(),
            assertion_replay: ReplayCache::default(),
        };
        Shared {
            latency: Mutex::new(config.latency),
            fault: Mutex::new(Fault {
                remaining: 0,
                status: 503,
                retry_after: None,
            }),
            config,
            issuer,
            key,
            kid,
            inner: Mutex::new(inner),
            counters: Counters::default(),
            registered: Mutex::default(),
            metadata_documents: Mutex::default(),
        }
    }

    pub(crate) fn inner(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// The client `client_id`: configured, registered at `/register`, or a client ID
    /// metadata document.
    pub(crate) fn client(&self, client_id: &str) -> Option<Cow<'_, TestClient>> {
        if let Some(c) = self
            .config
            .clients
            .iter()
            .find(|c| c.client_id == client_id)
        {
            return Some(Cow::Borrowed(c));
        }
        if let Some(c) = lock(&self.registered)
            .iter()
            .find(|c| c.client_id == client_id)
        {
            return Some(Cow::Owned(c.clone()));
        }
        self.metadata_document_client(client_id).map(Cow::Owned)
    }

    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub(crate) fn resource(&self) -> String {
        self.endpoint("/api")
    }

    /// The JWKS document.
    /// The server's public signing key as a JWK (with `kid`).
    pub(crate) fn public_jwk(&self) -> Value {
        let mut jwk = public_jwk(self.key.verifying_key());
        jwk["kid"] = json!(self.kid);
        jwk
    }

    /// Sign `claims` with the server's key; `header` gets `alg` and `kid`.
    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        let mut header = header.clone();
        header["alg"] = json!("ES256");
        header["kid"] = json!(self.kid);
        sign_jwt(&self.key, &header, claims)
    }

    pub(crate) fn jwks(&self) -> Value {
        let mut jwk = public_jwk(self.key.verifying_key());
        if let Some(o) = jwk.as_object_mut() {
            o.insert("kid".into(), json!(self.kid));
            o.insert("use".into(), json!("sig"));
            o.insert("alg".into(), json!("ES256"));
        }
        json!({ "keys": [jwk] })
    }

    /// Revoke a grant; counts it once.
    pub(crate) fn revoke_grant(&self, inner: &mut Inner, grant_id: u64) {
        if let Some(g) = inner.grants.get_mut(&grant_id) {
            if !g.revoked {
                g.revoked = true;
                bump(&self.counters.revoked_grants);
            }
        }
    }

    pub(crate) fn grant_active(inner: &Inner, grant_id: u64) -> bool {
        inner.grants.get(&grant_id).is_some_and(|g| !g.revoked)
    }

    pub(crate) fn new_grant(inner: &mut Inner) -> u64 {
        let id = inner.next_grant;
        inner.next_grant += 1;
        inner.grants.insert(id, Grant { revoked: false });
        id
    }

    /// Mint a refresh token for a grant.
    pub(crate) fn new_refresh(inner: &mut Inner, record: RefreshRecord) -> String {
        let token = random_token();
        inner.refresh.insert(token.clone(), record);
        token
    }

    /// Sign and record an access token; returns it with its `expires_in`.
    pub(crate) fn issue_access(&self, inner: &mut Inner, p: NewAccess<'_>) -> (String, i64) {
        let iat = now();
        let ttl = p.ttl.max(1);
        let exp = iat.saturating_add(ttl);
        let jti = random_token();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(p.sub));
        claims.insert("client_id".into(), json!(p.client_id));
        let aud = if p.aud.is_empty() {
            vec![self.issuer.clone()]
        } else {
            p.aud
        };
        claims.insert(
            "aud".into(),
            if aud.len() == 1 {
                json!(aud[0])
            } else {
                json!(aud)
            },
        );
        if !p.scope.is_empty() {
            claims.insert("scope".into(), json!(p.scope.to_string()));
        }
        claims.insert("iat".into(), json!(iat));
        claims.insert("exp".into(), json!(exp));
        claims.insert("jti".into(), json!(jti));
        if let Some(jkt) = &p.jkt {
            claims.insert("cnf".into(), json!({ "jkt": jkt }));
        }
        if let Some(act) = p.act {
            claims.insert("act".into(), act);
        }
        if let Some((_, may_act)) = self.config.may_act.iter().find(|(c, _)| c == p.client_id) {
            claims.insert("may_act".into(), may_act.clone());
        }
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": self.kid});
        let token = sign_jwt(&self.key, &header, &Value::Object(claims));
        inner.access.insert(
            jti,
            AccessRecord {
                grant_id: p.grant_id,
                client_id: p.client_id.to_owned(),
                revoked: false,
                exp,
            },
        );
        (token, ttl)
    }

    /// An access token of this server that is still active: its claims and its `jti`.
    pub(crate) fn active_access(&self, inner: &Inner, token: &str) -> Option<Map<String, Value>> {
        let jws = Jws::parse(token).ok()?;
        if jws.header.get("typ").and_then(Value::as_str) != Some("at+jwt") {
            return None;
        }
        if !jws.verify(self.key.verifying_key()) {
            return None;
        }
        if jws.str_claim("iss") != Some(self.issuer.as_str()) {
            return None;
        }
        let exp = jws.num_claim("exp")?;
        if exp <= now() {
            return None;
        }
        let jti = jws.str_claim("jti")?;
        let rec = inner.access.get(jti)?;
        if rec.revoked || rec.exp <= now() || !Self::grant_active(inner, rec.grant_id) {
            return None;
        }
        Some(jws.claims)
    }

    /// A signed access token of this server (active or not) and its `jti`.
    pub(crate) fn access_jti(&self, token: &str) -> Option<String> {
        let jws = Jws::parse(token).ok()?;
        if !jws.verify(self.key.verifying_key()) {
            return None;
        }
        jws.str_claim("jti").map(str::to_owned)
    }

    /// The refresh token's record when it can still be used.
    pub(crate) fn active_refresh<'a>(inner: &'a Inner, token: &str) -> Option<&'a RefreshRecord> {
        let rec = inner.refresh.get(token)?;
        (!rec.consumed && rec.exp > now() && Self::grant_active(inner, rec.grant_id)).then_some(rec)
    }
}
