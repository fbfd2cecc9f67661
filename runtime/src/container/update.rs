//! `update`: an OCI `linux.resources` object applied by the agent to the container's
//! cgroup in the guest.

use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::Store;
use serde_json::Value;

/// Changes container `id`'s limits to those set in `resources` (OCI
/// `linux.resources`).
pub fn apply(store: &Store, id: &str, resources: Value) -> Result<(), RuntimeError> {
    let _lock = store.lock(id)?;
    let state = store.load(id)?;
    if !state.observed_status().has_sandbox() {
        return Err(RuntimeError::InvalidState(format!(
            "cannot update container \"{id}\": container not running"
        )));
    }
    sandbox::update(store, &state, resources)
}
