//! Exec'd processes: another process in a running task, started through the runtime
//! library's detached exec relay (`__exec`, a child of the shim that lives as long as
//! the process and exits with its status), with containerd's fifos as its stdio.

use super::Service;
use crate::error::{Result, ShimError};
use crate::events::TaskEvent;
use crate::exit::{watch_exit, Exited};
use crate::stdio::{OpenedStdio, Owner, StdioPaths};
use crate::task::{ExecRecord, TaskRecord, TaskStatus};
use crate::terminal::TerminalSetup;
use containerd_shim::monitor::{monitor_subscribe, Topic};
use containerd_shim::protos::events::task::{TaskExecAdded, TaskExecStarted};
use husk_runtime::sandbox::{self, ExecOptions};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// The parameters of an Exec request.
#[derive(Debug, Clone, Default)]
pub struct ExecParams {
    /// The task.
    pub id: String,
    /// containerd's exec id.
    pub exec_id: String,
    /// The OCI `process` object, JSON.
    pub spec: Vec<u8>,
    /// Whether it wants a terminal.
    pub terminal: bool,
    /// Its stdio fifos.
    pub stdio: StdioPaths,
}

impl Service {
    /// Task `id` and its exec'd process `exec_id`.
    pub fn exec_of(&self, id: &str, exec_id: &str) -> Result<(Arc<TaskRecord>, Arc<ExecRecord>)> {
        let task = self.task(id)?;
        let exec = task
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ShimError::NoSuchExec {
                id: id.to_string(),
                exec_id: exec_id.to_string(),
            })?;
        Ok((task, exec))
    }

    /// Records an exec'd process of a running task (Exec); Start runs it.
    pub fn exec_add(&self, p: ExecParams) -> Result<()> {
        let task = self.task(&p.id)?;
        if task.status() != TaskStatus::Running {
            return Err(ShimError::Precondition(format!(
                "cannot exec in task \"{}\": it is not running",
                p.id
            )));
        }
        let process: serde_json::Value =
            serde_json::from_slice(&p.spec).map_err(|e| ShimError::BadExecSpec(e.to_string()))?;
        let mut execs = task.execs.lock().unwrap_or_else(|e| e.into_inner());
        if execs.contains_key(&p.exec_id) {
            return Err(ShimError::TaskExists(format!("{}/{}", p.id, p.exec_id)));
        }
        execs.insert(
            p.exec_id.clone(),
            Arc::new(ExecRecord {
                exec_id: p.exec_id.clone(),
                process,
                stdio: p.stdio,
                pid: AtomicU32::new(0),
                terminal: p.terminal,
                size: Mutex::default(),
                stdin_writer: Mutex::new(None),
                logger: Mutex::default(),
                exit: Arc::default(),
            }),
        );
        self.events().send(TaskEvent::ExecAdded(TaskExecAdded {
            container_id: p.id,
            exec_id: p.exec_id,
            ..Default::default()
        }));
        Ok(())
    }

    /// Starts an exec'd process; gives its relay's pid.
    pub fn exec_start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let (_task, exec) = self.exec_of(id, exec_id)?;
        if exec.status() != TaskStatus::Created {
            return Err(ShimError::Precondition(format!(
                "exec \"{exec_id}\" of task \"{id}\" was started already"
            )));
        }
        let owner = Owner {
            id,
            namespace: self.namespace(),
        };
        let OpenedStdio {
            sandbox: relay_stdio,
            stdin_writer,
            terminal,
            logger,
        } = exec.stdio.open(exec.terminal, owner)?;
        let store = self.store()?;
        let tty = TerminalSetup::new(terminal, store.root())?;
        let mut process = exec.process.clone();
        let size = *exec.size.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some((rows, cols)), Some(obj)) = (size, process.as_object_mut()) {
            obj.insert(
                "consoleSize".into(),
                serde_json::json!({ "height": rows, "width": cols }),
            );
        }
        let opts = ExecOptions {
            process,
            tty: exec.terminal,
            detach: true,
            pid_file: None,
            console_socket: tty.console_socket(),
            preserve_fds: 0,
            stdio: Some(relay_stdio),
            exec_id: Some(exec_id.to_string()),
        };
        let subscription = monitor_subscribe(Topic::Pid)
            .map_err(|e| ShimError::Internal(format!("cannot watch for exits: {e}")))?;
        let started = store
            .load(id)
            .and_then(|state| sandbox::exec_detached(&store, &state, &opts));
        drop(opts);
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                tty.cancel();
                return Err(e.into());
            }
        };
        let output_done = tty.relay().inspect_err(|_| {
            let _ = self.signal_exec(id, exec_id, 9);
        })?;
        *exec.stdin_writer.lock().unwrap_or_else(|e| e.into_inner()) = stdin_writer;
        *exec.logger.lock().unwrap_or_else(|e| e.into_inner()) = logger;
        exec.pid.store(pid, Ordering::SeqCst);
        watch_exit(
            subscription,
            id.to_string(),
            exec_id.to_string(),
            pid,
            exec.exit.clone(),
            self.events().clone(),
            output_done,
        )
        .map_err(|e| ShimError::Internal(format!("cannot watch exec \"{exec_id}\": {e}")))?;
        self.events().send(TaskEvent::ExecStarted(TaskExecStarted {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            pid,
            ..Default::default()
        }));
        Ok(pid)
    }

    /// Signals an exec'd process (through the agent: the relay cannot pass SIGKILL on).
    pub fn exec_kill(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        let (_task, exec) = self.exec_of(id, exec_id)?;
        if exec.status() != TaskStatus::Running {
            return Err(ShimError::Finished(format!("{id}/{exec_id}")));
        }
        self.signal_exec(id, exec_id, signal)
    }

    /// Signals exec'd process `exec_id` through the agent, whatever the shim's
    /// record says.
    fn signal_exec(&self, id: &str, exec_id: &str, signal: u32) -> Result<()> {
        let store = self.store()?;
        let state = store.load(id)?;
        Ok(sandbox::kill_exec(&store, &state, exec_id, signal as i32)?)
    }

    /// Forgets an exec'd process that has exited (or never started).
    pub fn exec_delete(&self, id: &str, exec_id: &str) -> Result<(u32, Exited)> {
        let (task, exec) = self.exec_of(id, exec_id)?;
        let exited = match exec.status() {
            TaskStatus::Running | TaskStatus::Paused => {
                return Err(ShimError::Precondition(format!(
                    "cannot delete exec \"{exec_id}\" of task \"{id}\": it is running"
                )))
            }
            TaskStatus::Created => Exited {
                status: 0,
                at: Default::default(),
            },
            TaskStatus::Stopped => exec.exit.get().unwrap_or_else(|| Exited {
                status: 0,
                at: Default::default(),
            }),
        };
        if let Some(logger) = exec.logger.lock().unwrap_or_else(|e| e.into_inner()).take() {
            logger.stop();
        }
        task.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(exec_id);
        Ok((exec.pid.load(Ordering::SeqCst), exited))
    }
}
