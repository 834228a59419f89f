//! Discovery: authorization server metadata (RFC 8414 / OpenID Discovery), protected resource
//! metadata (RFC 9728) and `WWW-Authenticate` challenges (RFC 9110 §11.6.1).

mod resource_metadata;
mod server_metadata;

pub use crate::challenge::{
    challenges_from_headers, parse_challenges, Challenge, ChallengeError, ChallengeErrorKind,
};
pub use resource_metadata::{
    fetch_resource_metadata, resource_matches, resource_metadata_from_challenges,
    resource_metadata_url, MetadataPolicy, ResourceMetadata,
};
pub use server_metadata::{
    AuthorizationServer, Endpoint, MetadataPatch, MtlsEndpointAliases, ServerMetadata,
};
