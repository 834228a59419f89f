//! Placeholder until the DPoP module lands.
#![allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    missing_debug_implementations
)]
use crate::error::Result;
#[derive(Clone, Debug)]
pub struct DpopKey;
impl DpopKey {
    pub fn generate() -> Self {
        DpopKey
    }
    pub fn thumbprint(&self) -> &str {
        ""
    }
    pub fn proof(
        &self,
        _htm: &str,
        _htu: &url::Url,
        _iat: i64,
        _nonce: Option<&str>,
        _ath: Option<&str>,
    ) -> Result<String> {
        Ok(String::new())
    }
}
#[derive(Debug, Default)]
pub struct NonceCache;
impl NonceCache {
    pub fn new() -> Self {
        NonceCache
    }
    pub fn get(&self, _url: &url::Url) -> Option<String> {
        None
    }
    pub fn update_from_headers(&self, _url: &url::Url, _h: &http::HeaderMap) -> Option<String> {
        None
    }
}
pub fn ath(_t: &str) -> String {
    String::new()
}
