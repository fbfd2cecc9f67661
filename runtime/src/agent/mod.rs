//! The client of `husk-agent`, over the VMM's hybrid vsock Unix socket.
//!
//! The protocol is described in `docs/protocol.md`; its types come from
//! [`husk_agent::protocol`].

mod client;
mod deadline;
mod error;
mod hybrid;

pub use client::{AgentClient, Timeouts};
pub use error::ClientError;
pub use hybrid::connect_port;

#[cfg(test)]
mod tests;
