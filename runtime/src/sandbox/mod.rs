//! The sandbox: the host process that owns a container's microVM, and the library's
//! side of starting it and talking to it and to the agent inside. The two sides run
//! in different processes and live in two module trees; what one hands the other
//! sits between them.
//!
//! | module | runs in | what it does |
//! |---|---|---|
//! | [`client`] | the CLI, the shim | `lifecycle` (create starts the sandbox process; start, kill, ps, exec reach the agent through the sandbox's vsock socket; delete tears down), `control` (the guest cgroup: pause, resume, update, stats, OOM events), `pod` (a CRI pod's VM shared by its containers: roles, members, the pod's member directory) |
//! | [`process`] | `husk __sandbox`, `husk __exec` | `run` (the sandbox process: boot, create in the guest, report, wait, exit with the container's status), `vm` (virtiofsd and the VMM on a thread), `relay` (stdio or a host terminal to the agent's streams, signal forwarding), `pty` (the master over `--console-socket`), `exec_relay` (an exec'd process or a pod member's first process, attached or detached) |
//! | [`guest_spec`] | the CLI, the shim | the bundle's spec turned into the guest's: bind sources, namespaces, the pod's `/dev/shm` |
//! | [`plan`] | both | what a command hands the process it starts, and the report back |
//! | [`share`] | both | the virtio-fs share: the root file system and the spec's host binds |
//! | [`console_log`] | both | the bounded guest console log; the printable tail of a log for errors |
//! | [`timings`] | both | when the phases of a sandbox's start happen (logged by `husk --debug create`) |
//!
//! The client imports the process side's plan types (`VmPlan`, `ExecPlan`); the
//! process side imports nothing of the client.

pub mod client;
pub mod console_log;
pub mod guest_spec;
pub mod plan;
pub mod process;
pub mod share;
pub mod timings;

pub use client::control::{final_oom_kills, pause, resume, stats, update, watch_oom};
pub use client::lifecycle::{
    create, destroy, exec, exec_detached, kill, kill_exec, ps, resize_tty, start, wait,
    CreateOptions, ExecOptions, SandboxStdio,
};
pub use client::pod;
pub use process::hidden_main;

use crate::agent::ClientError;
use std::path::PathBuf;
use std::time::Duration;

/// Why the sandbox could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// virtiofsd could not serve the root file system.
    #[error("the root file system's virtiofsd")]
    Virtiofsd(#[from] husk_vmm::virtiofsd::VirtiofsdError),
    /// The virtio-fs device could not talk to virtiofsd.
    #[error("the root file system's virtio-fs device")]
    Fs(#[from] husk_vmm::devices::virtio::fs::FsError),
    /// The container's network could not be carried into the VM.
    #[error("the container's network")]
    Network(#[from] crate::network::NetworkError),
    /// The VM could not be built, or ended.
    #[error("{0}")]
    Vm(String),
    /// A host operation failed.
    #[error("cannot {0}")]
    Io(&'static str, #[source] std::io::Error),
    /// The agent refused or did not answer.
    #[error("cannot {0}")]
    Agent(String, #[source] ClientError),
    /// The engine's console socket could not take the terminal.
    #[error("console socket {}", .0.display())]
    ConsoleSocket(PathBuf, #[source] std::io::Error),
    /// `process.terminal` is set but no `--console-socket` was given.
    #[error("process.terminal is true but no --console-socket was given")]
    NoConsoleSocket,
    /// The guest did not get somewhere in time.
    #[error("the sandbox did not {0} within {1:?}")]
    Timeout(&'static str, Duration),
    /// The started process ended without reporting.
    #[error("the sandbox process exited before reporting (see sandbox.log and console.log in the container's state directory)")]
    DiedEarly,
}
