//! Workload identity and ID-JAGs against node oidc-provider.
