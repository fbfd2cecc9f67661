//! `ps`: the container's processes, as guest PIDs.
//!
//! runc lists host PIDs; a husk container's processes live in its microVM, so husk
//! lists their PIDs in the guest.

use super::state::observe;
use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::Store;

/// The guest PIDs of container `id`'s processes.
pub fn ps(store: &Store, id: &str) -> Result<Vec<u32>, RuntimeError> {
    let (state, status) = observe(store, id)?;
    if !status.has_sandbox() {
        return Err(RuntimeError::InvalidState(format!(
            "cannot list processes of container \"{id}\": it is {status}"
        )));
    }
    sandbox::ps(store, &state)
}
