//! `state`: how every reader sees a container and its status.

use crate::error::RuntimeError;
use crate::state::{ContainerState, Status, Store};

/// Loads container `id` and its status as it is now. Writers hold the container's
/// lock exclusively; if nobody does and the state still says `creating`, the
/// `create` that wrote it died: the container is reported `stopped` (and `delete`
/// removes it). A held lock does not block: state files are replaced atomically.
pub fn observe(store: &Store, id: &str) -> Result<(ContainerState, Status), RuntimeError> {
    let lock = store.try_lock_shared(id)?;
    let state = store.load(id)?;
    let status = match state.observed_status() {
        Status::Creating if lock.is_some() => Status::Stopped,
        other => other,
    };
    Ok((state, status))
}

/// The OCI state JSON of container `id`.
pub fn state(store: &Store, id: &str) -> Result<serde_json::Value, RuntimeError> {
    let (state, status) = observe(store, id)?;
    Ok(state.to_oci_json(status))
}

/// Every container in the store, with its status as [`observe`] sees it.
pub fn list(store: &Store) -> Result<Vec<(ContainerState, Status)>, RuntimeError> {
    let mut rows = Vec::new();
    for state in store.list()? {
        // Deleted between listing and reading: skip it.
        match observe(store, &state.id) {
            Ok(row) => rows.push(row),
            Err(RuntimeError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(rows)
}
