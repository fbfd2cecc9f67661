//! `husk ps`: the container's processes as guest PIDs ([`crate::container::ps`]):
//! `--format json`, a JSON array of them; table, a `PID` column.

use crate::cli::{OutputFormat, PsArgs};
use crate::container;
use crate::error::RuntimeError;
use crate::state::Store;

/// Lists container `id`'s processes.
pub fn ps(store: &Store, args: &PsArgs) -> Result<(), RuntimeError> {
    if !args.ps_args.is_empty() {
        return Err(RuntimeError::NotSupported(format!(
            "ps options {:?}: husk lists guest PIDs only",
            args.ps_args
        )));
    }
    let pids = container::ps::ps(store, &args.id)?;
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
