//! Namespaces entered around the fork: those joined by a guest path (opened and
//! checked before the fork, entered by the child with `setns`), and the pid
//! namespace, which only a process's children enter: the child is forked from a
//! short-lived thread that unshared a new pid namespace or entered an existing one.
//!
//! A thread may do both in a multi-threaded process (unlike the mount or user
//! namespace), and they change only that thread's namespace for children. The
//! forked child's parent is the agent: the thread's exit hands it to another
//! thread of the agent, so the reaper still reaps it.

use super::isolation::JoinSpec;
use husk_protocol::{AgentError, ErrorCode};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

// `NS_GET_NSTYPE` (linux/nsfs.h): the `CLONE_NEW*` type of a namespace file.
nix::ioctl_none!(ns_get_nstype, 0xb7, 3);

/// A namespace joined by its guest path, opened.
#[derive(Debug)]
pub struct Joined {
    /// Its type, one `CLONE_NEW*` flag.
    pub kind: CloneFlags,
    /// The namespace file.
    pub fd: OwnedFd,
}

/// The pid namespace a child is forked into.
#[derive(Debug, Clone, Copy)]
pub enum PidNamespace<'a> {
    /// A new one, whose PID 1 the child is.
    New,
    /// An existing one.
    Join(BorrowedFd<'a>),
}

/// The name of a namespace type, as in `linux.namespaces`.
pub fn kind_name(kind: CloneFlags) -> &'static str {
    const NAMES: [(CloneFlags, &str); 7] = [
        (CloneFlags::CLONE_NEWNS, "mount"),
        (CloneFlags::CLONE_NEWUTS, "uts"),
        (CloneFlags::CLONE_NEWIPC, "ipc"),
        (CloneFlags::CLONE_NEWNET, "network"),
        (CloneFlags::CLONE_NEWPID, "pid"),
        (CloneFlags::CLONE_NEWCGROUP, "cgroup"),
        (CloneFlags::CLONE_NEWUSER, "user"),
    ];
    NAMES
        .iter()
        .find(|(flag, _)| *flag == kind)
        .map_or("unknown", |(_, name)| name)
}

/// Opens the namespace of `spec` and checks that it is one of its type.
pub fn open_joined(spec: &JoinSpec) -> Result<Joined, AgentError> {
    let name = kind_name(spec.kind);
    let path = &spec.path;
    let fd = open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        AgentError::new(
            ErrorCode::InvalidArgument,
            format!(
                "linux.namespaces: cannot open the {name} namespace {path:?}: {}",
                e.desc()
            ),
        )
    })?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the descriptor, which
    // is open.
    match unsafe { ns_get_nstype(fd.as_raw_fd()) } {
        Ok(kind) if kind == spec.kind.bits() => Ok(Joined {
            kind: spec.kind,
            fd,
        }),
        Ok(kind) => Err(AgentError::new(
            ErrorCode::InvalidArgument,
            format!(
                "linux.namespaces: {path:?} is a {} namespace (a {name} namespace expected)",
                kind_name(CloneFlags::from_bits_truncate(kind))
            ),
        )),
        Err(e) => Err(AgentError::new(
            ErrorCode::InvalidArgument,
            format!(
                "linux.namespaces: {path:?} is not a namespace file ({})",
                e.desc()
            ),
        )),
    }
}

/// Opens the namespaces of `specs`.
pub fn open_all(specs: &[JoinSpec]) -> Result<Vec<Joined>, AgentError> {
    specs.iter().map(open_joined).collect()
}

/// Opens `/proc/<pid>/ns/<name>` if it is not the agent's own namespace of that
/// name; `None` when it is.
pub fn own_namespace(pid: Pid, name: &str) -> Result<Option<OwnedFd>, AgentError> {
    let path = format!("/proc/{pid}/ns/{name}");
    let cannot = |e: String| {
        AgentError::new(
            ErrorCode::FailedPrecondition,
            format!("cannot enter the container ({path}): {e}"),
        )
    };
    let theirs = std::fs::metadata(&path).map_err(|e| cannot(e.to_string()))?;
    let ours =
        std::fs::metadata(format!("/proc/self/ns/{name}")).map_err(|e| cannot(e.to_string()))?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Ok(None);
    }
    open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map(Some)
    .map_err(|e| cannot(e.desc().to_owned()))
}

/// Runs `fork` (which forks once and gives back the child's PID in the parent)
/// on a short-lived thread whose children go into `pid_ns`.
pub fn fork_into(
    pid_ns: PidNamespace<'_>,
    fork: impl FnOnce() -> nix::Result<Pid> + Send,
) -> nix::Result<Pid> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("agent-fork-pidns".into())
            .spawn_scoped(scope, move || {
                match pid_ns {
                    PidNamespace::New => unshare(CloneFlags::CLONE_NEWPID)?,
                    PidNamespace::Join(fd) => setns(fd.as_fd(), CloneFlags::CLONE_NEWPID)?,
                }
                fork()
            })
            .map_err(|_| Errno::EAGAIN)?;
        thread.join().unwrap_or(Err(Errno::ECHILD))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_path_is_checked_for_its_type() {
        let spec = |kind, path: &str| JoinSpec {
            kind,
            path: path.into(),
        };
        // Every process may open its own namespaces; the type must match.
        let own = open_joined(&spec(CloneFlags::CLONE_NEWNET, "/proc/self/ns/net"));
        if let Ok(joined) = own {
            assert_eq!(joined.kind, CloneFlags::CLONE_NEWNET);
            let wrong =
                open_joined(&spec(CloneFlags::CLONE_NEWIPC, "/proc/self/ns/net")).unwrap_err();
            assert!(
                wrong
                    .message
                    .contains("is a network namespace (a ipc namespace expected)"),
                "{}",
                wrong.message
            );
        }
        let missing =
            open_joined(&spec(CloneFlags::CLONE_NEWUTS, "/proc/0/ns/husk-none")).unwrap_err();
        assert!(missing
            .message
            .contains("cannot open the uts namespace \"/proc/0/ns"));
        let plain = open_joined(&spec(CloneFlags::CLONE_NEWUTS, "/proc/self/stat")).unwrap_err();
        assert!(
            plain.message.contains("not a namespace file"),
            "{}",
            plain.message
        );
        assert_eq!(kind_name(CloneFlags::CLONE_NEWCGROUP), "cgroup");
    }
}
