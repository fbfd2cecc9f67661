//! What a runtime command hands the process it starts (the sandbox process, or the
//! relay of a detached exec), and how that process reports back that it is up.

use super::process::vm::VmPlan;
use super::timings::StartTimings;
use super::SandboxError;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The environment variable that names the report pipe's descriptor.
pub const REPORT_FD_ENV: &str = "_HUSK_REPORT_FD";

/// How a sandbox process is to run its container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxPlan {
    /// The container's ID.
    pub id: String,
    /// The VM.
    pub vm: VmPlan,
    /// The bundle's config.json.
    pub spec: serde_json::Value,
    /// Where the engine wants the terminal's master, when the process has one.
    pub console_socket: Option<PathBuf>,
    /// How long the guest may take to boot and answer.
    pub boot_timeout: Duration,
    /// How long one agent request may take.
    pub request_timeout: Duration,
}

/// What a started process reports once: up (with the guest PID of the process it
/// runs), or why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    /// The process is created (and, for an exec, running) in the guest.
    Up {
        /// Its PID in the guest.
        guest_pid: u32,
        /// When the phases of a sandbox's start happened (absent for an exec).
        #[serde(default)]
        timings: Option<StartTimings>,
    },
    /// It failed; the message names the problem.
    Failed(String),
}

/// The writing end of the report pipe, in the started process.
#[derive(Debug)]
pub struct Reporter(Option<File>);

impl Reporter {
    /// Takes the descriptor named by [`REPORT_FD_ENV`], if any.
    pub fn from_env() -> Reporter {
        let fd: Option<RawFd> = std::env::var(REPORT_FD_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        std::env::remove_var(REPORT_FD_ENV);
        // SAFETY: the parent put a pipe's writing end at this descriptor for us alone
        // and marked nothing else to own it.
        let file = fd
            .filter(|&fd| fd > 2)
            .map(|fd| unsafe { File::from_raw_fd(fd) });
        if let Some(file) = &file {
            // Not for the processes this one starts (virtiofsd): the reader waits for
            // the report or for the last writer to go.
            let _ = nix::fcntl::fcntl(
                file,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
        }
        Reporter(file)
    }

    /// A reporter with nobody to report to (the command runs the work itself).
    pub fn none() -> Reporter {
        Reporter(None)
    }

    /// Sends the report and closes the pipe. False if the reader is gone (the
    /// command that started this process was killed or gave up); true without a
    /// pipe.
    pub fn send(&mut self, report: &Report) -> bool {
        let Some(mut pipe) = self.0.take() else {
            return true;
        };
        let Ok(mut line) = serde_json::to_vec(report) else {
            return false;
        };
        line.push(b'\n');
        pipe.write_all(&line).is_ok()
    }
}

/// The reading end, in the runtime command: waits up to `timeout` for the report.
pub fn read_report(pipe: OwnedFd, timeout: Duration) -> Result<Report, SandboxError> {
    let deadline = Instant::now() + timeout;
    let mut file = File::from(pipe);
    let mut text = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(SandboxError::Timeout("report", timeout));
        }
        let mut fds = [nix::poll::PollFd::new(
            std::os::fd::AsFd::as_fd(&file),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut fds, ms) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(SandboxError::Io("poll the report pipe", e.into())),
        }
        let mut buf = [0u8; 4096];
        let n = file
            .read(&mut buf)
            .map_err(|e| SandboxError::Io("read the report pipe", e))?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        if text.len() > 1 << 20 {
            break;
        }
        if text.ends_with(b"\n") {
            break;
        }
    }
    if text.is_empty() {
        return Err(SandboxError::DiedEarly);
    }
    serde_json::from_slice(&text).map_err(|e| SandboxError::Vm(format!("bad report: {e}")))
}

/// The file in a container's state directory where the sandbox records the OOM
/// kill count of its cgroup once the container's process has exited.
pub const OOM_KILLS_FILE: &str = "oom_kills";

/// The hidden command that runs the sandbox process.
pub const SANDBOX_COMMAND: &str = "__sandbox";
/// The hidden command that runs a detached exec's relay.
pub const EXEC_COMMAND: &str = "__exec";
