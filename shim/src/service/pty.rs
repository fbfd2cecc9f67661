//! ResizePty: the window size of a task's or an exec's terminal, set in the guest
//! through the runtime library.

use super::Service;
use crate::error::{Result, ShimError};
use crate::task::TaskStatus;
use husk_runtime::sandbox;

impl Service {
    /// ResizePty: sets the window size of the terminal of task `id`'s process, or of
    /// its exec'd process `exec_id`. An exec not started yet gets the size when it
    /// starts (containerd resizes before it starts an exec).
    pub fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let dimension = |v: u32, what: &str| {
            u16::try_from(v).map_err(|_| {
                ShimError::InvalidArgument(format!("a terminal of {v} {what} is too large"))
            })
        };
        let (rows, cols) = (dimension(height, "rows")?, dimension(width, "columns")?);
        let no_terminal = |what: String| ShimError::Precondition(format!("{what} has no terminal"));
        if exec_id.is_empty() {
            let task = self.task(id)?;
            if !task.terminal {
                return Err(no_terminal(format!("task \"{id}\"")));
            }
            if task.status() == TaskStatus::Stopped {
                return Err(ShimError::Finished(id.to_string()));
            }
            let store = self.store()?;
            let state = store.load(id)?;
            return Ok(sandbox::resize_tty(&store, &state, None, rows, cols)?);
        }
        let (_task, exec) = self.exec_of(id, exec_id)?;
        if !exec.terminal {
            return Err(no_terminal(format!("exec \"{exec_id}\" of task \"{id}\"")));
        }
        match exec.status() {
            TaskStatus::Created => {
                *exec.size.lock().unwrap_or_else(|e| e.into_inner()) = Some((rows, cols));
                Ok(())
            }
            TaskStatus::Running | TaskStatus::Paused => {
                let store = self.store()?;
                let state = store.load(id)?;
                Ok(sandbox::resize_tty(
                    &store,
                    &state,
                    Some(exec_id),
                    rows,
                    cols,
                )?)
            }
            TaskStatus::Stopped => Err(ShimError::Finished(format!("{id}/{exec_id}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizes_name_what_is_wrong() {
        use containerd_shim::protos::ttrpc::Code;
        let dir = tempfile::tempdir().unwrap();
        let (events, _rx) = crate::events::Events::channel();
        let s = Service::new(
            "ns".into(),
            dir.path().join("ns"),
            events,
            std::sync::Arc::default(),
        );
        let err = s.resize_pty("nope", "", 80, 24).unwrap_err();
        assert_eq!(err.code(), Code::NOT_FOUND, "{err}");
        let err = s.resize_pty("nope", "", 80, 70_000).unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
        assert!(err.to_string().contains("70000 rows"), "{err}");
    }
}
