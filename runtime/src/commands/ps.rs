//! `husk ps`: the container's processes, as guest PIDs.
//!
//! runc prints host PIDs; a husk container's processes live in its microVM, so husk
//! prints their PIDs in the guest (`--format json`: a JSON array of them; table: a
//! `PID` column).

use super::state::observe;
use crate::cli::{OutputFormat, PsArgs};
use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::Status;
use crate::state::Store;

/// Lists container `id`'s processes.
pub fn ps(store: &Store, args: &PsArgs) -> Result<(), RuntimeError> {
    if !args.ps_args.is_empty() {
        return Err(RuntimeError::NotSupported(format!(
            "ps options {:?}: husk lists guest PIDs only",
            args.ps_args
        )));
    }
    let (state, status) = observe(store, &args.id)?;
    if !matches!(status, Status::Created | Status::Running | Status::Paused) {
        return Err(RuntimeError::InvalidState(format!(
            "cannot list processes of container \"{}\": it is {status}",
            args.id
        )));
    }
    let pids = sandbox::ps(store, &state)?;
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::Value::from(pids)),
        OutputFormat::Table => {
            println!("PID");
            for pid in pids {
                println!("{pid}");
            }
        }
    }
    Ok(())
}
