//! Discovery: authorization server metadata (RFC 8414 / OpenID Discovery), protected resource
//! metadata (RFC 9728), `WWW-Authenticate` challenges (RFC 9110 §11.6.1) and the server's
//! signing keys (RFC 7517 JWK Set at `jwks_uri`, [`Jwks`]).

pub(crate) mod jwks;
pub(crate) mod resource_metadata;
pub(crate) mod server_metadata;
mod trust;

pub use crate::challenge::{
    challenges_from_headers, parse_challenges, Challenge, ChallengeError, ChallengeErrorKind,
};
pub use jwks::{Jwks, JwksConfig};
pub(crate) use resource_metadata::ResourceMetadata;
pub use resource_metadata::{
    discover_resource_metadata, fetch_resource_metadata, resource_matches,
    resource_metadata_from_challenges, resource_metadata_url, MetadataPolicy,
};
pub(crate) use server_metadata::{AuthorizationServer, ServerMetadata};
pub use server_metadata::{Endpoint, MetadataPatch, MtlsEndpointAliases};
pub(crate) use trust::choose_issuer;
pub use trust::TrustPolicy;
