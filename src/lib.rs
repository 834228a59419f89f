//! agent-oauth
