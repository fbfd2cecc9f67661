//! A cgroup v2 per container: `<root>/husk/<container-id>`.
//!
//! The agent mounts cgroup2 at `/sys/fs/cgroup`; [`CgroupRoot`] takes that path (tests
//! give a temporary directory standing in for it). The first container enables the
//! controllers it can (`cpu`, `memory`, `pids`, `io`, `cpuset`, those the kernel lists
//! in `cgroup.controllers`) in the root's and `husk`'s `cgroup.subtree_control`.
//!
//! - [`resources`]: OCI `linux.resources` to cgroup files.
//! - [`stats`]: the cgroup's figures.

pub mod resources;
pub mod stats;

use husk_protocol::{AgentError, ErrorCode};
use nix::unistd::Pid;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The controllers enabled for containers, where the kernel has them.
pub const CONTROLLERS: &[&str] = &["cpu", "memory", "pids", "io", "cpuset"];
/// The directory under the root that holds the containers' cgroups.
const PARENT: &str = "husk";
/// The longest name a cgroup directory can have.
const MAX_NAME_LEN: usize = 255;
/// How often `cgroup.events` is read while waiting for a freeze or thaw.
const FREEZE_POLL: Duration = Duration::from_millis(5);

/// Where cgroup2 is mounted, and the one-time set-up of `husk`.
#[derive(Debug)]
pub struct CgroupRoot {
    root: PathBuf,
    setup: OnceLock<Result<(), String>>,
}

/// One container's cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

impl CgroupRoot {
    /// cgroup2 mounted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupRoot {
            root: root.into(),
            setup: OnceLock::new(),
        }
    }

    /// Creates the cgroup of container `id` (refused if `id` is no plain file
    /// name), enabling the controllers first if this is the first one.
    pub fn create(&self, id: &str) -> Result<Cgroup, AgentError> {
        check_name(id)?;
        self.setup
            .get_or_init(|| self.enable_controllers().map_err(|e| e.to_string()))
            .clone()
            .map_err(|e| {
                internal(format!(
                    "cannot set up cgroups under {}: {e}",
                    self.root.display()
                ))
            })?;
        let path = self.root.join(PARENT).join(id);
        std::fs::create_dir(&path).map_err(|e| {
            let code = match e.kind() {
                io::ErrorKind::AlreadyExists => ErrorCode::AlreadyExists,
                _ => ErrorCode::Internal,
            };
            AgentError::new(
                code,
                format!("cannot create cgroup {}: {e}", path.display()),
            )
        })?;
        Ok(Cgroup { path })
    }

    /// `+controller` for each wanted one the root offers, in the root's and
    /// `husk`'s `cgroup.subtree_control`; one the kernel refuses is left out.
    fn enable_controllers(&self) -> io::Result<()> {
        let offered = std::fs::read_to_string(self.root.join("cgroup.controllers"))?;
        let offered: Vec<&str> = offered.split_whitespace().collect();
        let parent = self.root.join(PARENT);
        match std::fs::create_dir(&parent) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        for dir in [&self.root, &parent] {
            for controller in CONTROLLERS.iter().filter(|c| offered.contains(c)) {
                if let Err(e) = write_file(
                    &dir.join("cgroup.subtree_control"),
                    &format!("+{controller}"),
                ) {
                    println!(
                        "husk-agent: cgroup controller {controller} not enabled in {}: {e}",
                        dir.display()
                    );
                }
            }
        }
        Ok(())
    }
}

impl Cgroup {
    /// The cgroup's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `cgroup.procs`, open for writing: a process that writes `0` to it joins the
    /// cgroup (a child joining itself before it unshares a cgroup namespace).
    pub fn procs_for_joining(&self) -> Result<std::fs::File, AgentError> {
        let path = self.path.join("cgroup.procs");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| internal(format!("cannot open {}: {e}", path.display())))
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: Pid) -> Result<(), AgentError> {
        write_file(&self.path.join("cgroup.procs"), &pid.to_string()).map_err(|e| {
            internal(format!(
                "cannot move process {pid} into cgroup {}: {e}",
                self.path.display()
            ))
        })
    }

    /// Freezes (`true`) or thaws the cgroup, then waits until `cgroup.events` says
    /// `frozen` matches, for at most `timeout`.
    pub fn freeze(&self, frozen: bool, timeout: Duration) -> Result<(), AgentError> {
        let what = if frozen { "freeze" } else { "thaw" };
        write_file(
            &self.path.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
        )
        .map_err(|e| internal(format!("cannot {what} cgroup {}: {e}", self.path.display())))?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.frozen() {
                Ok(now) if now == frozen => return Ok(()),
                Ok(_) => {}
                Err(e) => {
                    return Err(internal(format!(
                        "cannot read {}/cgroup.events: {e}",
                        self.path.display()
                    )))
                }
            }
            if Instant::now() >= deadline {
                return Err(internal(format!(
                    "cgroup {} did not {what} within {timeout:?}",
                    self.path.display()
                )));
            }
            std::thread::sleep(FREEZE_POLL);
        }
    }

    /// Whether `cgroup.events` says the cgroup is frozen.
    pub fn frozen(&self) -> io::Result<bool> {
        let events = std::fs::read_to_string(self.path.join("cgroup.events"))?;
        Ok(stats::keyed(&events, "frozen") == Some(1))
    }

    /// Kills every process in the cgroup (`cgroup.kill`, which also ends a frozen
    /// one) and waits until `cgroup.events` says it is empty, until `deadline`.
    pub fn kill_all(&self, deadline: Instant) -> Result<(), AgentError> {
        let path = &self.path;
        write_file(&path.join("cgroup.kill"), "1")
            .map_err(|e| internal(format!("cannot kill cgroup {}: {e}", path.display())))?;
        loop {
            let events = std::fs::read_to_string(path.join("cgroup.events")).map_err(|e| {
                internal(format!("cannot read {}/cgroup.events: {e}", path.display()))
            })?;
            if stats::keyed(&events, "populated") == Some(0) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(internal(format!(
                    "cgroup {} still holds processes after cgroup.kill",
                    path.display()
                )));
            }
            std::thread::sleep(FREEZE_POLL);
        }
    }

    /// Writes the thaw request without waiting (after a SIGKILL, say).
    pub fn thaw_now(&self) -> io::Result<()> {
        write_file(&self.path.join("cgroup.freeze"), "0")
    }

    /// Removes the cgroup directory (it must hold no process).
    pub fn remove(&self) -> io::Result<()> {
        std::fs::remove_dir(&self.path)
    }
}

/// A container id must be usable as one directory name: no `/`, not `.` or `..`,
/// no NUL, at most 255 bytes.
pub fn check_name(id: &str) -> Result<(), AgentError> {
    let bad = id.is_empty()
        || id == "."
        || id == ".."
        || id.contains('/')
        || id.contains('\0')
        || id.len() > MAX_NAME_LEN;
    if bad {
        return Err(AgentError::new(
            ErrorCode::InvalidArgument,
            format!(
                "container_id {id:?} cannot name a cgroup: it must be 1 to {MAX_NAME_LEN} bytes, \
                 without '/' or NUL, and not \".\" or \"..\""
            ),
        ));
    }
    Ok(())
}

/// Writes `value` to a cgroup file in one `write` (truncating, as cgroupfs expects).
fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)?;
    file.write_all(value.as_bytes())
}

fn internal(message: String) -> AgentError {
    AgentError::new(ErrorCode::Internal, message)
}

#[cfg(test)]
mod tests;
