//! [`RedisStore`]: grants shared by a fleet of replicas through Redis (feature `redis`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Script, Value};
use zeroize::Zeroizing;

use super::file::format::Record;
use super::file::record;
use super::{async_trait, SealKey, StoreLock, StoreOutcome, StoredGrant, TokenStore, Versioned};
use crate::error::{Error, Result};

/// Compare-and-swap of a grant: `KEYS[1]` is the grant's hash (`v`: its last version, never
/// reused; `d`: the encoded grant, absent once removed); `ARGV[1]` the expected version (`""`:
/// the key must have no value), `ARGV[2]` the new encoded grant. Answers `{1, version}` when
/// written, else `{0, version[, current]}`.
const CAS: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local d = redis.call('HGET', KEYS[1], 'd')
local exp = nil
if ARGV[1] ~= '' then exp = tonumber(ARGV[1]) end
local cur = nil
if d then cur = v end
if cur ~= exp then
  if d then return {0, v, d} end
  return {0, v}
end
redis.call('HSET', KEYS[1], 'v', v + 1, 'd', ARGV[2])
return {1, v + 1}
";

/// Conditional removal: as [`CAS`], `ARGV[1]` `""` removes whatever is there.
const REMOVE: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local d = redis.call('HGET', KEYS[1], 'd')
if (not d) and ARGV[1] == '' then return {1, v} end
local exp = v
if ARGV[1] ~= '' then exp = tonumber(ARGV[1]) end
local cur = nil
if d then cur = v end
if cur ~= exp then
  if d then return {0, v, d} end
  return {0, v}
end
redis.call('HDEL', KEYS[1], 'd')
redis.call('HSET', KEYS[1], 'v', v + 1)
return {1, v + 1}
";

/// Extend the lease of `KEYS[1]` to `ARGV[2]` ms if `ARGV[1]` still holds it.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// Release `KEYS[1]` if `ARGV[1]` still holds it (compare and delete).
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// How long a waiting `lock` sleeps between attempts (with jitter up to the same again).
const LOCK_POLL: Duration = Duration::from_millis(25);

/// A [`TokenStore`] in Redis, shared by every replica of an agent platform: the lock is a
/// lease (`SET NX PX`, renewed while held, released by compare-and-delete), writes are
/// compare-and-swap scripts run by the server, and a replica that dies mid-refresh loses its
/// lease when it runs out.
///
/// ```no_run
/// # async fn run() -> agent_oauth::Result<()> {
/// use std::sync::Arc;
/// use agent_oauth::store::RedisStore;
/// use agent_oauth::store::SealKey;
/// let key = SealKey::from_base64(&std::env::var("TOKEN_SEAL_KEY").unwrap_or_default())?;
/// let store = RedisStore::builder("redis://127.0.0.1:6379/")
///     .prefix("billing-agent")
///     .seal_key(key)
///     .connect()
///     .await?;
/// let agent = agent_oauth::Agent::builder()
///     .issuer("https://as.example.com")
///     .client_id("billing-agent")
///     .token_store(Arc::new(store))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
///
/// # Keys
///
/// Under the configured prefix (default `agent-oauth`), each grant has
/// `<prefix>:{<hash>}:grant` (a hash: `v`, its last version, and `d`, the grant in the
/// [`FileStore`](super::FileStore) record format, whose own `version` member is not read),
/// `<prefix>:{<hash>}:lock` (the lease) and, for records, `<prefix>:{<hash>}:record`. `<hash>`
/// is the hex SHA-256 of the crate's key (truncated to 128 bits): the braces are a Redis
/// Cluster hash tag, so a grant's keys live in one slot and its scripts touch one node.
///
/// # Failures
///
/// The connection manager reconnects on its own. While Redis is unreachable every method
/// fails with [`Error::Store`] after the response timeout (default 2 s): no refresh is sent
/// without the lock, and the agent keeps serving the access tokens it has cached until they
/// expire. Stored bytes are untrusted: a value that does not decode is an [`Error::Store`]
/// that quotes nothing of it.
///
/// # Security
///
/// Tokens and records are sealed with the [`SealKey`] given to
/// [`seal_key`](RedisStoreBuilder::seal_key) (or stored in clear after an explicit
/// [`store_unsealed`](RedisStoreBuilder::store_unsealed)). Protect the Redis instance all the
/// same (authentication, TLS, network): whoever can write to it can delete grants.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    prefix: String,
    lease: Option<Duration>,
    seal: Option<SealKey>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// Configures a [`RedisStore`]; [`connect`](Self::connect) reports the first problem.
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    url: String,
    prefix: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    lease: Option<Duration>,
    seal: Seal,
}

/// What the builder was told about sealing.
#[derive(Debug, Clone)]
enum Seal {
    Unset,
    Key(SealKey),
    Off,
}

impl RedisStore {
    /// Configure a store at `url` (`redis://host:port/db`, `rediss://` for TLS when the
    /// `redis` crate is built with it, `redis+unix:///path`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            prefix: "agent-oauth".into(),
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            lease: None,
            seal: Seal::Unset,
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    fn key(&self, key: &str, what: &str) -> String {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(key.as_bytes());
        let tag: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:{{{tag}}}:{what}", self.inner.prefix)
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.conn.clone()
    }

    /// The grant encoded for the `d` field.
    fn encode(&self, key: &str, value: &StoredGrant) -> Result<Zeroizing<Vec<u8>>> {
        Record {
            version: 1,
            key: key.to_owned(),
            grant: Some(value.clone()),
        }
        .encode(self.inner.seal.as_ref())
    }

    /// A stored `d` field at `version`, which must belong to `key`.
    fn decode(&self, key: &str, version: u64, bytes: &[u8]) -> Result<Versioned<StoredGrant>> {
        let record = Record::decode(bytes, self.inner.seal.as_ref())?;
        if record.key != key {
            return Err(Error::Store(
                "stored grant belongs to another key (hash collision or tampering)".into(),
            ));
        }
        let value = record
            .grant
            .ok_or_else(|| Error::Store("stored grant is a removal marker".into()))?;
        Ok(Versioned { value, version })
    }

    /// The answer of [`CAS`] or [`REMOVE`].
    fn outcome(&self, key: &str, answer: &Value) -> Result<StoreOutcome> {
        let bad = || Error::Store("unexpected answer from the compare-and-swap script".into());
        let Value::Array(items) = answer else {
            return Err(bad());
        };
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => u64::try_from(*n).map_err(|_| bad()),
            _ => Err(bad()),
        };
        let version = int(items.get(1))?;
        if int(items.first())? == 1 {
            return Ok(StoreOutcome::Written { version });
        }
        let current = match items.get(2) {
            Some(Value::BulkString(d)) => Some(self.decode(key, version, d)?),
            None => None,
            Some(_) => return Err(bad()),
        };
        Ok(StoreOutcome::Conflict { current })
    }

    async fn try_lock(&self, lock_key: &str, token: &str, lease: Duration) -> Result<bool> {
        let ms = lease_ms(lease);
        let set: Option<String> = ::redis::cmd("SET")
            .arg(lock_key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_err("lock", &e))?;
        Ok(set.is_some())
    }
}

fn lease_ms(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// A Redis error as a store error: the operation and the kind of failure, never a value.
fn redis_err(op: &str, e: &::redis::RedisError) -> Error {
    let why = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal() {
        "Redis is unreachable".to_owned()
    } else {
        format!("{:?}", e.kind())
    };
    Error::Store(format!("redis {op}: {why}"))
}

impl RedisStoreBuilder {
    /// Put every key under `prefix` (default `agent-oauth`): replicas of one platform share a
    /// prefix, unrelated ones use their own. It must not contain `{` or `}` (the hash tag).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a connection attempt may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a command may wait for its answer (default 2 s): the longest a store call
    /// blocks a refresh while Redis is unreachable.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Give every lock this lease instead of the one the caller asks for
    /// ([`REFRESH_LEASE`](super::REFRESH_LEASE) for refreshes): how long the fleet waits for a
    /// replica that died holding a grant's lock. Keep it above the longest token request.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// Seal the tokens and records written with `key` (ChaCha20-Poly1305, bound to each
    /// value's key and field), and open sealed ones when reading. Every replica needs the same
    /// key. One of this or [`store_unsealed`](Self::store_unsealed) must be chosen.
    pub fn seal_key(mut self, key: SealKey) -> Self {
        self.seal = Seal::Key(key);
        self
    }

    /// Store tokens in clear: an explicit choice, for a Redis whose data is protected
    /// otherwise (sealed values written earlier can then not be read).
    pub fn store_unsealed(mut self) -> Self {
        self.seal = Seal::Off;
        self
    }

    /// Connect.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or prefix, or when neither
    /// [`seal_key`](Self::seal_key) nor [`store_unsealed`](Self::store_unsealed) was chosen;
    /// [`Error::Store`] when Redis cannot be reached.
    pub async fn connect(self) -> Result<RedisStore> {
        let seal =
            match self.seal {
                Seal::Unset => return Err(Error::config(
                    "RedisStore: seal tokens with seal_key(..), or opt out with store_unsealed()",
                )),
                Seal::Key(k) => Some(k),
                Seal::Off => None,
            };
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(Error::config(
                "the Redis key prefix must be non-empty and contain no `{` or `}`",
            ));
        }
        let client = ::redis::Client::open(self.url.as_str())
            .map_err(|e| Error::config(format!("bad Redis URL: {:?}", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(Some(self.response_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(1));
        let conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| redis_err("connect", &e))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                prefix: self.prefix,
                lease: self.lease,
                seal,
            }),
        })
    }
}

/// Releases a held Redis lease when dropped (compare and delete, in the background).
struct RedisLease {
    store: RedisStore,
    lock_key: String,
    token: String,
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to send from: the lease runs out on its own.
            return;
        };
        let (store, key, token) = (
            self.store.clone(),
            std::mem::take(&mut self.lock_key),
            std::mem::take(&mut self.token),
        );
        rt.spawn(async move {
            let released: std::result::Result<i64, _> = Script::new(RELEASE)
                .key(&key)
                .arg(&token)
                .invoke_async(&mut store.conn())
                .await;
            if let Err(e) = released {
                tracing::debug!(target: "agent_oauth", error = %redis_err("unlock", &e),
                    "lease left to run out");
            }
        });
    }
}

#[async_trait]
impl TokenStore for RedisStore {
    async fn load(&self, key: &str) -> Result<Option<Versioned<StoredGrant>>> {
        let (v, d): (Option<u64>, Option<Vec<u8>>) = ::redis::cmd("HMGET")
            .arg(self.key(key, "grant"))
            .arg("v")
            .arg("d")
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_err("load", &e))?;
        let d = d.map(Zeroizing::new);
        match (v, d) {
            (Some(v), Some(d)) => self.decode(key, v, &d).map(Some),
            (_, None) => Ok(None),
            (None, Some(_)) => Err(Error::Store("stored grant has no version".into())),
        }
    }

    async fn store(
        &self,
        key: &str,
        value: &StoredGrant,
        expected: Option<u64>,
    ) -> Result<StoreOutcome> {
        let payload = self.encode(key, value)?;
        let answer: Value = Script::new(CAS)
            .key(self.key(key, "grant"))
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(&payload[..])
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_err("store", &e))?;
        self.outcome(key, &answer)
    }

    async fn remove(&self, key: &str, expected: Option<u64>) -> Result<StoreOutcome> {
        let answer: Value = Script::new(REMOVE)
            .key(self.key(key, "grant"))
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await
            .map_err(|e| redis_err("remove", &e))?;
        self.outcome(key, &answer)
    }

    async fn lock(&self, key: &str, lease: Duration) -> Result<StoreLock> {
        let lease = self.inner.lease.unwrap_or(lease);
        let lock_key = self.key(key, "lock");
        let token = crate::secret::random_id();
        while !self.try_lock(&lock_key, &token, lease).await? {
            let jitter = Duration::from_millis(u64::from(rand::random::<u8>()) % 25);
            tokio::time::sleep(LOCK_POLL + jitter).await;
        }
        let (lock, keeper) = StoreLock::leased(RedisLease {
            store: self.clone(),
            lock_key: lock_key.clone(),
            token: token.clone(),
        });
        let store = self.clone();
        let ms = lease_ms(lease);
        tokio::spawn(keeper.keep(lease, move || {
            let (store, lock_key, token) = (store.clone(), lock_key.clone(), token.clone());
            async move {
                let renewed: i64 = Script::new(RENEW)
                    .key(&lock_key)
                    .arg(&token)
                    .arg(ms)
                    .invoke_async(&mut store.conn())
                    .await
                    .map_err(|e| redis_err("renew", &e))?;
                Ok(renewed == 1)
            }
        }));
        Ok(lock)
    }

    async fn load_record(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let bytes: Option<Vec<u8>> = ::redis::cmd("GET")
            .arg(self.key(key, "record"))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| redis_err("load record", &e))?;
        let Some(bytes) = bytes.map(Zeroizing::new) else {
            return Ok(None);
        };
        Ok(Some(
            record::decode(&bytes, key, self.inner.seal.as_ref())?.to_vec(),
        ))
    }

    async fn store_record(&self, key: &str, value: Option<&[u8]>) -> Result<bool> {
        let rkey = self.key(key, "record");
        let mut conn = self.conn();
        match value {
            Some(v) => {
                let encoded = record::encode(key, v, self.inner.seal.as_ref())?;
                ::redis::cmd("SET")
                    .arg(&rkey)
                    .arg(&encoded[..])
                    .query_async::<()>(&mut conn)
                    .await
            }
            None => {
                ::redis::cmd("DEL")
                    .arg(&rkey)
                    .query_async::<()>(&mut conn)
                    .await
            }
        }
        .map_err(|e| redis_err("store record", &e))?;
        Ok(true)
    }
}
