//! `start`: the created container's process runs.

use crate::error::RuntimeError;
use crate::hooks::{self, Phase};
use crate::sandbox;
use crate::state::{Status, Store};
use husk_protocol::error_chain;

/// Starts a created container's process; refused in any other state, as runc does.
/// The `startContainer` hooks run first (a failure stops the container: its sandbox
/// is torn down, `delete` remains to be done), the `poststart` hooks after (failures
/// logged).
pub fn start(store: &Store, id: &str) -> Result<(), RuntimeError> {
    let _lock = store.lock(id)?;
    let mut state = store.load(id)?;
    let status = state.observed_status();
    if !status.can_start() {
        let why = match status {
            Status::Stopped => "it has stopped",
            Status::Creating => "its creation did not finish",
            _ => "it is already running",
        };
        return Err(RuntimeError::InvalidState(format!(
            "cannot start container \"{id}\": {why}"
        )));
    }
    if let Err(e) = hooks::run(&state, Phase::StartContainer, Status::Created) {
        if let Err(d) = sandbox::destroy(store, &state) {
            tracing::warn!(
                "stopping {id} after its startContainer hook failed: {}",
                error_chain(&d)
            );
        }
        return Err(e.into());
    }
    sandbox::start(store, &mut state)?;
    state.status = Status::Running;
    store.save(&state)?;
    hooks::run_logged(&state, Phase::Poststart, Status::Running);
    Ok(())
}
