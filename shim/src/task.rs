//! What the shim knows about one task and its exec'd processes: bundle, stdio,
//! sandbox process or exec relay, and whether and how that process exited (see
//! [`crate::exit`]).

use crate::exit::ExitCell;
use crate::log_uri::Logger;
use crate::stdio::StdioPaths;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// One task of this shim.
#[derive(Debug)]
pub struct TaskRecord {
    /// The task (container) id.
    pub id: String,
    /// Its bundle directory.
    pub bundle: PathBuf,
    /// Its stdio, as containerd named it.
    pub stdio: StdioPaths,
    /// The sandbox process.
    pub pid: u32,
    /// Whether the shim mounted the bundle's rootfs (and unmounts it at Delete).
    pub mounted_rootfs: bool,
    /// Whether Start succeeded.
    pub started: AtomicBool,
    /// Whether its process has a terminal.
    pub terminal: bool,
    /// Whether it is paused (Pause succeeded, no Resume or SIGKILL since).
    pub paused: AtomicBool,
    /// The shim's writing end of the stdin fifo, until CloseIO.
    pub stdin_writer: Mutex<Option<OwnedFd>>,
    /// The logging binary of a `binary://` stdout, until Delete.
    pub logger: Mutex<Option<Logger>>,
    /// Its exec'd processes, by containerd's exec id.
    pub execs: Mutex<HashMap<String, Arc<ExecRecord>>>,
    /// Its exit.
    pub exit: Arc<ExitCell>,
}

/// The task's status as containerd's Task API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Created, not started.
    Created,
    /// Its process runs.
    Running,
    /// Its processes are frozen.
    Paused,
    /// Its process exited.
    Stopped,
}

impl TaskRecord {
    /// Stops the logging binaries of the task and of its exec'd processes.
    pub fn stop_loggers(&self) {
        let execs: Vec<_> = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let loggers = execs
            .iter()
            .map(|e| &e.logger)
            .chain(std::iter::once(&self.logger));
        for slot in loggers {
            if let Some(logger) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                logger.stop();
            }
        }
    }

    /// The task's status now.
    pub fn status(&self) -> TaskStatus {
        if self.exit.get().is_some() {
            TaskStatus::Stopped
        } else if self.paused.load(Ordering::SeqCst) {
            TaskStatus::Paused
        } else if self.started.load(Ordering::SeqCst) {
            TaskStatus::Running
        } else {
            TaskStatus::Created
        }
    }
}

/// One exec'd process of a task.
#[derive(Debug)]
pub struct ExecRecord {
    /// containerd's exec id (also the process's id in the guest).
    pub exec_id: String,
    /// The OCI `process` object.
    pub process: serde_json::Value,
    /// Its stdio, as containerd named it.
    pub stdio: StdioPaths,
    /// The exec relay's pid, once started (0 before).
    pub pid: AtomicU32,
    /// Whether it has a terminal.
    pub terminal: bool,
    /// The terminal's size (rows, columns) asked for before it started.
    pub size: Mutex<Option<(u16, u16)>>,
    /// The shim's writing end of the stdin fifo, until CloseIO.
    pub stdin_writer: Mutex<Option<OwnedFd>>,
    /// The logging binary of a `binary://` stdout, until Delete.
    pub logger: Mutex<Option<Logger>>,
    /// Its exit.
    pub exit: Arc<ExitCell>,
}

impl ExecRecord {
    /// The process's status now.
    pub fn status(&self) -> TaskStatus {
        if self.exit.get().is_some() {
            TaskStatus::Stopped
        } else if self.pid.load(Ordering::SeqCst) != 0 {
            TaskStatus::Running
        } else {
            TaskStatus::Created
        }
    }
}
