//! Settings that weaken security. Each is for tests or closed networks only, and each is
//! greppable by this module's name.

use crate::transport::TransportConfig;

/// Allow plain `http://` URLs to any host (loopback hosts never need this).
///
/// # Security
/// Client secrets, codes and tokens then cross the network in clear text.
pub fn allow_insecure_http(config: &mut TransportConfig) {
    config.set_allow_insecure_http(true);
}

/// Let an agent use plain `http://` URLs to any host (loopback hosts never need this).
///
/// # Security
/// Client secrets, codes and tokens then cross the network in clear text.
pub fn agent_allow_insecure_http(builder: crate::AgentBuilder) -> crate::AgentBuilder {
    builder.allow_insecure_http()
}
