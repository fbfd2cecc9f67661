//! The task service's logic, in plain Rust types: create, start, kill, delete and
//! wait tasks through husk's runtime library (state store, bundle, sandbox
//! process). [`crate::api`] maps the Task API's requests onto it.

mod control;
mod exec;
mod pty;

pub use exec::ExecParams;

use crate::error::{Result, ShimError};
use crate::events::{Events, TaskEvent};
use crate::exit::{watch_exit, ExitCell, Exited};
use crate::rootfs::{self, RootfsMount};
use crate::stdio::{OpenedStdio, Owner, StdioPaths};
use crate::task::{TaskRecord, TaskStatus};
use crate::terminal::TerminalSetup;
use containerd_shim::monitor::{monitor_subscribe, Topic};
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::ExitSignal;
use husk_runtime::container::{self, CreateOptions, Signal, Stdio};
use husk_runtime::error::RuntimeError;
use husk_runtime::state::Store;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long Delete waits for a killed sandbox process to be reaped.
const DELETE_WAIT: Duration = Duration::from_secs(10);

/// What Create needs, taken from `CreateTaskRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateParams {
    /// The task id.
    pub id: String,
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Mounts that make up the rootfs (empty: the bundle's rootfs is in place).
    pub rootfs: Vec<RootfsMount>,
    /// Whether the process wants a terminal.
    pub terminal: bool,
    /// Stdio fifos.
    pub stdio: StdioPaths,
    /// A checkpoint to restore from (not supported).
    pub checkpoint: String,
}

/// The tasks of one shim and the means to run them.
#[derive(Clone)]
pub struct Service {
    namespace: String,
    root: PathBuf,
    tasks: Arc<Mutex<HashMap<String, Arc<TaskRecord>>>>,
    events: Events,
    exit: Arc<ExitSignal>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("namespace", &self.namespace)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A service with no tasks yet, keeping husk's state under `root`; `exit` is
    /// signalled at Shutdown.
    pub fn new(namespace: String, root: PathBuf, events: Events, exit: Arc<ExitSignal>) -> Self {
        Service {
            namespace,
            root,
            tasks: Arc::default(),
            events,
            exit,
        }
    }

    /// husk's state store (created if need be).
    pub(crate) fn store(&self) -> Result<Store> {
        Ok(Store::open(&self.root)?)
    }

    /// Where events go.
    pub(crate) fn events(&self) -> &Events {
        &self.events
    }

    /// containerd's namespace this shim serves.
    pub(crate) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The task `id`.
    pub fn task(&self, id: &str) -> Result<Arc<TaskRecord>> {
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| ShimError::NoSuchTask(id.to_string()))
    }

    /// Any task's record (for Connect, which may name none).
    pub fn any_task(&self) -> Option<Arc<TaskRecord>> {
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.values().next().cloned()
    }

    /// Creates a task: mounts its rootfs, opens its stdio and boots its sandbox
    /// (the container is created in the guest, waiting for Start). Gives the
    /// sandbox process's pid.
    pub fn create(&self, p: CreateParams) -> Result<u32> {
        if self.task(&p.id).is_ok() {
            return Err(ShimError::TaskExists(p.id));
        }
        if !p.checkpoint.is_empty() {
            return Err(ShimError::Unsupported("checkpoint/restore"));
        }
        let target = rootfs::target(&p.bundle);
        rootfs::mount_all(&p.rootfs, &target)?;
        let mounted = !p.rootfs.is_empty();
        match self.boot(&p, mounted) {
            Ok(pid) => Ok(pid),
            Err(e) => {
                if mounted {
                    if let Err(u) = rootfs::unmount_all(&target) {
                        tracing::warn!("cleaning up after a failed create: {u}");
                    }
                }
                Err(e)
            }
        }
    }

    fn boot(&self, p: &CreateParams, mounted_rootfs: bool) -> Result<u32> {
        let owner = Owner {
            id: &p.id,
            namespace: &self.namespace,
        };
        let OpenedStdio {
            sandbox,
            stdin_writer,
            terminal,
            logger,
        } = p.stdio.open(p.terminal, owner)?;
        let store = self.store()?;
        let tty = TerminalSetup::new(terminal, store.root())?;
        let opts = CreateOptions {
            bundle: p.bundle.clone(),
            stdio: Stdio::Given(sandbox),
            console_socket: tty.console_socket(),
            ..Default::default()
        };
        // Before the sandbox exists, so that its exit cannot be missed.
        let subscription = monitor_subscribe(Topic::Pid)
            .map_err(|e| ShimError::Internal(format!("cannot watch for exits: {e}")))?;
        // The shim's copies of the fifos go with `opts`, once create returns: the
        // engine sees end of file when the sandbox process exits.
        let created = container::create::create(&store, &p.id, opts);
        let state = match created {
            Ok(state) => state,
            Err(e) => {
                tty.cancel();
                return Err(e.into());
            }
        };
        let pid = state.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
        let output_done = tty.relay().inspect_err(|_| {
            let _ = container::delete::delete(&store, &p.id, true);
        })?;
        let exit = Arc::new(ExitCell::default());
        if let Err(e) = watch_exit(
            subscription,
            p.id.clone(),
            p.id.clone(),
            pid,
            exit.clone(),
            self.events.clone(),
            output_done,
        ) {
            // Nobody would see it exit: do not leave it running.
            let _ = container::delete::delete(&store, &p.id, true);
            return Err(ShimError::Internal(format!(
                "cannot start the exit watcher of task \"{}\": {e}",
                p.id
            )));
        }
        let record = Arc::new(TaskRecord {
            id: p.id.clone(),
            bundle: p.bundle.clone(),
            stdio: p.stdio.clone(),
            pid,
            mounted_rootfs,
            started: Default::default(),
            terminal: p.terminal,
            paused: Default::default(),
            stdin_writer: Mutex::new(stdin_writer),
            logger: Mutex::new(logger),
            execs: Mutex::default(),
            exit,
        });
        self.events.send(TaskEvent::Create(TaskCreate {
            container_id: p.id.clone(),
            bundle: p.bundle.display().to_string(),
            io: MessageField::some(TaskIO {
                stdin: p.stdio.stdin.clone(),
                stdout: p.stdio.stdout.clone(),
                stderr: p.stdio.stderr.clone(),
                terminal: p.terminal,
                ..Default::default()
            }),
            pid,
            ..Default::default()
        }));
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.id.clone(), record);
        Ok(pid)
    }

    /// Starts a created task's process; gives the sandbox process's pid.
    pub fn start(&self, id: &str) -> Result<u32> {
        let task = self.task(id)?;
        if task.status() == TaskStatus::Stopped {
            return Err(ShimError::Precondition(format!(
                "cannot start task \"{id}\": it has stopped"
            )));
        }
        container::start::start(&self.store()?, id)?;
        task.started.store(true, Ordering::SeqCst);
        self.watch_oom(&task);
        self.events.send(TaskEvent::Start(TaskStart {
            container_id: id.to_string(),
            pid: task.pid,
            ..Default::default()
        }));
        Ok(task.pid)
    }

    /// Sends `signal` to the task's process (`all`: to all its processes). A
    /// SIGKILL the agent cannot deliver kills the sandbox process instead.
    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let task = self.task(id)?;
        if task.status() == TaskStatus::Stopped {
            return Err(ShimError::Finished(id.to_string()));
        }
        let signal = Signal::try_from(signal)?;
        let sent = container::kill::kill(&self.store()?, id, signal, all);
        match sent {
            // It exited while the signal was on its way.
            Err(RuntimeError::InvalidState(_)) => Err(ShimError::Finished(id.to_string())),
            Err(e) if signal == Signal::KILL => {
                tracing::warn!("task {id}: {e}; killing its sandbox process instead");
                let pid = nix::unistd::Pid::from_raw(task.pid as i32);
                match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
                    Err(_) => Err(e.into()),
                }
            }
            Ok(()) if signal == Signal::KILL => {
                // A paused task is thawed by the agent after a SIGKILL.
                task.paused.store(false, Ordering::SeqCst);
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// Deletes a task that has stopped or never started: its sandbox and state,
    /// its rootfs mount. Gives its pid and exit.
    pub fn delete(&self, id: &str) -> Result<(u32, Exited)> {
        let task = self.task(id)?;
        if matches!(task.status(), TaskStatus::Running | TaskStatus::Paused) {
            return Err(ShimError::Precondition(format!(
                "cannot delete task \"{id}\": it is running"
            )));
        }
        container::delete::delete(&self.store()?, id, true)?;
        let exited = task
            .exit
            .wait(Some(DELETE_WAIT))
            .ok_or_else(|| ShimError::ExitTimeout {
                id: id.to_string(),
                pid: task.pid,
                secs: DELETE_WAIT.as_secs(),
            })?;
        task.stop_loggers();
        if task.mounted_rootfs {
            rootfs::unmount_all(&rootfs::target(&task.bundle))?;
        }
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        self.events.send(TaskEvent::Delete(TaskDelete {
            container_id: id.to_string(),
            id: id.to_string(),
            pid: task.pid,
            exit_status: exited.status,
            exited_at: MessageField::some(exited.at.clone()),
            ..Default::default()
        }));
        Ok((task.pid, exited))
    }

    /// Closes the task's stdin (once the engine closed its end too, the process
    /// reads end of file).
    pub fn close_stdin(&self, id: &str) -> Result<()> {
        let task = self.task(id)?;
        let writer = task
            .stdin_writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        tracing::info!("task {id}: stdin closed (held: {})", writer.is_some());
        Ok(())
    }

    /// Waits for the task's process to exit.
    pub fn wait(&self, id: &str) -> Result<Exited> {
        let task = self.task(id)?;
        // Without a limit the cell always holds an exit when the wait returns.
        task.exit
            .wait(None)
            .ok_or_else(|| ShimError::Finished(id.to_string()))
    }

    /// The guest PIDs of the task's processes.
    pub fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let task = self.task(id)?;
        if task.status() == TaskStatus::Stopped {
            return Ok(Vec::new());
        }
        Ok(container::ps::ps(&self.store()?, id)?)
    }

    /// Shutdown: the shim exits once it holds no task.
    pub fn shutdown(&self) {
        let empty = self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if empty {
            tracing::info!("shutting down: no task left");
            self.exit.signal();
        } else {
            tracing::info!("shutdown asked while tasks remain: staying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim::protos::ttrpc::Code;

    fn service() -> (Service, tempfile::TempDir, Arc<ExitSignal>) {
        let dir = tempfile::tempdir().unwrap();
        let (events, _rx) = Events::channel();
        let exit = Arc::new(ExitSignal::default());
        let service = Service::new("ns".into(), dir.path().join("ns"), events, exit.clone());
        (service, dir, exit)
    }

    #[test]
    fn unknown_tasks_are_not_found() {
        let (s, _dir, _exit) = service();
        for err in [
            s.start("nope").unwrap_err(),
            s.kill("nope", 9, false).unwrap_err(),
            s.delete("nope").unwrap_err(),
            s.wait("nope").unwrap_err(),
            s.pids("nope").unwrap_err(),
            s.pause("nope").unwrap_err(),
            s.resume("nope").unwrap_err(),
            s.update("nope", b"{}").unwrap_err(),
            s.metrics("nope").unwrap_err(),
        ] {
            assert_eq!(err.code(), Code::NOT_FOUND, "{err}");
            assert_eq!(err.to_string(), "task \"nope\" does not exist in this shim");
        }
    }

    #[test]
    fn checkpoints_are_refused_before_anything_starts() {
        let (s, dir, _exit) = service();
        let err = s
            .create(CreateParams {
                id: "t1".into(),
                bundle: dir.path().join("bundle"),
                terminal: true,
                checkpoint: "/cp".into(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.code(), Code::UNIMPLEMENTED);
        assert!(!dir.path().join("ns").join("t1").exists());
    }

    #[test]
    fn a_bad_bundle_is_named_and_leaves_nothing() {
        let (s, dir, _exit) = service();
        let bundle = dir.path().join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        std::fs::write(bundle.join("config.json"), "{ not json").unwrap();
        let err = s
            .create(CreateParams {
                id: "t1".into(),
                bundle: bundle.clone(),
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(err.code(), Code::INVALID_ARGUMENT, "{err}");
        assert!(err.to_string().contains("config.json"), "{err}");
        assert!(s.task("t1").is_err());
        assert!(!dir.path().join("ns").join("t1").exists());
    }

    #[test]
    fn shutdown_ends_the_shim_only_without_tasks() {
        let (s, _dir, exit) = service();
        s.shutdown();
        // Returns at once: the exit signal was given.
        exit.wait();
    }
}
