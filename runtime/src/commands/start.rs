//! `husk start`.

use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::{Status, Store};

/// Starts a created container's process; refused in any other state, as runc does.
pub fn start(store: &Store, id: &str) -> Result<(), RuntimeError> {
    let _lock = store.lock(id)?;
    let mut state = store.load(id)?;
    match state.observed_status() {
        Status::Created => {}
        Status::Stopped => {
            return Err(RuntimeError::InvalidState(format!(
                "cannot start container \"{id}\": it has stopped"
            )))
        }
        Status::Running | Status::Paused => {
            return Err(RuntimeError::InvalidState(format!(
                "cannot start container \"{id}\": it is already running"
            )))
        }
        Status::Creating => {
            return Err(RuntimeError::InvalidState(format!(
                "cannot start container \"{id}\": its creation did not finish"
            )))
        }
    }
    sandbox::start(store, &mut state)?;
    state.status = Status::Running;
    store.save(&state)
}
