//! Containers: their processes, held between create and start, their streams, and
//! their exits.
//!
//! - [`spec`]: the OCI fields applied, validated.
//! - [`rootfs`]: the container's tree: mounts, devices, masked and read-only paths.
//! - [`isolation`]: the process and security fields gathered before `fork`:
//!   [`security`] (capabilities, noNewPrivileges), [`limits`] (rlimits, oomScoreAdj,
//!   sysctl), [`seccomp`] (the profile compiled to BPF, with the `syscalls` table).
//! - [`spawn`] and [`child`]: forking a process held before `execve`.
//! - [`reaper`]: reaping children, exit statuses.
//! - [`stdio`]: pipes or a terminal per process, handed to stream relays.
//! - [`relay`]: copying a stream between its pipe and a connection.
//! - [`stats`]: usage from `/proc`.
//! - [`cgroup`]: a cgroup v2 per container: limits, freezing, figures, OOM kills.
//! - `control`: the container requests on the cgroup: pause, resume, update, OOM
//!   events.
//!
//! What is applied and what is not is listed in `docs/protocol.md`.

pub mod cgroup;
pub mod child;
mod control;
pub mod isolation;
pub mod limits;
pub mod namespaces;
pub mod reaper;
pub mod relay;
pub mod rootfs;
pub mod seccomp;
pub mod security;
pub mod spawn;
pub mod spec;
pub mod stats;
pub mod stdio;
mod syscalls;

pub use reaper::Reaper;

use crate::network::namespace::ContainerNetwork;
use cgroup::{Cgroup, CgroupRoot};
use husk_protocol::{
    AgentError, ContainerStats, ErrorCode, ExitStatus, RequestBody, ResponseBody, StreamHello,
};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use reaper::lock;
use spawn::{Held, Where};
use spec::Launch;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use stdio::{Attached, Streams};

/// The longest container or exec ID accepted.
const MAX_ID_LEN: usize = 256;
/// How long `remove_container` waits for a container's processes to end.
pub const REMOVE_WAIT: Duration = Duration::from_secs(10);
/// The longest `oom_event` wait.
pub const MAX_OOM_WAIT: Duration = Duration::from_secs(60);

/// The containers of this agent, by ID.
#[derive(Debug)]
pub struct Containers {
    reaper: Arc<Reaper>,
    /// Where container cgroups are made; `None`: containers get none (tests).
    cgroups: Option<CgroupRoot>,
    table: Mutex<HashMap<String, Arc<Container>>>,
}

/// One container.
#[derive(Debug)]
struct Container {
    init: Process,
    /// The held first process until `start_container`.
    held: Mutex<Option<Held>>,
    execs: Mutex<HashMap<String, Arc<Process>>>,
    /// Its cgroup, where the agent has cgroups.
    cgroup: Option<Cgroup>,
    /// Whether it is paused; held while an exec joins the cgroup and while it is
    /// frozen or thawed, so that no process is started into a frozen cgroup.
    paused: Mutex<bool>,
    /// The `oom_kill` count last reported by `oom_event`.
    oom_reported: AtomicU64,
    /// `linux.seccomp`, compiled, for exec'd processes too.
    seccomp: Option<Arc<seccomp::Program>>,
    /// Its own network namespace, holding the guest's interfaces until dropped.
    #[allow(dead_code)] // Held for its `Drop`.
    network: Option<ContainerNetwork>,
}

/// A process of a container.
#[derive(Debug)]
struct Process {
    pid: Pid,
    streams: Streams,
}

impl Containers {
    /// An empty table whose processes `reaper` reaps.
    pub fn new(reaper: Arc<Reaper>) -> Self {
        Containers {
            reaper,
            cgroups: None,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// The reaper of the containers' processes.
    pub fn reaper(&self) -> &Arc<Reaper> {
        &self.reaper
    }

    /// Gives each container a cgroup under cgroup2 mounted at `root`.
    pub fn with_cgroups(mut self, root: CgroupRoot) -> Self {
        self.cgroups = Some(root);
        self
    }

    /// Serves a container request; `proc_root` is where `stats` reads. Blocks for
    /// `wait` until the process exits. `None` for requests that are not about
    /// containers.
    pub fn serve(
        &self,
        body: RequestBody,
        proc_root: &Path,
    ) -> Option<Result<ResponseBody, AgentError>> {
        Some(match body {
            RequestBody::CreateContainer {
                container_id,
                bundle_spec,
                rootfs,
            } => self
                .create(&container_id, &bundle_spec, Path::new(&rootfs))
                .map(|pid| ResponseBody::Created { pid }),
            RequestBody::StartContainer { container_id } => self
                .start(&container_id)
                .map(|pid| ResponseBody::Started { pid }),
            RequestBody::Signal {
                container_id,
                exec_id,
                signal,
            } => self
                .signal(&container_id, exec_id.as_deref(), signal)
                .map(|()| ResponseBody::Done),
            RequestBody::Wait {
                container_id,
                exec_id,
            } => self
                .wait(&container_id, exec_id.as_deref())
                .map(ResponseBody::Exited),
            RequestBody::Exec {
                container_id,
                exec_id,
                process,
            } => self
                .exec(&container_id, &exec_id, &process)
                .map(|pid| ResponseBody::Started { pid }),
            RequestBody::ResizeTty {
                container_id,
                exec_id,
                rows,
                cols,
            } => self
                .resize_tty(&container_id, exec_id.as_deref(), rows, cols)
                .map(|()| ResponseBody::Done),
            RequestBody::CloseStdin {
                container_id,
                exec_id,
            } => self
                .close_stdin(&container_id, exec_id.as_deref())
                .map(|()| ResponseBody::Done),
            RequestBody::Stats { container_id } => self
                .stats(&container_id, proc_root)
                .map(ResponseBody::Stats),
            RequestBody::Processes { container_id } => self
                .processes(&container_id, proc_root)
                .map(|pids| ResponseBody::Processes { pids }),
            RequestBody::Pause { container_id } => {
                self.pause(&container_id, true).map(|()| ResponseBody::Done)
            }
            RequestBody::Resume { container_id } => self
                .pause(&container_id, false)
                .map(|()| ResponseBody::Done),
            RequestBody::Update {
                container_id,
                resources,
            } => self
                .update(&container_id, &resources)
                .map(|()| ResponseBody::Done),
            RequestBody::RemoveContainer { container_id } => {
                self.remove(&container_id).map(|()| ResponseBody::Done)
            }
            RequestBody::OomEvent { timeout_ms } => {
                let wait = Duration::from_millis(timeout_ms).min(MAX_OOM_WAIT);
                Ok(ResponseBody::OomEvent {
                    container_id: self.oom_event(wait),
                })
            }
            _ => return None,
        })
    }

    /// Creates a container: forks its first process, set up and held before exec.
    pub fn create(
        &self,
        id: &str,
        spec: &serde_json::Value,
        rootfs: &Path,
    ) -> Result<u32, AgentError> {
        check_id("container_id", id)?;
        let exists = || {
            AgentError::new(
                ErrorCode::AlreadyExists,
                format!("container {id:?} already exists"),
            )
        };
        if lock(&self.table).contains_key(id) {
            return Err(exists());
        }
        let (launch, hostname) = spec::parse_bundle(spec)?;
        let setup = isolation::container_setup(spec, hostname.is_some())?;
        if !rootfs.is_absolute() || !rootfs.is_dir() {
            return Err(AgentError::new(
                ErrorCode::InvalidArgument,
                format!("rootfs {} is not an existing directory", rootfs.display()),
            ));
        }
        let tree = rootfs::parse(spec)?.with_implicit_proc(rootfs);
        let resources = cgroup::resources::plan(&spec["linux"]["resources"])?;
        let mut joined = namespaces::open_all(&setup.join)?;
        let network = if setup.new_network {
            let network = ContainerNetwork::new()?;
            joined.push(namespaces::Joined {
                kind: CloneFlags::CLONE_NEWNET,
                fd: network.namespace()?,
            });
            Some(network)
        } else {
            None
        };
        let cgroup = match &self.cgroups {
            Some(root) => {
                let cgroup = root.create(id)?;
                if let Err(e) = cgroup.apply(&resources, false) {
                    let _ = cgroup.remove();
                    return Err(e);
                }
                Some(cgroup)
            }
            None => None,
        };
        // With a cgroup namespace, the child joins its cgroup itself before it
        // unshares the namespace, so that the namespace is rooted there.
        let join = match &cgroup {
            Some(cgroup) if setup.namespaces.contains(CloneFlags::CLONE_NEWCGROUP) => {
                match cgroup.procs_for_joining() {
                    Ok(file) => Some(file),
                    Err(e) => {
                        let _ = cgroup.remove();
                        return Err(e);
                    }
                }
            }
            _ => None,
        };
        let place = Where::New {
            rootfs,
            hostname: hostname.as_deref(),
            tree: &tree,
            setup: &setup,
            join_cgroup: join.as_ref().map(std::os::fd::AsFd::as_fd),
            joined: &joined,
        };
        // The held process joins the cgroup before it may exec. On failure it ends
        // when its start pipe closes, outside the cgroup, which goes at once.
        let spawned = self.spawn(&launch, place).and_then(|(process, held)| {
            if let Some(cgroup) = &cgroup {
                cgroup.add(process.pid)?;
            }
            Ok((process, held))
        });
        let (process, held) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => {
                if let Some(cgroup) = &cgroup {
                    let _ = cgroup.remove();
                }
                return Err(e);
            }
        };
        let pid = process.pid;
        let container = Arc::new(Container {
            init: process,
            held: Mutex::new(Some(held)),
            execs: Mutex::new(HashMap::new()),
            cgroup,
            paused: Mutex::new(false),
            oom_reported: AtomicU64::new(0),
            seccomp: setup.seccomp.clone(),
            network,
        });
        let mut table = lock(&self.table);
        if table.contains_key(id) {
            // Unreachable in practice: the cgroup's creation refused a second
            // container of this id. This one's held process ends when its start
            // pipe closes, as `container` is dropped.
            return Err(exists());
        }
        table.insert(id.to_owned(), container);
        Ok(pid.as_raw() as u32)
    }

    /// Lets a created container's first process exec.
    pub fn start(&self, id: &str) -> Result<u32, AgentError> {
        let container = self.container(id)?;
        let paused = lock(&container.paused);
        if *paused {
            return Err(is_paused(id));
        }
        let held = lock(&container.held).take().ok_or_else(|| {
            AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("container {id:?} was started already"),
            )
        })?;
        held.release()?;
        drop(paused);
        Ok(container.init.pid.as_raw() as u32)
    }

    /// Removes a container (one of several in a pod's VM): kills whatever of it
    /// still runs, waits for its processes to be gone (at most [`REMOVE_WAIT`]),
    /// removes its cgroup and forgets it.
    pub fn remove(&self, id: &str) -> Result<(), AgentError> {
        let container = self.container(id)?;
        // A held process ends when its start pipe closes.
        drop(lock(&container.held).take());
        let deadline = Instant::now() + REMOVE_WAIT;
        if let Some(cgroup) = &container.cgroup {
            cgroup.kill_all(deadline)?;
        } else {
            let _ = self.reaper.kill(container.init.pid, Signal::SIGKILL);
        }
        if self
            .reaper
            .wait(container.init.pid, Some(deadline))
            .is_none()
        {
            return Err(AgentError::new(
                ErrorCode::Internal,
                format!("container {id:?}: its process did not end within {REMOVE_WAIT:?}"),
            ));
        }
        if let Some(cgroup) = &container.cgroup {
            cgroup.remove().map_err(|e| {
                AgentError::new(
                    ErrorCode::Internal,
                    format!("cannot remove cgroup {}: {e}", cgroup.path().display()),
                )
            })?;
        }
        lock(&self.table).remove(id);
        Ok(())
    }

    /// Sends a signal to a process of a container.
    pub fn signal(&self, id: &str, exec_id: Option<&str>, signal: i32) -> Result<(), AgentError> {
        let signal = Signal::try_from(signal).map_err(|_| {
            AgentError::new(
                ErrorCode::InvalidArgument,
                format!("{signal} is not a signal number"),
            )
        })?;
        let process = self.process(id, exec_id)?;
        self.reaper.kill(process.pid, signal).map_err(|e| {
            let code = match e {
                reaper::KillError::Exited => ErrorCode::FailedPrecondition,
                reaper::KillError::Kill(_) => ErrorCode::Internal,
            };
            AgentError::new(code, format!("cannot signal {}: {e}", name(id, exec_id)))
        })?;
        // As runc: a paused container is thawed after a SIGKILL, so that every
        // process of it can die (and the next start is not refused as paused).
        if signal == Signal::SIGKILL {
            let container = self.container(id)?;
            let mut paused = lock(&container.paused);
            if let (true, Some(cgroup)) = (*paused, &container.cgroup) {
                cgroup.thaw_now().map_err(|e| {
                    AgentError::new(
                        ErrorCode::Internal,
                        format!("cannot thaw container {id:?} after SIGKILL: {e}"),
                    )
                })?;
                *paused = false;
            }
        }
        Ok(())
    }

    /// Waits until a process of a container has exited.
    pub fn wait(&self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, AgentError> {
        let process = self.process(id, exec_id)?;
        self.reaper.wait(process.pid, None).ok_or_else(|| {
            AgentError::new(
                ErrorCode::Internal,
                format!("{} is not tracked by the reaper", name(id, exec_id)),
            )
        })
    }

    /// Starts another process in a running container, at once: its output waits in
    /// its pipes until the host attaches streams.
    pub fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
    ) -> Result<u32, AgentError> {
        check_id("exec_id", exec_id)?;
        let container = self.container(id)?;
        let exists = || {
            AgentError::new(
                ErrorCode::AlreadyExists,
                format!("exec {exec_id:?} already exists in container {id:?}"),
            )
        };
        if lock(&container.execs).contains_key(exec_id) {
            return Err(exists());
        }
        let running =
            lock(&container.held).is_none() && self.reaper.status(container.init.pid).is_none();
        if !running {
            return Err(AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("container {id:?} is not running"),
            ));
        }
        let launch = spec::parse_process(process)?;
        let place = Where::Enter {
            init: container.init.pid,
            seccomp: container.seccomp.as_deref(),
        };
        let paused = lock(&container.paused);
        if *paused {
            return Err(is_paused(id));
        }
        let (process, held) = self.spawn(&launch, place)?;
        if let Some(cgroup) = &container.cgroup {
            // On failure the held process ends when its start pipe closes.
            cgroup.add(process.pid)?;
        }
        let pid = process.pid;
        {
            let mut execs = lock(&container.execs);
            if execs.contains_key(exec_id) {
                return Err(exists());
            }
            execs.insert(exec_id.to_owned(), Arc::new(process));
        }
        held.release()?;
        drop(paused);
        Ok(pid.as_raw() as u32)
    }

    /// Closes a process's stdin.
    pub fn close_stdin(&self, id: &str, exec_id: Option<&str>) -> Result<(), AgentError> {
        let process = self.process(id, exec_id)?;
        process.streams.close_stdin(&name(id, exec_id))
    }

    /// Resizes a process's terminal.
    pub fn resize_tty(
        &self,
        id: &str,
        exec_id: Option<&str>,
        rows: u16,
        cols: u16,
    ) -> Result<(), AgentError> {
        let process = self.process(id, exec_id)?;
        let master = process.streams.pty_master().ok_or_else(|| {
            AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("{} has no terminal", name(id, exec_id)),
            )
        })?;
        stdio::resize(master, rows, cols)
    }

    /// Usage of a container's processes and their descendants.
    pub fn stats(&self, id: &str, proc_root: &Path) -> Result<ContainerStats, AgentError> {
        let roots = self.roots(id)?;
        let mut stats = stats::collect(proc_root, &roots).map_err(|e| proc_error(proc_root, e))?;
        if let Some(cgroup) = &self.container(id)?.cgroup {
            stats.cgroup = Some(cgroup.stats().map_err(|e| {
                AgentError::new(
                    ErrorCode::Internal,
                    format!("cannot read cgroup {}: {e}", cgroup.path().display()),
                )
            })?);
        }
        Ok(stats)
    }

    /// Guest PIDs of a container's processes and their descendants.
    pub fn processes(&self, id: &str, proc_root: &Path) -> Result<Vec<i32>, AgentError> {
        let roots = self.roots(id)?;
        stats::pids(proc_root, &roots).map_err(|e| proc_error(proc_root, e))
    }

    /// A container's own process and its exec'd ones.
    fn roots(&self, id: &str) -> Result<Vec<i32>, AgentError> {
        let container = self.container(id)?;
        let mut roots = vec![container.init.pid.as_raw()];
        roots.extend(lock(&container.execs).values().map(|p| p.pid.as_raw()));
        Ok(roots)
    }

    /// Hands out a stream of a process to a relay.
    pub fn attach(&self, hello: &StreamHello) -> Result<Attached, AgentError> {
        let exec_id = hello.exec_id.as_deref();
        let process = self.process(&hello.container_id, exec_id)?;
        process
            .streams
            .attach(hello.stream, &name(&hello.container_id, exec_id))
    }

    /// Forks a held process with new streams.
    fn spawn(&self, launch: &Launch, place: Where<'_>) -> Result<(Process, Held), AgentError> {
        let (child, streams) = stdio::create(launch.terminal, launch.console_size)?;
        let (pid, held) = spawn::spawn(&self.reaper, launch, child, place)?;
        Ok((Process { pid, streams }, held))
    }

    fn container(&self, id: &str) -> Result<Arc<Container>, AgentError> {
        lock(&self.table)
            .get(id)
            .cloned()
            .ok_or_else(|| AgentError::new(ErrorCode::NotFound, format!("no container {id:?}")))
    }

    /// The container's first process (`exec_id` `None`) or an exec'd one.
    fn process(&self, id: &str, exec_id: Option<&str>) -> Result<ProcessRef, AgentError> {
        let container = self.container(id)?;
        let Some(exec_id) = exec_id else {
            return Ok(ProcessRef::Init(container));
        };
        let exec = lock(&container.execs).get(exec_id).cloned();
        exec.map(ProcessRef::Exec).ok_or_else(|| {
            AgentError::new(
                ErrorCode::NotFound,
                format!("no exec {exec_id:?} in container {id:?}"),
            )
        })
    }
}

/// A process, kept alive by its container or its own reference.
enum ProcessRef {
    Init(Arc<Container>),
    Exec(Arc<Process>),
}

impl std::ops::Deref for ProcessRef {
    type Target = Process;

    fn deref(&self) -> &Process {
        match self {
            ProcessRef::Init(container) => &container.init,
            ProcessRef::Exec(process) => process,
        }
    }
}

/// A dropped table ends its processes (the agent's table lives as long as the agent;
/// this is for tests and embedders). Held processes end on their own when their
/// start pipe closes.
impl Drop for Containers {
    fn drop(&mut self) {
        for container in lock(&self.table).values() {
            let _ = self.reaper.kill(container.init.pid, Signal::SIGKILL);
            for exec in lock(&container.execs).values() {
                let _ = self.reaper.kill(exec.pid, Signal::SIGKILL);
            }
        }
    }
}

/// How messages name a process.
fn name(id: &str, exec_id: Option<&str>) -> String {
    match exec_id {
        None => format!("container {id:?}"),
        Some(exec_id) => format!("exec {exec_id:?} of container {id:?}"),
    }
}

fn is_paused(id: &str) -> AgentError {
    AgentError::new(
        ErrorCode::FailedPrecondition,
        format!("container {id:?} is paused"),
    )
}

fn check_id(what: &str, id: &str) -> Result<(), AgentError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(AgentError::new(
            ErrorCode::InvalidArgument,
            format!("{what} must be 1 to {MAX_ID_LEN} bytes long"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// `/proc` could not be read.
fn proc_error(proc_root: &Path, e: std::io::Error) -> AgentError {
    AgentError::new(
        ErrorCode::Internal,
        format!("cannot read {}: {e}", proc_root.display()),
    )
}
