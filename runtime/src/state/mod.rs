//! The state of containers, kept on disk under `--root` (see [`Store`]).
//!
//! Layout: `ROOT/<id>/state.json` (a [`ContainerState`]), `ROOT/<id>/lock` (the `flock`
//! that serialises commands on one container), and room beside them for the sandbox
//! process's sockets.

mod id;
mod liveness;
mod store;
#[cfg(test)]
pub(crate) mod tests;

pub use id::validate_id;
pub use liveness::{process_start_time, ProcessState};
pub use store::{Lock, Store};

use crate::config::SandboxConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The OCI version husk reports in `state` and writes in `spec`.
pub const OCI_VERSION: &str = "1.2.0";

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is running: the sandbox is being booted.
    Creating,
    /// Created, waiting for `start`.
    Created,
    /// Its init process runs.
    Running,
    /// Its init process has exited (or its sandbox died).
    Stopped,
    /// Frozen (not supported yet).
    Paused,
}

impl Status {
    /// The lowercase name, as the OCI state and runc print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Paused => "paused",
        }
    }
}

impl Status {
    /// `start` applies: the container is created and waits for it.
    pub fn can_start(self) -> bool {
        self == Status::Created
    }

    /// `kill` reaches the container's process: created, running, or paused (as with
    /// runc, SIGKILL reaches a paused container; other signals wait for `resume`).
    pub fn can_kill(self) -> bool {
        self.has_sandbox()
    }

    /// `pause` applies: only a running container (husk's state would not remember
    /// that a paused created one still waits for `start`).
    pub fn can_pause(self) -> bool {
        self == Status::Running
    }

    /// `resume` applies: the container is paused.
    pub fn can_resume(self) -> bool {
        self == Status::Paused
    }

    /// `exec` applies: the container runs (a paused one's cgroup is frozen, so the
    /// new process could not run).
    pub fn can_exec(self) -> bool {
        self == Status::Running
    }

    /// `delete` applies: a running or paused container needs `force`.
    pub fn can_delete(self, force: bool) -> bool {
        force || !matches!(self, Status::Running | Status::Paused)
    }

    /// The container's VM is up and its agent can be asked (`update`, `ps`,
    /// `events`): created, running or paused.
    pub fn has_sandbox(self) -> bool {
        matches!(self, Status::Created | Status::Running | Status::Paused)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the store keeps about one container (`ROOT/<id>/state.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerState {
    /// The container's id.
    pub id: String,
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The root filesystem (absolute), from the bundle's `root.path`.
    #[serde(default)]
    pub rootfs: PathBuf,
    /// The status as last recorded; see [`ContainerState::observed_status`].
    pub status: Status,
    /// The sandbox process (what `--pid-file` gets).
    pub pid: Option<i32>,
    /// Field 22 of `/proc/<pid>/stat` of the sandbox process, to detect pid reuse.
    pub pid_start_time: Option<u64>,
    /// When the container was created, RFC 3339.
    pub created: String,
    /// The user that created it.
    pub owner: String,
    /// The spec's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The resolved VM settings.
    pub config: SandboxConfig,
    /// `--systemd-cgroup` was given (recorded; husk has no host cgroups to manage).
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// The spec's hooks, kept for the phases after `create` (the bundle may change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// For a pod's container: the pod sandbox container whose VM it runs in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// The guest PID of the container's first process, once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_pid: Option<u32>,
}

impl ContainerState {
    /// The container whose state directory holds the VM's sockets: the pod's
    /// sandbox for a pod's container, the container itself otherwise.
    pub fn vm_id(&self) -> &str {
        self.pod.as_deref().unwrap_or(&self.id)
    }

    /// The status as it is now: `stopped` if the recorded sandbox process is gone,
    /// a zombie, or its pid now belongs to another process (start time differs),
    /// whatever `state.json` says. A `creating` state is taken as is (the caller
    /// knows whether its creator still holds the lock).
    pub fn observed_status(&self) -> Status {
        match self.status {
            Status::Created | Status::Running | Status::Paused => match self.pid {
                Some(pid) if self.sandbox_alive(pid) => self.status,
                _ => Status::Stopped,
            },
            other => other,
        }
    }

    fn sandbox_alive(&self, pid: i32) -> bool {
        match process_start_time(pid) {
            ProcessState::Alive { start_time } => {
                self.pid_start_time.map_or(true, |t| t == start_time)
            }
            ProcessState::Zombie | ProcessState::Gone => false,
        }
    }

    /// The OCI state JSON, as `husk state` prints it (runc's fields: `ociVersion`,
    /// `id`, `status`, `pid`, `bundle`, `rootfs`, `created`, `owner`, `annotations`).
    /// `status` is the observed one; `pid` is 0 once stopped, as runc prints it.
    pub fn to_oci_json(&self, status: Status) -> serde_json::Value {
        let pid = match status {
            Status::Stopped => 0,
            _ => self.pid.unwrap_or(0),
        };
        serde_json::json!({
            "ociVersion": OCI_VERSION,
            "id": self.id,
            "status": status.as_str(),
            "pid": pid,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "owner": self.owner,
            "annotations": self.annotations,
        })
    }
}
