//! The client of `husk-agent`, over the VMM's hybrid vsock Unix socket or any [`Transport`].
//!
//! The protocol is described in `docs/protocol.md`; its types come from
//! [`husk_protocol`].

mod client;
mod containers;
mod deadline;
mod error;
mod hybrid;
mod stream;
mod transport;

pub use client::{AgentClient, Timeouts};
pub use error::ClientError;
pub use hybrid::connect_port;
pub use stream::{open_stream, stream_hello, StreamTarget};
pub use transport::Transport;

#[cfg(test)]
mod tests;
