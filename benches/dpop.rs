//! DPoP proof cost against one raw ES256 signature with the same key.
//!
//! `dpop/proof_*` must stay within 1.10x of `dpop/raw_sign_*`: a proof is one signature plus
//! string building. The raw signature signs a message as long as a real proof's signing input.
//! `dpop/request_headers_ring` is the whole per-request cost: cache hit, `ath`, clock, proof.

// `criterion_group!` generates an undocumented function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use agent_oauth::cache::{CacheConfig, TokenCache, TokenKey, TokenSource};
use agent_oauth::dpop::ath;
use agent_oauth::{AccessToken, DpopKey, TokenSet, TokenType};
use criterion::{criterion_group, criterion_main, Criterion};

const TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const NONCE: &str = "eyJ7S_zG.eyJH0-Z.HX4w-7v";

fn bench_key(c: &mut Criterion, key: &DpopKey, backend: &str) {
    let url =
        url::Url::parse("https://resource.example.org/protectedresource?x=1").expect("static URL");
    let a = ath(TOKEN);
    let sample = key
        .proof("GET", &url, 1_700_000_000, Some(NONCE), Some(&a))
        .expect("proof");
    let dot = sample.rfind('.').expect("compact JWS");
    let signing_input = sample.as_bytes()[..dot].to_vec();

    c.bench_function(&format!("dpop/raw_sign_{backend}"), |b| {
        b.iter(|| key.signer().sign(black_box(&signing_input)).expect("sign"))
    });
    c.bench_function(&format!("dpop/proof_{backend}"), |b| {
        b.iter(|| {
            key.proof(
                black_box("GET"),
                black_box(&url),
                black_box(1_700_000_000),
                black_box(Some(NONCE)),
                black_box(Some(a.as_str())),
            )
            .expect("proof")
        })
    });
}

fn dpop(c: &mut Criterion) {
    let ring = DpopKey::generate();
    let p256 = ring.with_p256_signer().expect("p256 signer");
    bench_key(c, &ring, "ring");
    bench_key(c, &p256, "p256");
    c.bench_function("dpop/ath", |b| b.iter(|| ath(black_box(TOKEN))));

    // What a protected request costs before it is sent: a cache hit for the token, then the
    // proof with the current time, the token's `ath` and the resource's nonce.
    let cache = TokenCache::new(CacheConfig::default());
    let handle = cache.handle(&TokenKey::new("https://as.example", "agent"), || {
        Arc::new(|_: Option<TokenSet>| async {
            Err::<TokenSet, _>(agent_oauth::Error::Config("not used".into()))
        }) as Arc<dyn TokenSource>
    });
    let now = SystemTime::now();
    let mut token = TokenSet::new(AccessToken::new(TOKEN), TokenType::Dpop, now);
    token.expires_at = Some(now + Duration::from_secs(3600));
    handle.insert(token);
    let url = url::Url::parse("https://resource.example.org/protectedresource").expect("URL");
    c.bench_function("dpop/request_headers_ring", |b| {
        b.iter(|| {
            let t = handle.peek().expect("hit");
            let iat = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let ath = ath(t.token().access_token.secret());
            ring.proof(
                black_box("GET"),
                black_box(&url),
                iat,
                black_box(Some(NONCE)),
                Some(&ath),
            )
            .expect("proof")
        })
    });
}

criterion_group!(benches, dpop);
criterion_main!(benches);
