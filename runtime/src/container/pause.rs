//! `pause` and `resume`: the container's cgroup in the guest frozen and thawed;
//! `state.json` says `paused` in between.

use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::{Status, Store};

/// Freezes a running container's processes. A created one is refused (runc
/// pauses it too): husk's state would not remember that it still waits for `start`.
pub fn pause(store: &Store, id: &str) -> Result<(), RuntimeError> {
    let _lock = store.lock(id)?;
    let mut state = store.load(id)?;
    let status = state.observed_status();
    if !status.can_pause() {
        let why = match status {
            Status::Created => "it is created, not started (husk pauses running containers only)",
            Status::Paused => "it is paused already",
            _ => "container not running",
        };
        return Err(RuntimeError::InvalidState(format!(
            "cannot pause container \"{id}\": {why}"
        )));
    }
    sandbox::pause(store, &state)?;
    state.status = Status::Paused;
    store.save(&state)
}

/// Thaws a paused container.
pub fn resume(store: &Store, id: &str) -> Result<(), RuntimeError> {
    let _lock = store.lock(id)?;
    let mut state = store.load(id)?;
    if !state.observed_status().can_resume() {
        return Err(RuntimeError::InvalidState(format!(
            "cannot resume container \"{id}\": container not paused"
        )));
    }
    sandbox::resume(store, &state)?;
    state.status = Status::Running;
    store.save(&state)
}
