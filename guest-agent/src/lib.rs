//! husk's in-guest agent.
//!
//! `husk-agent` runs as PID 1 inside every husk microVM. It brings the guest up
//! (pseudo filesystems, then the host's virtio-fs [`shares`]), serves the host/guest protocol over vsock ([`server`];
//! the protocol's types are in the shared `husk-protocol` crate), announces readiness
//! on the serial console and ends the VM on request or after a timeout.

pub mod cmdline;
pub mod console;
pub mod container;
pub mod devices;
pub mod mounts;
pub mod network;
pub mod power;
pub mod procfs;
pub mod server;
pub mod shares;

/// The protocol server's connection handler and what it needs, for a host-side test
/// that runs the real handler in its own process (`husk-tests`' `agent_client`).
pub use server::log::ConsoleLog;
pub use server::{handle_connection, ConnError, Context};
