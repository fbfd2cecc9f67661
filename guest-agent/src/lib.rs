//! husk's in-guest agent.
//!
//! `husk-agent` runs as PID 1 inside every husk microVM. It brings the guest up
//! (pseudo filesystems, then the host's virtio-fs [`shares`]), serves the host/guest protocol over vsock ([`server`],
//! [`protocol`]), announces readiness on the serial console and ends the VM on request
//! or after a timeout. The protocol types live here so that the host side shares them.

pub mod cmdline;
pub mod console;
pub mod container;
pub mod devices;
pub mod mounts;
pub mod netlink;
pub mod network;
pub mod power;
pub mod procfs;
pub mod protocol;
pub mod server;
pub mod shares;

/// The line prefix the agent prints on the console once the guest is up.
///
/// Hosts (and tests) wait for a line starting with this prefix.
pub const READY_PREFIX: &str = "husk-agent: ready";

/// The line prefix the agent prints just before it ends the VM.
pub const POWEROFF_PREFIX: &str = "husk-agent: powering off";

/// The agent's version, as reported in the readiness line.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
