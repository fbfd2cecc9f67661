//! `delete`: the sandbox and the state go.

use crate::error::RuntimeError;
use crate::hooks::{self, Phase};
use crate::sandbox;
use crate::state::{Status, Store};

/// Deletes container `id`: stops its sandbox (VM, helpers, sockets) and removes its
/// state directory. A running or paused container needs `--force`, as with runc; a
/// created or stopped one (or one whose `create` died) does not. The `poststop`
/// hooks run once the sandbox is gone (failures logged). `--force` on a
/// container that does not exist succeeds, as runc's does.
pub fn delete(store: &Store, id: &str, force: bool) -> Result<(), RuntimeError> {
    let _lock = match store.lock(id) {
        Err(RuntimeError::NotFound(_)) if force => return Ok(()),
        other => other?,
    };
    let state = match store.load(id) {
        Err(RuntimeError::NotFound(_)) if force => return Ok(()),
        other => other?,
    };
    // Holding the lock exclusively: a `creating` state's creator is gone.
    let status = state.observed_status();
    if !status.can_delete(force) {
        return Err(RuntimeError::InvalidState(format!(
            "cannot delete container {id} that is not stopped: {status}"
        )));
    }
    sandbox::destroy(store, &state)?;
    hooks::run_logged(&state, Phase::Poststop, Status::Stopped);
    store.remove(id)
}
