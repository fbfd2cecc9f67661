//! `exec`: another process in a running container (attached, or through a detached
//! relay process).

use super::state::observe;
use crate::error::RuntimeError;
use crate::sandbox::{self, ExecOptions};
use crate::state::{Status, Store};

/// Runs another process in running container `id`; gives its exit status when
/// attached, 0 when detached.
pub fn exec(store: &Store, id: &str, opts: &ExecOptions) -> Result<i32, RuntimeError> {
    let (state, status) = observe(store, id)?;
    if !status.can_exec() {
        // The agent refuses a paused one too: the process would join the frozen
        // cgroup, so --ignore-paused cannot be honoured.
        return Err(RuntimeError::InvalidState(if status == Status::Paused {
            format!("cannot exec in paused container \"{id}\": resume it first")
        } else {
            format!("cannot exec in container \"{id}\": it is {status}, not running")
        }));
    }
    sandbox::exec(store, &state, opts)
}

/// Runs another process in running container `id` through a detached relay with
/// `opts.stdio`; gives the relay's pid (it lives as long as the process and exits
/// with its status; the caller reaps it).
pub fn exec_detached(store: &Store, id: &str, opts: &ExecOptions) -> Result<u32, RuntimeError> {
    let (state, status) = observe(store, id)?;
    if !status.can_exec() {
        return Err(RuntimeError::InvalidState(format!(
            "cannot exec in container \"{id}\": it is {status}, not running"
        )));
    }
    sandbox::exec_detached(store, &state, opts)
}
