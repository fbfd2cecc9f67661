//! The sandbox: the host process that owns a container's microVM, and the runtime
//! commands' side of talking to it and to the agent inside.
//!
//! | module | what it does |
//! |---|---|
//! | [`process`] | the sandbox process itself (`husk __sandbox`) |
//! | [`vm`] | virtiofsd and the VM, in the sandbox process |
//! | [`share`] | the virtio-fs share: the root file system and the spec's host binds, the spec's bind sources rewritten for the guest |
//! | [`relay`] | stdio between host descriptors (or a host terminal) and the guest |
//! | [`pty`] | the host terminal sent over `--console-socket` |
//! | [`exec`] | `exec`, attached or through a detached relay process (`husk __exec`) |
//! | [`lifecycle`] | the commands' side: `create` starts the sandbox process; `start`, `kill`, `ps`, `exec` reach the agent through the sandbox's vsock socket; `delete` tears down |
//! | [`control`] | the container's cgroup in the guest: `pause`, `resume`, `update`, `stats`, OOM events |
//! | [`plan`] | what a command hands the process it starts, and the report back |
//! | [`pod`] | pods: a CRI sandbox's VM shared by the pod's containers |
//! | [`console_log`] | the bounded guest console log |
//! | [`timings`] | when the phases of a sandbox's start happen (logged by `husk --debug create`) |

pub mod console_log;
pub mod control;
pub mod exec;
pub mod lifecycle;
pub mod namespaces;
pub mod plan;
pub mod pod;
pub mod process;
pub mod pty;
pub mod relay;
pub mod share;
pub mod timings;
pub mod vm;

pub use control::{final_oom_kills, pause, resume, stats, update, watch_oom};
pub use lifecycle::{
    create, destroy, exec, exec_detached, hidden_main, kill, kill_exec, ps, resize_tty, start,
    wait, CreateOptions, ExecOptions, SandboxStdio,
};

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
