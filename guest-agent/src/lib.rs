//! husk's in-guest agent.
//!
//! `husk-agent` runs as PID 1 inside every husk microVM. This first version brings the
//! guest up (pseudo filesystems), announces readiness on the serial console and ends
//! the VM on request or after a timeout. Later versions serve the host/guest protocol
//! over vsock and start container processes; the protocol types will live here too so
//! that the host side shares them.

pub mod cmdline;
pub mod console;
pub mod devices;
pub mod mounts;
pub mod power;

/// The line prefix the agent prints on the console once the guest is up.
///
/// Hosts (and tests) wait for a line starting with this prefix.
pub const READY_PREFIX: &str = "husk-agent: ready";

/// The line prefix the agent prints just before it ends the VM.
pub const POWEROFF_PREFIX: &str = "husk-agent: powering off";

/// The agent's version, as reported in the readiness line.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
