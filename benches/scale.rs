//! Scale: a token cache holding many tokens.
//!
//! - `scale/hit_among_<n>` against `scale/hit_alone`: a key lookup and hit (what
//!   `Agent::access_token` does per call) on a cache holding `n` tokens of distinct keys
//!   (principals × resources), against the same key in a cache of one (target ≤ 1.5x).
//! - `memory scale/token_among_<n>`: bytes the cache keeps per token beyond the token string
//!   itself (target ≤ 2 KB), with the cost of filling the cache.
//!
//! `scale/child_spawn` (many child agents) is in `benches/agent.rs`, beside the test server.
//!
//! `n` is 100,000 (`scale/hit_among_100k`) unless `SCALE_TOKENS` says otherwise.
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

#[path = "support/alloc.rs"]
mod alloc;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use agent_oauth::cache::{CacheConfig, TokenCache, TokenKey, TokenSource};
use agent_oauth::{AccessToken, Binding, Scope, TokenSet, TokenType};
use criterion::{criterion_group, criterion_main, Criterion};

const ISSUER: &str = "https://as.example";
/// Resources per principal: keys are `RESOURCES` resources for each of `n / RESOURCES` subjects.
const RESOURCES: usize = 10;
/// A DPoP key thumbprint, as every key of a DPoP agent carries one (43 characters).
const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

/// Tokens cached by default. A cache bounded this high is sharded: an insert copies one
/// shard's table of (hash, entry pointer) slots, so the fill stays near linear.
const DEFAULT_TOKENS: usize = 100_000;

fn token_count() -> usize {
    std::env::var("SCALE_TOKENS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 2)
        .unwrap_or(DEFAULT_TOKENS)
}

/// `10k` for 10,000: the bench names say how many tokens there were.
fn label(n: usize) -> String {
    if n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

fn key(i: usize) -> TokenKey {
    TokenKey::new(ISSUER, "agent")
        .with_scope(Scope::parse("read write"))
        .with_binding(Binding::dpop(JKT))
        .with_subject(format!("user-{:06}", i / RESOURCES))
        .with_resource(format!("https://api{}.example/v1", i % RESOURCES))
}

/// A token valid for an hour, never in its refresh window while the bench runs.
fn fresh_token(secret: String, token_type: TokenType) -> TokenSet {
    let now = SystemTime::now();
    let mut t = TokenSet::new(AccessToken::new(secret), token_type, now);
    t.expires_at = Some(now + Duration::from_secs(3600));
    t
}

/// An opaque 64-character token, distinct per key.
fn token_secret(i: usize) -> String {
    format!("tok-{i:060}")
}

/// The source every entry shares; never called (every entry holds a fresh token).
fn idle_source() -> Arc<dyn TokenSource> {
    Arc::new(|_: Option<TokenSet>| async {
        Err::<TokenSet, _>(agent_oauth::Error::Config("not used".into()))
    })
}

fn config(max_entries: usize) -> CacheConfig {
    let mut c = CacheConfig::default();
    c.max_entries = max_entries;
    c
}

/// A cache holding `n` tokens of distinct keys. Prints what filling it kept and cost.
fn filled(n: usize) -> TokenCache {
    let cache = TokenCache::new(config(n + 1));
    let source = idle_source();
    // Built before counting, so that only the cache's own bytes are counted...
    let tokens: Vec<TokenSet> = (0..n)
        .map(|i| fresh_token(token_secret(i), TokenType::Dpop))
        .collect();
    let token_bytes: usize = tokens.iter().map(|t| t.access_token.secret().len()).sum();
    let start = Instant::now();
    let ((), counted) = alloc::measure(|| {
        for (i, t) in tokens.into_iter().enumerate() {
            // ...but a key is built per insert, as a caller does.
            let h = cache.handle(&key(i), || source.clone());
            h.insert(t);
        }
    });
    let fill = start.elapsed();
    assert_eq!(cache.len(), n);
    // The token strings were allocated before counting: what the cache kept is all overhead.
    let kept = counted.net_bytes() as f64 / n as f64;
    let token = token_bytes as f64 / n as f64;
    eprintln!(
        "memory scale/token_among_{}: {kept:.0} B/token beyond the token, {token:.0} B token \
         string, {:.0} B/insert allocated, {:.1} us/insert to fill, {n} tokens",
        label(n),
        counted.bytes as f64 / n as f64,
        fill.as_secs_f64() * 1e6 / n as f64,
    );
    cache
}

fn hit(c: &mut Criterion) {
    let n = token_count();
    let probe = key(n / 2);
    let lookup_and_hit = |cache: &TokenCache| {
        let h = cache.get(&probe).unwrap();
        let t = h.peek().unwrap();
        black_box(t.token().access_token.secret().len())
    };

    // Filled first, whatever the filter: this binary is about it (and criterion's `--quick`
    // would take a fill inside a bench for the bench).
    let among = filled(n);

    let alone = TokenCache::new(config(2));
    alone
        .handle(&probe, idle_source)
        .insert(fresh_token(token_secret(n / 2), TokenType::Dpop));
    let mut ran = false;
    c.bench_function("scale/hit_alone", |b| {
        ran = true;
        b.iter(|| lookup_and_hit(&alone))
    });
    if ran {
        alloc::per_op("scale/hit_alone", 100_000, || lookup_and_hit(&alone));
    }

    let name = format!("scale/hit_among_{}", label(n));
    let mut ran = false;
    c.bench_function(&name, |b| {
        ran = true;
        b.iter(|| lookup_and_hit(&among))
    });
    if ran {
        alloc::per_op(&name, 100_000, || lookup_and_hit(&among));
    }
}

criterion_group!(benches, hit);
criterion_main!(benches);
