//! The lines the agent prints on the guest's serial console that hosts (the sandbox
//! process, the tests and the benchmarks) wait for.

/// The line prefix the agent prints once the guest is up.
pub const READY_PREFIX: &str = "husk-agent: ready";

/// The line prefix the agent prints just before it ends the VM.
pub const POWEROFF_PREFIX: &str = "husk-agent: powering off";

/// Where the agent mounts the pod's shared `/dev/shm` tmpfs in the guest; the host
/// binds the pod's containers' `/dev/shm` to it.
pub const POD_SHM: &str = "/run/husk/shm";

/// husk's version: the agent reports it in its readiness line and handshake.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
