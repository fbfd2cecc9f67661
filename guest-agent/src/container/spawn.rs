//! Forking a process held before `execve`, and releasing it.
//!
//! Two pipes join the agent and the child: the *start* pipe (the agent writes one
//! byte to let the child exec) and the close-on-exec *report* pipe (the child writes
//! a record when its setup is done or fails, and one if `execve` fails; end of file
//! after the start means `execve` succeeded).

use super::child::{self, CStrArray, Failure, Plan, Stage, RECORD_LEN};
use super::isolation::ContainerSetup;
use super::limits;
use super::namespaces::{self, Joined, PidNamespace};
use super::reaper::Reaper;
use super::rootfs::RootfsPlan;
use super::seccomp::Program;
use super::spec::Launch;
use super::stdio::ChildStdio;
use husk_protocol::{AgentError, ErrorCode};
use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::resource::{getrlimit, Resource};
use nix::sys::stat::Mode;
use nix::unistd::{fork, pipe2, ForkResult, Gid, Pid, Uid};
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

/// Where a new process runs, as the agent sees it.
#[derive(Debug, Clone, Copy)]
pub enum Where<'a> {
    /// A new container on `rootfs`.
    New {
        /// The root filesystem, a directory.
        rootfs: &'a Path,
        /// The hostname, if the spec sets one.
        hostname: Option<&'a str>,
        /// Its mounts, devices, masked and read-only paths.
        tree: &'a RootfsPlan,
        /// Namespaces, domain name, sysctls and seccomp.
        setup: &'a ContainerSetup,
        /// The container cgroup's `cgroup.procs`, for a child that joins it itself
        /// (before it unshares a cgroup namespace).
        join_cgroup: Option<BorrowedFd<'a>>,
        /// The namespaces joined by path, and the network namespace the agent made
        /// for the container.
        joined: &'a [Joined],
    },
    /// The container whose first process is `init`.
    Enter {
        /// The container's first process.
        init: Pid,
        /// The container's seccomp filter.
        seccomp: Option<&'a Program>,
    },
}

/// A forked child, set up and waiting for [`Held::release`].
#[derive(Debug)]
pub struct Held {
    start: File,
    report: File,
    program: String,
    searched: Option<String>,
}

/// Forks a process for `launch` with the child ends `stdio`, tracked by `reaper`;
/// gives back its PID once its setup is done.
pub fn spawn(
    reaper: &Arc<Reaper>,
    launch: &Launch,
    stdio: ChildStdio,
    place: Where<'_>,
) -> Result<(Pid, Held), AgentError> {
    let internal = |what: &str, e: Errno| {
        AgentError::new(ErrorCode::Internal, format!("{what}: {}", e.desc()))
    };
    let (start_r, start_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| internal("pipe", e))?;
    let (report_r, report_w) = pipe2(OFlag::O_CLOEXEC).map_err(|e| internal("pipe", e))?;
    let rootfs_c;
    let console_c;
    let join: Vec<(BorrowedFd<'_>, CloneFlags)>;
    let entered: Vec<(OwnedFd, CloneFlags)>;
    let root: OwnedFd;
    let pid_ns: Option<PidNamespace<'_>>;
    let (place_plan, mut keep, sysctl, seccomp) = match place {
        Where::New {
            rootfs,
            hostname,
            tree,
            setup,
            join_cgroup,
            joined,
        } => {
            rootfs_c = CString::new(rootfs.as_os_str().as_bytes()).map_err(|_| {
                AgentError::new(ErrorCode::InvalidArgument, "rootfs contains a NUL byte")
            })?;
            console_c = match &stdio {
                ChildStdio::Pty(slave) => Some(terminal_path(slave.as_fd())?),
                ChildStdio::Pipes { .. } => None,
            };
            // A pid namespace is entered by the fork, the others by the child.
            let (pid, others): (Vec<&Joined>, Vec<&Joined>) = joined
                .iter()
                .partition(|j| j.kind == CloneFlags::CLONE_NEWPID);
            pid_ns = match pid.first() {
                Some(joined) => Some(PidNamespace::Join(joined.fd.as_fd())),
                None if setup.new_pid => Some(PidNamespace::New),
                None => None,
            };
            join = others.iter().map(|j| (j.fd.as_fd(), j.kind)).collect();
            let plan = child::Place::New {
                rootfs: &rootfs_c,
                tree,
                hostname,
                console: console_c.as_deref(),
                namespaces: setup.namespaces,
                join: &join,
                domainname: setup.domainname.as_deref(),
                join_cgroup,
            };
            let keep: Vec<RawFd> = join_cgroup
                .iter()
                .map(|fd| fd.as_raw_fd())
                .chain(joined.iter().map(|j| j.fd.as_raw_fd()))
                .collect();
            (plan, keep, &setup.sysctl[..], setup.seccomp.as_deref())
        }
        Where::Enter { init, seccomp } => {
            let open_at = |name: &str, flags: OFlag| {
                let path = format!("/proc/{init}/{name}");
                open(path.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
                    AgentError::new(
                        ErrorCode::FailedPrecondition,
                        format!("cannot enter the container ({path}): {}", e.desc()),
                    )
                })
            };
            let mut list = vec![
                (open_at("ns/mnt", OFlag::O_RDONLY)?, CloneFlags::CLONE_NEWNS),
                (
                    open_at("ns/uts", OFlag::O_RDONLY)?,
                    CloneFlags::CLONE_NEWUTS,
                ),
                (
                    open_at("ns/ipc", OFlag::O_RDONLY)?,
                    CloneFlags::CLONE_NEWIPC,
                ),
            ];
            // The container's cgroup, network and pid namespaces, where it has its own.
            for (name, kind) in [
                ("cgroup", CloneFlags::CLONE_NEWCGROUP),
                ("net", CloneFlags::CLONE_NEWNET),
                ("pid", CloneFlags::CLONE_NEWPID),
            ] {
                if let Some(fd) = namespaces::own_namespace(init, name)? {
                    list.push((fd, kind));
                }
            }
            entered = list;
            root = open_at("root", OFlag::O_PATH | OFlag::O_DIRECTORY)?;
            pid_ns = entered
                .iter()
                .find(|(_, kind)| *kind == CloneFlags::CLONE_NEWPID)
                .map(|(fd, _)| PidNamespace::Join(fd.as_fd()));
            join = entered
                .iter()
                .filter(|(_, kind)| *kind != CloneFlags::CLONE_NEWPID)
                .map(|(fd, kind)| (fd.as_fd(), *kind))
                .collect();
            let plan = child::Place::Enter {
                namespaces: &join,
                root: root.as_fd(),
            };
            let keep = entered
                .iter()
                .map(|(fd, _)| fd.as_raw_fd())
                .chain([root.as_raw_fd()])
                .collect();
            (plan, keep, &[][..], seccomp)
        }
    };
    keep.extend([start_r.as_raw_fd(), report_w.as_raw_fd()]);
    keep.sort_unstable();
    let stdio_fds = match &stdio {
        ChildStdio::Pipes {
            stdin,
            stdout,
            stderr,
        } => [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
        ChildStdio::Pty(slave) => [slave.as_fd(), slave.as_fd(), slave.as_fd()],
    };
    let groups: Vec<Gid> = launch
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    let argv = CStrArray::new(&launch.args);
    let envp = CStrArray::new(&launch.env);
    let max_fd =
        getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft.min(1 << 16) as i32);
    let plan = Plan {
        stdio: stdio_fds,
        pty: matches!(stdio, ChildStdio::Pty(_)),
        start: start_r.as_fd(),
        report: report_w.as_fd(),
        keep: &keep,
        max_fd,
        place: place_plan,
        uid: Uid::from_raw(launch.uid),
        gid: Gid::from_raw(launch.gid),
        groups: &groups,
        umask: launch.umask.map(|m| Mode::from_bits_truncate(m & 0o777)),
        cwd: &launch.cwd,
        candidates: &launch.candidates,
        argv: &argv,
        envp: &envp,
        sysctl,
        security: launch.setup.security,
        seccomp,
    };
    let fork_child = || {
        // SAFETY: the child runs only `child::run`, which makes system calls on
        // memory prepared before the fork and never returns.
        match unsafe { fork() }? {
            ForkResult::Parent { child } => Ok(child),
            ForkResult::Child => child::run(&plan),
        }
    };
    let pid = reaper
        .spawn_tracked(|| match pid_ns {
            Some(pid_ns) => namespaces::fork_into(pid_ns, fork_child),
            None => fork_child(),
        })
        .map_err(|e| {
            let into = match pid_ns {
                Some(PidNamespace::New) => " into a new pid namespace",
                Some(PidNamespace::Join(_)) => match place {
                    Where::New { .. } => " into the joined pid namespace",
                    Where::Enter { .. } => " into the container's pid namespace",
                },
                None => "",
            };
            AgentError::new(ErrorCode::Internal, format!("fork{into}: {e}"))
        })?;
    drop((stdio, start_r, report_w));
    let mut held = Held {
        start: File::from(start_w),
        report: File::from(report_r),
        program: launch.program.clone(),
        searched: launch.searched.clone(),
    };
    let record = read_record(&mut held.report).map_err(|e| {
        AgentError::new(
            ErrorCode::Internal,
            format!("reading the child's report: {e}"),
        )
    })?;
    match record {
        Some(Failure {
            stage: Stage::Ready,
            ..
        }) => {
            // On failure the held child ends as `held` is dropped.
            limits::apply(pid, &launch.setup.rlimits, launch.setup.oom_score_adj)?;
            Ok((pid, held))
        }
        Some(failed) => Err(held.failure(failed, launch, place)),
        None => Err(AgentError::new(
            ErrorCode::Internal,
            "the process ended during its setup without a report",
        )),
    }
}

impl Held {
    /// Lets the child exec; fails if `execve` failed (or the child is gone).
    pub fn release(mut self) -> Result<(), AgentError> {
        if let Err(e) = self.start.write_all(&[1]) {
            return Err(AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("the process ended before it was started ({e})"),
            ));
        }
        drop(self.start);
        match read_record(&mut self.report) {
            Ok(None) => Ok(()),
            Ok(Some(Failure {
                stage: Stage::Exec,
                errno,
                ..
            })) => {
                let searched = match &self.searched {
                    Some(path) if errno == Errno::ENOENT => format!(" (searched PATH {path:?})"),
                    _ => String::new(),
                };
                Err(AgentError::new(
                    ErrorCode::InvalidArgument,
                    format!("exec {:?}: {}{searched}", self.program, errno.desc()),
                ))
            }
            Ok(Some(Failure {
                stage: Stage::Seccomp,
                errno,
                ..
            })) => Err(AgentError::new(
                ErrorCode::InvalidArgument,
                format!("linux.seccomp: installing the filter: {}", errno.desc()),
            )),
            Ok(Some(Failure { stage, errno, .. })) => Err(AgentError::new(
                ErrorCode::Internal,
                format!(
                    "unexpected report {stage:?} ({}) after the start",
                    errno.desc()
                ),
            )),
            Err(e) => Err(AgentError::new(
                ErrorCode::Internal,
                format!("reading the child's report: {e}"),
            )),
        }
    }

    /// The error answer for a failed setup.
    fn failure(&self, failed: Failure, launch: &Launch, place: Where<'_>) -> AgentError {
        let Failure {
            stage,
            index,
            errno,
        } = failed;
        let rootfs = match place {
            Where::New { rootfs, .. } => rootfs.display().to_string(),
            Where::Enter { init, .. } => format!("/proc/{init}/root"),
        };
        let tree = match place {
            Where::New { tree, .. } => Some(tree),
            Where::Enter { .. } => None,
        };
        let entry = |describe: &dyn Fn(&RootfsPlan) -> String| {
            tree.map_or_else(|| format!("entry {index}"), describe)
        };
        let doing = match stage {
            Stage::Signals => "resetting signals".to_owned(),
            Stage::Session => "setsid".to_owned(),
            Stage::Tty => "making the terminal the controlling terminal".to_owned(),
            Stage::Stdio => "setting up stdio".to_owned(),
            Stage::Namespaces => match place {
                Where::New { .. } => "creating the container's namespaces".to_owned(),
                Where::Enter { .. } => "entering the container's namespaces".to_owned(),
            },
            Stage::Private => "making the mount tree private".to_owned(),
            Stage::RootBind => format!("binding the root file system {rootfs:?} onto itself"),
            Stage::Mount => entry(&|t| t.describe_mount(index)),
            Stage::Device => format!("making device {}", entry(&|t| t.describe_device(index))),
            Stage::DevLinks => "making the links of /dev".to_owned(),
            Stage::Console => "binding the terminal onto /dev/console".to_owned(),
            Stage::Masked => format!(
                "masking {}",
                entry(&|t| RootfsPlan::describe_path(&t.masked, index))
            ),
            Stage::Readonly => format!(
                "making {} read-only",
                entry(&|t| RootfsPlan::describe_path(&t.readonly, index))
            ),
            Stage::Chroot => format!("changing the root to {rootfs:?}"),
            Stage::Propagation => "setting linux.rootfsPropagation".to_owned(),
            Stage::Proc => format!("mounting /proc in {rootfs:?}"),
            Stage::RootReadonly => "making the root read-only (root.readonly)".to_owned(),
            Stage::Hostname => "setting the hostname".to_owned(),
            Stage::Groups => format!("setgroups {:?}", launch.additional_gids),
            Stage::Gid => format!("setgid {}", launch.gid),
            Stage::Uid => format!("setuid {}", launch.uid),
            Stage::Cwd => format!("chdir to cwd {:?}", launch.cwd),
            Stage::Exec | Stage::Ready => format!("exec {:?}", self.program),
            Stage::Domainname => "setting the domainname".to_owned(),
            Stage::Sysctl => match place {
                Where::New { setup, .. } => match setup.sysctl.get(index as usize) {
                    Some(sysctl) => format!("linux.sysctl: writing {}", sysctl.name),
                    None => format!("linux.sysctl: writing entry {index}"),
                },
                Where::Enter { .. } => "linux.sysctl".to_owned(),
            },
            Stage::Bounding => "process.capabilities: dropping from the bounding set".to_owned(),
            Stage::Capabilities => "process.capabilities: capset or ambient raise".to_owned(),
            Stage::NoNewPrivileges => "process.noNewPrivileges: PR_SET_NO_NEW_PRIVS".to_owned(),
            Stage::Seccomp => "linux.seccomp: installing the filter".to_owned(),
            Stage::Cgroup => "joining the container's cgroup".to_owned(),
            Stage::Join => match place {
                Where::New { joined, .. } => {
                    let kind = joined
                        .iter()
                        .filter(|j| j.kind != CloneFlags::CLONE_NEWPID)
                        .nth(index as usize)
                        .map_or(CloneFlags::empty(), |j| j.kind);
                    format!("joining the {} namespace", namespaces::kind_name(kind))
                }
                Where::Enter { .. } => "entering the container's namespaces".to_owned(),
            },
        };
        let code = match stage {
            Stage::Cwd
            | Stage::Exec
            | Stage::Groups
            | Stage::Gid
            | Stage::Uid
            | Stage::Mount
            | Stage::Device
            | Stage::Masked
            | Stage::Readonly
            | Stage::Domainname
            | Stage::Sysctl
            | Stage::Bounding
            | Stage::Capabilities
            | Stage::Seccomp => ErrorCode::InvalidArgument,
            _ => ErrorCode::Internal,
        };
        AgentError::new(code, format!("{doing}: {}", errno.desc()))
    }
}

/// The path of a terminal's descriptor (`/dev/pts/N` in the agent's namespace).
fn terminal_path(fd: std::os::fd::BorrowedFd<'_>) -> Result<CString, AgentError> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let path = std::fs::read_link(&link).map_err(|e| {
        AgentError::new(
            ErrorCode::Internal,
            format!("the terminal's path ({link}): {e}"),
        )
    })?;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| AgentError::new(ErrorCode::Internal, "the terminal's path has a NUL byte"))
}

/// Reads one record of the report pipe; `None` at end of file.
fn read_record(report: &mut File) -> io::Result<Option<Failure>> {
    let mut record = [0u8; RECORD_LEN];
    let mut got = 0;
    while got < record.len() {
        match report.read(&mut record[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let word = |at: usize| [record[at], record[at + 1], record[at + 2], record[at + 3]];
    let stage = Stage::from_u32(u32::from_be_bytes(word(0)))
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unknown stage"))?;
    Ok(Some(Failure {
        stage,
        errno: Errno::from_raw(i32::from_be_bytes(word(4))),
        index: u32::from_be_bytes(word(8)),
    }))
}
