//! `husk exec`: another process in a running container. The command talks to the
//! agent through the sandbox's vsock socket; the sandbox process is not involved.
//! The same relay creates a pod's container in the pod's VM ([`RelayTask::Create`]):
//! the relay then stands for that container's first process.
//!
//! Attached (`exec` without `-d`), the command itself relays the process's stdio and
//! exits with its status. Detached (`-d`, how conmon runs execs), the command starts
//! an *exec relay* process (`husk __exec`) that does the same in the background and
//! whose PID goes to `--pid-file`: it lives exactly as long as the exec'd process and
//! exits with its status.

use super::relay::{attach, forward_signals, ProcessRef, Stdio};
use crate::agent::Timeouts;
use crate::sandbox::plan::{Report, Reporter};
use crate::sandbox::SandboxError;
use nix::sys::signal::{SigSet, Signal};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The environment variable carrying an exec relay's [`ExecPlan`] (JSON).
pub const EXEC_PLAN_ENV: &str = "_HUSK_EXEC_PLAN";

/// What a relay starts in the guest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RelayTask {
    /// Another process in a running container.
    Exec {
        /// The exec's ID in the guest (unique per container).
        exec_id: String,
        /// The OCI `process` object.
        process: serde_json::Value,
    },
    /// A pod's container, created in the pod's VM (held until `start`).
    Create {
        /// Its spec, rewritten for the guest.
        spec: serde_json::Value,
        /// Its root file system's guest path.
        rootfs: String,
    },
}

/// One relay: an exec, or a pod member's first process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecPlan {
    /// The sandbox's vsock socket.
    pub vsock: PathBuf,
    /// The container.
    pub container_id: String,
    /// What to start.
    pub task: RelayTask,
    /// Where the engine wants the terminal's master, for a terminal process.
    pub console_socket: Option<PathBuf>,
    /// How long one agent request may take.
    pub request_timeout: std::time::Duration,
}

impl ExecPlan {
    fn process(&self) -> Option<&serde_json::Value> {
        match &self.task {
            RelayTask::Exec { process, .. } => Some(process),
            RelayTask::Create { spec, .. } => spec.get("process"),
        }
    }

    fn terminal(&self) -> bool {
        self.process()
            .and_then(|p| p.get("terminal"))
            .and_then(|t| t.as_bool())
            .unwrap_or(false)
    }

    /// The terminal's size the spec asks for (0 × 0: the engine sets it later).
    fn console_size(&self) -> (u16, u16) {
        let size = |key: &str| {
            self.process()
                .and_then(|p| p.pointer(&format!("/consoleSize/{key}")))
                .and_then(|v| v.as_u64())
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(0)
        };
        (size("height"), size("width"))
    }

    fn exec_id(&self) -> Option<&str> {
        match &self.task {
            RelayTask::Exec { exec_id, .. } => Some(exec_id),
            RelayTask::Create { .. } => None,
        }
    }

    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.request_timeout,
            request: self.request_timeout,
        }
    }

    fn process_ref(&self) -> ProcessRef {
        ProcessRef {
            vsock: self.vsock.clone(),
            container_id: self.container_id.clone(),
            exec_id: self.exec_id().map(str::to_owned),
        }
    }
}

/// Starts the exec (or creates the pod member), attaches its stdio, reports, relays
/// until it exits; gives back its status as an exit code (128 + N for signal N).
pub fn run(plan: &ExecPlan, reporter: &mut Reporter) -> Result<i32, SandboxError> {
    if plan.terminal() {
        // Its own session, so that the terminal can be its controlling terminal
        // (resizes arrive as SIGWINCH). Fails harmlessly if it leads one already.
        let _ = nix::unistd::setsid();
    }
    let mut signals = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGWINCH,
    ] {
        signals.add(sig);
    }
    signals
        .thread_block()
        .map_err(|e| SandboxError::Io("block signals", e.into()))?;
    let process = plan.process_ref();
    let timeouts = plan.timeouts();
    let mut agent = process.agent(timeouts)?;
    let guest_pid = match &plan.task {
        RelayTask::Exec { exec_id, process } => agent
            .exec(&plan.container_id, exec_id, process.clone())
            .map_err(|e| SandboxError::Agent("start the process in the guest".into(), e))?,
        RelayTask::Create { spec, rootfs } => agent
            .create_container(&plan.container_id, spec.clone(), rootfs)
            .map_err(|e| SandboxError::Agent("create the container in the pod's VM".into(), e))?,
    };
    let stdio = if plan.terminal() {
        Stdio::Terminal {
            console_socket: plan.console_socket.as_deref(),
            size: plan.console_size(),
        }
    } else {
        Stdio::Inherited
    };
    let undo = |agent: &mut crate::agent::AgentClient| match plan.exec_id() {
        Some(exec_id) => {
            let _ = agent.signal(&plan.container_id, Some(exec_id), 9);
        }
        None => {
            let _ = agent.remove_container(&plan.container_id);
        }
    };
    let (relay, pty) = match attach(&process, timeouts, stdio) {
        Ok(attached) => attached,
        Err(e) => {
            undo(&mut agent);
            return Err(e);
        }
    };
    if !reporter.send(&Report::Up {
        guest_pid,
        timings: None,
    }) {
        // The command is gone: nobody waits for this process; end it.
        undo(&mut agent);
        return Err(SandboxError::DiedEarly);
    }
    let forwarder = process.clone();
    std::thread::spawn(move || forward_signals(signals, &forwarder, timeouts, pty));
    let status = agent
        .wait(&plan.container_id, plan.exec_id(), None)
        .map_err(|e| SandboxError::Agent("wait for the process".into(), e))?;
    // Output left behind by a process it started may never end: drain, bounded.
    relay.finish_within(super::relay::DRAIN);
    Ok(super::exit::exit_code(status))
}
