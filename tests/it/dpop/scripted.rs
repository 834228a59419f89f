//! A scripted token endpoint: answers each request as the test's closure says, records every
//! request, and checks every DPoP proof it receives with an independent verifier (josekit over
//! OpenSSL, not the crate's ring / p256 code).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::support::prelude::{
    AuthorizationServer, ClientAuth, DpopKey, HttpTransport, OAuthClient, OAuthClientBuilder,
    PublicJwk, ServerMetadata,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::{jwt_header, jwt_payload, now};

/// One request the scripted server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub form: Vec<(String, String)>,
    /// Server clock (unix seconds) when it arrived.
    pub received_at: i64,
    /// The DPoP proof, verified: `Ok((header, claims))`, or why it was refused. `None` when the
    /// request had no `DPoP` header.
    pub proof: Option<Result<(Value, Value), String>>,
}

impl Recorded {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The verified proof's claims (panics when absent or refused).
    pub fn claims(&self) -> &Value {
        match &self.proof {
            Some(Ok((_, c))) => c,
            other => panic!("request without a valid DPoP proof: {other:?}"),
        }
    }

    /// The verified proof's header.
    pub fn proof_header(&self) -> &Value {
        match &self.proof {
            Some(Ok((h, _))) => h,
            other => panic!("request without a valid DPoP proof: {other:?}"),
        }
    }

    /// The `nonce` claim of the proof.
    pub fn nonce(&self) -> Option<&str> {
        self.claims().get("nonce").and_then(Value::as_str)
    }

    /// `iat` minus the arrival time.
    pub fn iat_drift(&self) -> i64 {
        self.claims()["iat"].as_i64().unwrap() - self.received_at
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub nonce: Option<String>,
    pub date: Option<SystemTime>,
}

impl Reply {
    /// 200 with a DPoP token.
    pub fn token(access_token: &str) -> Self {
        Reply::json(
            200,
            json!({"access_token": access_token, "token_type": "DPoP", "expires_in": 300}),
        )
    }

    /// `status` with an OAuth error body.
    pub fn error(status: u16, code: &str) -> Self {
        Reply::json(
            status,
            json!({"error": code, "error_description": "scripted"}),
        )
    }

    /// 400 `use_dpop_nonce` with `DPoP-Nonce: nonce`.
    pub fn use_nonce(nonce: &str) -> Self {
        Reply::error(400, "use_dpop_nonce").with_nonce(nonce)
    }

    pub fn json(status: u16, body: Value) -> Self {
        Reply {
            status,
            body,
            nonce: None,
            date: None,
        }
    }

    pub fn with_nonce(mut self, nonce: &str) -> Self {
        self.nonce = Some(nonce.to_owned());
        self
    }

    pub fn with_date(mut self, date: SystemTime) -> Self {
        self.date = Some(date);
        self
    }
}

type Script = Box<dyn Fn(usize, &Recorded) -> Reply + Send + Sync>;

struct ScriptState {
    /// The `htu` every proof must carry: the token endpoint without its query.
    htu: String,
    requests: Mutex<Vec<Recorded>>,
    jtis: Mutex<HashSet<String>>,
    script: Script,
}

/// The running server; stops when dropped.
pub struct Scripted {
    pub base: String,
    /// The advertised token endpoint (with a query, which `htu` must drop).
    pub token_endpoint: String,
    state: Arc<ScriptState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    /// Start a server answering request number `i` (from 0) with `script(i, &request)`.
    pub async fn start(script: impl Fn(usize, &Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(ScriptState {
            htu: format!("{base}/token"),
            requests: Mutex::new(Vec::new()),
            jtis: Mutex::new(HashSet::new()),
            script: Box::new(script),
        });
        let app = Router::new()
            .route("/token", post(token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Scripted {
            token_endpoint: format!("{base}/token?tenant=t1"),
            base,
            state,
            task,
        }
    }

    /// The server's metadata, as a client would have discovered it.
    pub fn metadata(&self) -> ServerMetadata {
        let doc = json!({
            "issuer": self.base,
            "token_endpoint": self.token_endpoint,
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "private_key_jwt", "none"],
            "dpop_signing_alg_values_supported": ["ES256"],
        });
        ServerMetadata::from_json(doc.to_string().as_bytes(), &self.base).unwrap()
    }

    /// A client builder for `agent` (`client_secret_basic`) with `key`.
    pub fn builder(&self, key: &DpopKey) -> OAuthClientBuilder {
        let server =
            AuthorizationServer::from_metadata(self.metadata(), HttpTransport::new().unwrap())
                .unwrap();
        OAuthClient::builder(server, "agent")
            .auth(ClientAuth::client_secret_basic("agent-secret"))
            .dpop(key.clone())
    }

    pub fn client(&self, key: &DpopKey) -> OAuthClient {
        self.builder(key).build()
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }

    /// Every request carried exactly one proof that passed every check, signed by `key`, with
    /// `iat` within 5 s of the arrival time.
    pub fn assert_proofs_valid(&self, key: &DpopKey) {
        let reqs = self.requests();
        assert!(!reqs.is_empty(), "no request received");
        for (i, r) in reqs.iter().enumerate() {
            match &r.proof {
                Some(Ok(_)) => {}
                other => panic!("request {i}: proof missing or refused: {other:?}"),
            }
            let jwk = PublicJwk::from_json(&r.proof_header()["jwk"]).unwrap();
            assert_eq!(
                &jwk,
                key.public_jwk(),
                "request {i}: proof signed by another key"
            );
            assert!(
                r.iat_drift().abs() <= 5,
                "request {i}: iat {} is {} s from now",
                r.claims()["iat"],
                r.iat_drift()
            );
        }
    }
}

async fn token(State(s): State<Arc<ScriptState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = url::form_urlencoded::parse(&body).into_owned().collect();
    let proof = {
        let mut values = headers.get_all("dpop").iter();
        match (values.next(), values.next()) {
            (None, _) => None,
            (Some(_), Some(_)) => Some(Err("more than one DPoP header".to_owned())),
            (Some(v), None) => Some(
                v.to_str()
                    .map_err(|_| "DPoP header is not ASCII".to_owned())
                    .and_then(|p| verify_proof(&s, p)),
            ),
        }
    };
    let rec = Recorded {
        form,
        received_at: now(),
        proof,
    };
    let reply = {
        let mut reqs = s.requests.lock().unwrap();
        let i = reqs.len();
        reqs.push(rec.clone());
        (s.script)(i, &rec)
    };
    let mut resp = (
        StatusCode::from_u16(reply.status).unwrap(),
        [
            ("content-type", "application/json"),
            ("cache-control", "no-store"),
        ],
        reply.body.to_string(),
    )
        .into_response();
    if let Some(n) = &reply.nonce {
        resp.headers_mut()
            .insert("dpop-nonce", HeaderValue::from_str(n).unwrap());
    }
    if let Some(d) = reply.date {
        resp.headers_mut().insert(
            "date",
            HeaderValue::from_str(&httpdate::fmt_http_date(d)).unwrap(),
        );
    }
    resp
}

/// RFC 9449 §4.3 checks, with josekit verifying the signature against the header's `jwk`.
fn verify_proof(s: &ScriptState, proof: &str) -> Result<(Value, Value), String> {
    let header = jwt_header(proof);
    if header["typ"] != "dpop+jwt" {
        return Err(format!("typ is {}", header["typ"]));
    }
    if header["alg"] != "ES256" {
        return Err(format!("alg is {}", header["alg"]));
    }
    let jwk = header.get("jwk").ok_or("no jwk")?;
    if jwk.get("d").is_some() {
        return Err("jwk has a private member".into());
    }
    let jwk = josekit::jwk::Jwk::from_bytes(jwk.to_string().as_bytes())
        .map_err(|e| format!("jwk: {e}"))?;
    let verifier = josekit::jws::ES256
        .verifier_from_jwk(&jwk)
        .map_err(|e| format!("verifier: {e}"))?;
    let (payload, _) = josekit::jws::deserialize_compact(proof, &verifier)
        .map_err(|e| format!("signature: {e}"))?;
    let claims: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
    assert_eq!(claims, jwt_payload(proof));
    if claims["htm"] != "POST" {
        return Err(format!("htm is {}", claims["htm"]));
    }
    if claims["htu"] != s.htu.as_str() {
        return Err(format!("htu is {}, expected {}", claims["htu"], s.htu));
    }
    if !claims["iat"].is_i64() {
        return Err(format!("iat is not an integer: {}", claims["iat"]));
    }
    let jti = claims["jti"].as_str().ok_or("no jti")?;
    if jti.len() < 22 {
        return Err(format!("jti too short: {jti}"));
    }
    if !s.jtis.lock().unwrap().insert(jti.to_owned()) {
        return Err(format!("jti {jti} reused"));
    }
    Ok((header, claims))
}
