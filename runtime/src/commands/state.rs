//! `husk state`: the OCI state JSON ([`crate::container::state`]) on stdout.

use crate::container;
use crate::error::RuntimeError;
use crate::state::Store;

/// Prints the OCI state JSON of container `id`.
pub fn state(store: &Store, id: &str) -> Result<(), RuntimeError> {
    let json = serde_json::to_string_pretty(&container::state::state(store, id)?)
        .map_err(|e| RuntimeError::io("format state", std::io::Error::other(e)))?;
    println!("{json}");
    Ok(())
}
