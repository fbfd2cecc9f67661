//! The sandbox process: boots a container's microVM and serves it (STUB).
//!
//! The CLI's commands call these functions; each returns
//! [`RuntimeError::NotImplemented`] until the sandbox lands, when this module is
//! replaced wholesale. The signatures are the contract between the two.

use crate::error::RuntimeError;
use crate::state::{ContainerState, Store};
use std::path::PathBuf;

/// What `create` (and `run`) received for the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Where to send the pty master when `process.terminal` is set.
    pub console_socket: Option<PathBuf>,
    /// Where to write the sandbox process's pid (the sandbox writes it).
    pub pid_file: Option<PathBuf>,
    /// Descriptors beyond stdio (3 ..= 2 + N) to pass to the container.
    pub preserve_fds: u32,
}

/// What `exec` received.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOptions {
    /// The OCI `process` object to run.
    pub process: serde_json::Value,
    /// Allocate a terminal (also in `process.terminal`).
    pub tty: bool,
    /// Return once the process started, instead of waiting for its exit.
    pub detach: bool,
    /// Where to write the pid of the host process that stands for the exec'd one.
    pub pid_file: Option<PathBuf>,
    /// Where to send the pty master with `tty`.
    pub console_socket: Option<PathBuf>,
    /// Descriptors beyond stdio to pass.
    pub preserve_fds: u32,
}

fn not_yet(what: &str) -> RuntimeError {
    RuntimeError::NotImplemented(format!(
        "{what}: the sandbox process (which boots the container's microVM) is not part of this build yet"
    ))
}

/// Boots the sandbox for a container whose state (status Creating) is already in
/// the store, holding its lock.
pub fn create(
    _store: &Store,
    _state: &mut ContainerState,
    _spec: &oci_spec::runtime::Spec,
    _opts: &CreateOptions,
) -> Result<(), RuntimeError> {
    Err(not_yet("create"))
}

/// Starts the container's process (status Created → Running).
pub fn start(_store: &Store, _state: &mut ContainerState) -> Result<(), RuntimeError> {
    Err(not_yet("start"))
}

/// Sends `signal` to the container's init process (`all`: to all its processes).
pub fn kill(
    _store: &Store,
    _state: &ContainerState,
    _signal: i32,
    _all: bool,
) -> Result<(), RuntimeError> {
    Err(not_yet("kill"))
}

/// Runs another process in the container. Returns the exec'd process's exit code
/// when not detached (0 when detached).
pub fn exec(
    _store: &Store,
    _state: &ContainerState,
    _opts: &ExecOptions,
) -> Result<i32, RuntimeError> {
    Err(not_yet("exec"))
}

/// The container's processes (guest PIDs).
pub fn ps(_store: &Store, _state: &ContainerState) -> Result<Vec<u32>, RuntimeError> {
    Err(not_yet("ps"))
}

/// Stops the VM and everything the sandbox runs (idempotent; works when the
/// sandbox process is already dead).
pub fn destroy(_store: &Store, _state: &ContainerState) -> Result<(), RuntimeError> {
    Ok(())
}

/// Waits for the sandbox process to exit; gives its exit code (for `run` without -d).
pub fn wait(_store: &Store, _state: &ContainerState) -> Result<i32, RuntimeError> {
    Err(not_yet("wait"))
}
