//! `husk state`, and how every read-only command sees a container's status.

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

/// Prints the OCI state JSON of container `id`.
pub fn state(store: &Store, id: &str) -> Result<(), RuntimeError> {
    let (state, status) = observe(store, id)?;
    let json = serde_json::to_string_pretty(&state.to_oci_json(status))
        .map_err(|e| RuntimeError::io("format state", std::io::Error::other(e)))?;
    println!("{json}");
    Ok(())
}
