//! `husk exec`: another process in a running container. The command talks to the
//! agent through the sandbox's vsock socket; the sandbox process is not involved.
//!
//! Attached (`exec` without `-d`), the command itself relays the process's stdio and
//! exits with its status. Detached (`-d`, how conmon runs execs), the command starts
//! an *exec relay* process (`husk __exec`) that does the same in the background and
//! whose PID goes to `--pid-file`: it lives exactly as long as the exec'd process and
//! exits with its status.

use super::plan::{Report, Reporter};
use super::relay::{attach, forward_signals, ProcessRef, Stdio};
use super::SandboxError;
use crate::agent::Timeouts;
use husk_agent::protocol::ExitStatus;
use nix::sys::signal::{SigSet, Signal};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The environment variable carrying an exec relay's [`ExecPlan`] (JSON).
pub const EXEC_PLAN_ENV: &str = "_HUSK_EXEC_PLAN";

/// One exec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExecPlan {
    /// The sandbox's vsock socket.
    pub vsock: PathBuf,
    /// The container.
    pub container_id: String,
    /// The exec's ID in the guest (unique per container).
    pub exec_id: String,
    /// The OCI `process` object.
    pub process: serde_json::Value,
    /// Where the engine wants the terminal's master, for a terminal process.
    pub console_socket: Option<PathBuf>,
    /// How long one agent request may take.
    pub request_timeout: std::time::Duration,
}

impl ExecPlan {
    fn terminal(&self) -> bool {
        self.process
            .get("terminal")
            .and_then(|t| t.as_bool())
            .unwrap_or(false)
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
            exec_id: Some(self.exec_id.clone()),
        }
    }
}

/// Starts the exec, attaches its stdio, reports, relays until it exits; gives back
/// its status as an exit code (128 + N for signal N).
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
    let guest_pid = agent
        .exec(&plan.container_id, &plan.exec_id, plan.process.clone())
        .map_err(|e| SandboxError::Agent("start the process in the guest".into(), e))?;
    let stdio = if plan.terminal() {
        Stdio::Terminal {
            console_socket: plan.console_socket.as_deref(),
            size: (0, 0),
        }
    } else {
        Stdio::Inherited
    };
    let (relay, pty) = attach(&process, timeouts, stdio)?;
    if !reporter.send(&Report::Up {
        guest_pid,
        timings: None,
    }) {
        // `exec` is gone: nobody waits for this process; end it.
        let _ = agent.signal(&plan.container_id, Some(&plan.exec_id), 9);
        return Err(SandboxError::DiedEarly);
    }
    let forwarder = process.clone();
    std::thread::spawn(move || forward_signals(signals, &forwarder, timeouts, pty));
    let status = agent
        .wait(&plan.container_id, Some(&plan.exec_id), None)
        .map_err(|e| SandboxError::Agent("wait for the process".into(), e))?;
    // Output left behind by a process it started may never end: drain, bounded.
    relay.finish_within(super::process::DRAIN);
    Ok(exit_code(status))
}

/// The shell convention for a status: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    match status {
        ExitStatus {
            exit_code: Some(code),
            ..
        } => code,
        ExitStatus {
            signal: Some(sig), ..
        } => 128 + sig,
        _ => super::process::VM_LOST_STATUS,
    }
}
