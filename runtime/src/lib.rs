//! husk's host side: the OCI runtime's library.
//!
//! Today it holds the client of the in-guest agent ([`agent`]); the OCI CLI, bundle
//! handling and the sandbox process arrive later.

pub mod agent;
pub mod sandbox;
