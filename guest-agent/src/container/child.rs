//! The forked child, from `fork` to `execve`.
//!
//! The agent has many threads, so after `fork` the child may only make system calls:
//! everything it uses (paths, `argv`, `envp`, descriptors) is prepared beforehand in a
//! [`Plan`], and nothing here allocates, locks or panics. Failures are reported to
//! the agent as a [`Stage`], an index (which mount, device or path of the stage) and an
//! errno on the report pipe, then the child exits with [`SETUP_FAILED`].

use super::limits::{write_sysctl, Sysctl};
use super::rootfs::{apply as tree, RootfsPlan};
use super::seccomp::Program;
use super::security::{self, Security};
use nix::errno::Errno;
use nix::libc;
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{umask, Mode};
use nix::unistd::{
    chdir, chroot, dup2_stderr, dup2_stdin, dup2_stdout, fchdir, read, setgid, setgroups,
    sethostname, setsid, setuid, write, Gid, Uid,
};
use std::ffi::{c_char, CStr, CString};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);

/// The exit code of a child whose setup or `execve` failed.
pub const SETUP_FAILED: i32 = 127;

/// The exit code of a held child whose agent went away before starting it.
pub const NEVER_STARTED: i32 = 126;

/// What the child was doing when it failed; `Ready` reports a finished setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Stage {
    /// Setup finished; the child waits for the start signal.
    Ready = 0,
    /// Resetting the signal mask and dispositions.
    Signals,
    /// `setsid`.
    Session,
    /// Making the terminal the controlling terminal.
    Tty,
    /// Moving the streams to descriptors 0, 1 and 2.
    Stdio,
    /// `unshare` or `setns`.
    Namespaces,
    /// Making the mount tree private.
    Private,
    /// Binding the root file system onto itself.
    RootBind,
    /// Mount `index` of the spec (its mount point, the mount, a remount).
    Mount,
    /// Device node `index` of a tmpfs `/dev`.
    Device,
    /// The links of a tmpfs `/dev`.
    DevLinks,
    /// `/dev/console`.
    Console,
    /// Masked path `index`.
    Masked,
    /// Read-only path `index`.
    Readonly,
    /// Changing the root directory.
    Chroot,
    /// `linux.rootfsPropagation`.
    Propagation,
    /// Mounting `/proc` (a spec without `mounts`).
    Proc,
    /// `root.readonly`.
    RootReadonly,
    /// `sethostname`.
    Hostname,
    /// `setgroups`.
    Groups,
    /// `setgid`.
    Gid,
    /// `setuid`.
    Uid,
    /// Changing to the working directory.
    Cwd,
    /// `execve`.
    Exec,
    /// `setdomainname`.
    Domainname,
    /// Writing a `linux.sysctl`.
    Sysctl,
    /// Dropping capabilities from the bounding set, or `PR_SET_KEEPCAPS`.
    Bounding,
    /// `capset` or raising ambient capabilities.
    Capabilities,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivileges,
    /// Installing the seccomp filter.
    Seccomp,
    /// Joining the container's cgroup (before a cgroup namespace is unshared).
    Cgroup,
    /// Entering namespace `index` (`setns`) of those joined.
    Join,
}

impl Stage {
    /// Every stage, in number order.
    pub const ALL: [Stage; 32] = {
        use Stage::*;
        [
            Ready,
            Signals,
            Session,
            Tty,
            Stdio,
            Namespaces,
            Private,
            RootBind,
            Mount,
            Device,
            DevLinks,
            Console,
            Masked,
            Readonly,
            Chroot,
            Propagation,
            Proc,
            RootReadonly,
            Hostname,
            Groups,
            Gid,
            Uid,
            Cwd,
            Exec,
            Domainname,
            Sysctl,
            Bounding,
            Capabilities,
            NoNewPrivileges,
            Seccomp,
            Cgroup,
            Join,
        ]
    };

    /// The stage of a reported number.
    pub fn from_u32(n: u32) -> Option<Stage> {
        Stage::ALL.get(n as usize).copied()
    }
}

/// A failed step of the setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// What the child was doing.
    pub stage: Stage,
    /// Which entry of the stage (a mount's index), else 0.
    pub index: u32,
    /// Why it failed.
    pub errno: Errno,
}

/// Where the process runs.
#[derive(Debug)]
pub enum Place<'a> {
    /// A container's first process: new mount (and UTS) namespace, its tree built
    /// on `rootfs`, which becomes its root.
    New {
        /// The root filesystem.
        rootfs: &'a CStr,
        /// Its mounts, devices, masked and read-only paths.
        tree: &'a RootfsPlan,
        /// The terminal's path in the agent's `/dev/pts`, for `/dev/console` (a
        /// descriptor cannot be the source: its mount is in the agent's namespace).
        console: Option<&'a CStr>,
        /// The hostname, set in a new UTS namespace.
        hostname: Option<&'a str>,
        /// Namespaces unshared besides the mount namespace.
        namespaces: CloneFlags,
        /// Namespaces entered (`setns`) before those are unshared: joined by path,
        /// and the container's network namespace made by the agent.
        join: &'a [(BorrowedFd<'a>, CloneFlags)],
        /// The domain name, set in the new UTS namespace.
        domainname: Option<&'a str>,
        /// The container cgroup's `cgroup.procs`: the process joins its cgroup
        /// before it unshares its namespaces, so that a cgroup namespace is rooted
        /// there.
        join_cgroup: Option<BorrowedFd<'a>>,
    },
    /// Another process in a running container: the namespaces and root directory of
    /// the container's first process.
    Enter {
        /// `/proc/<pid>/ns/<type>` entered in order, the mount namespace first (its
        /// pid namespace is entered by the fork, see `namespaces`).
        namespaces: &'a [(BorrowedFd<'a>, CloneFlags)],
        /// `/proc/<pid>/root`.
        root: BorrowedFd<'a>,
    },
}

/// Everything the child needs, prepared before `fork`.
/// A null-terminated array of pointers to borrowed C strings, as `execve` takes
/// `argv` and `envp`.
#[derive(Debug)]
pub struct CStrArray<'a> {
    pointers: Vec<*const c_char>,
    strings: PhantomData<&'a [CString]>,
}

// SAFETY: the pointers point into `CString`s borrowed immutably for `'a` (see
// `new`), which are `Sync`; moving or sharing the array gives other threads read
// access to those strings only, as a `&'a [CString]` would.
unsafe impl Send for CStrArray<'_> {}
// SAFETY: as for `Send`: the array is never written after `new`.
unsafe impl Sync for CStrArray<'_> {}

impl<'a> CStrArray<'a> {
    /// The pointers to `strings`, then a null pointer.
    pub fn new(strings: &'a [CString]) -> Self {
        let pointers = strings
            .iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        CStrArray {
            pointers,
            strings: PhantomData,
        }
    }

    /// The array, for `execve`.
    pub fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

#[derive(Debug)]
pub struct Plan<'a> {
    /// What becomes descriptors 0, 1 and 2.
    pub stdio: [BorrowedFd<'a>; 3],
    /// Whether `stdio` is a terminal to make the controlling terminal.
    pub pty: bool,
    /// The read end of the start pipe: one byte means exec.
    pub start: BorrowedFd<'a>,
    /// The write end of the report pipe.
    pub report: BorrowedFd<'a>,
    /// Descriptors to keep open, ascending; all others above 2 are closed.
    pub keep: &'a [RawFd],
    /// The highest descriptor to close if `close_range` is missing.
    pub max_fd: RawFd,
    /// Where the process runs.
    pub place: Place<'a>,
    /// Credentials.
    pub uid: Uid,
    /// Group.
    pub gid: Gid,
    /// Supplementary groups.
    pub groups: &'a [Gid],
    /// The file mode creation mask.
    pub umask: Option<Mode>,
    /// The working directory.
    pub cwd: &'a CStr,
    /// The paths `execve` tries in turn.
    pub candidates: &'a [CString],
    /// `argv`.
    pub argv: &'a CStrArray<'a>,
    /// `envp`.
    pub envp: &'a CStrArray<'a>,
    /// `linux.sysctl`, written by a container's first process.
    pub sysctl: &'a [Sysctl],
    /// Capabilities and `noNewPrivileges`.
    pub security: Security,
    /// The seccomp filter.
    pub seccomp: Option<&'a Program>,
}

/// The child's life after `fork`: setup, report, wait for the start, exec.
pub fn run(plan: &Plan<'_>) -> ! {
    let failed = match setup(plan) {
        Ok(()) => {
            report(plan.report, Stage::Ready, 0, 0);
            let mut byte = [0u8];
            loop {
                match read(plan.start, &mut byte) {
                    Ok(1) => break,
                    Err(Errno::EINTR) => {}
                    _ => exit_now(NEVER_STARTED),
                }
            }
            match plan.seccomp {
                // With `noNewPrivileges`, as late as possible (runc's order).
                Some(filter) if plan.security.no_new_privileges => match filter.install() {
                    Ok(()) => at(Stage::Exec)(exec(plan)),
                    Err(e) => at(Stage::Seccomp)(e),
                },
                _ => at(Stage::Exec)(exec(plan)),
            }
        }
        Err(failed) => failed,
    };
    report(plan.report, failed.stage, failed.index, failed.errno as i32);
    exit_now(SETUP_FAILED)
}

/// Ends the child without running anything of the agent's (no exit handlers, no
/// flushing of buffers copied from the agent).
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends the process at once; it is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// The size of a report record.
pub const RECORD_LEN: usize = 12;

/// Writes one report record: stage, errno and index, big-endian.
fn report(fd: BorrowedFd<'_>, stage: Stage, index: u32, errno: i32) {
    let mut record = [0u8; RECORD_LEN];
    record[..4].copy_from_slice(&(stage as u32).to_be_bytes());
    record[4..8].copy_from_slice(&errno.to_be_bytes());
    record[8..].copy_from_slice(&index.to_be_bytes());
    // At most PIPE_BUF bytes: written whole or not at all.
    let _ = write(fd, &record);
}

fn at(stage: Stage) -> impl Fn(Errno) -> Failure {
    move |errno| Failure {
        stage,
        index: 0,
        errno,
    }
}

/// Everything before the wait for the start.
fn setup(plan: &Plan<'_>) -> Result<(), Failure> {
    reset_signals().map_err(at(Stage::Signals))?;
    setsid().map_err(at(Stage::Session))?;
    if plan.pty {
        // SAFETY: TIOCSCTTY takes an int by value; the descriptor is open.
        unsafe { tiocsctty(plan.stdio[0].as_raw_fd(), 0) }.map_err(at(Stage::Tty))?;
    }
    dup2_stdin(plan.stdio[0]).map_err(at(Stage::Stdio))?;
    dup2_stdout(plan.stdio[1]).map_err(at(Stage::Stdio))?;
    dup2_stderr(plan.stdio[2]).map_err(at(Stage::Stdio))?;
    close_others(plan.keep, plan.max_fd);
    match &plan.place {
        Place::New {
            rootfs,
            tree,
            hostname,
            console,
            namespaces,
            join,
            domainname,
            join_cgroup,
        } => {
            if let Some(procs) = join_cgroup {
                // "0": the writing process itself; a write of PIPE_BUF or less.
                write(procs, b"0").map_err(at(Stage::Cgroup))?;
            }
            enter(join)?;
            unshare(CloneFlags::CLONE_NEWNS | *namespaces).map_err(at(Stage::Namespaces))?;
            let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
            mount(None::<&CStr>, c"/", None::<&CStr>, private, None::<&CStr>)
                .map_err(at(Stage::Private))?;
            if let Some(name) = hostname {
                sethostname(name).map_err(at(Stage::Hostname))?;
            }
            if let Some(name) = domainname {
                setdomainname(name).map_err(at(Stage::Domainname))?;
            }
            // Through the guest's own /proc, before the tree (whose read-only paths
            // usually hold /proc/sys) is built: a namespaced sysctl is the writer's
            // namespace's, whichever proc mount it is reached through (runc's order:
            // after the hostname, before the read-only paths).
            for (index, sysctl) in plan.sysctl.iter().enumerate() {
                write_sysctl(sysctl).map_err(|errno| Failure {
                    stage: Stage::Sysctl,
                    index: index as u32,
                    errno,
                })?;
            }
            tree::build(tree, rootfs, *console)?;
            tree::change_root(rootfs)?;
            tree::finish(tree)?;
        }
        Place::Enter { namespaces, root } => {
            enter(namespaces)?;
            fchdir(root).map_err(at(Stage::Chroot))?;
            chroot(c".").map_err(at(Stage::Chroot))?;
            chdir(c"/").map_err(at(Stage::Chroot))?;
        }
    }
    chdir(plan.cwd).map_err(at(Stage::Cwd))?;
    credentials(plan)?;
    if let Some(mask) = plan.umask {
        umask(mask);
    }
    Ok(())
}

/// Enters each namespace of `list` in order; a failure names its index.
fn enter(list: &[(BorrowedFd<'_>, CloneFlags)]) -> Result<(), Failure> {
    for (index, (fd, kind)) in list.iter().enumerate() {
        setns(fd, *kind).map_err(|errno| Failure {
            stage: Stage::Join,
            index: index as u32,
            errno,
        })?;
    }
    Ok(())
}

/// Groups, gid and uid, with the capabilities and security settings around them in
/// runc's order (see [`security`](super::security)). Without `noNewPrivileges` the
/// seccomp filter needs `CAP_SYS_ADMIN`, so it comes first.
fn credentials(plan: &Plan<'_>) -> Result<(), Failure> {
    let security = &plan.security;
    if let Some(filter) = plan.seccomp.filter(|_| !security.no_new_privileges) {
        filter.install().map_err(at(Stage::Seccomp))?;
    }
    if let Some(caps) = &security.capabilities {
        security::before_setuid(caps, security.last_cap).map_err(at(Stage::Bounding))?;
    }
    setgroups(plan.groups).map_err(at(Stage::Groups))?;
    setgid(plan.gid).map_err(at(Stage::Gid))?;
    setuid(plan.uid).map_err(at(Stage::Uid))?;
    if let Some(caps) = &security.capabilities {
        security::capset(caps).map_err(at(Stage::Capabilities))?;
    }
    if security.no_new_privileges {
        security::no_new_privileges().map_err(at(Stage::NoNewPrivileges))?;
    }
    Ok(())
}

/// `setdomainname(2)` (nix has no wrapper).
fn setdomainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the kernel reads `len` bytes of `name`, which lives for the call.
    let done = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(done).map(drop)
}

/// Default dispositions and an empty mask: the agent blocks signals in all threads
/// and ignores `SIGPIPE`, and both would pass through `execve`.
fn reset_signals() -> nix::Result<()> {
    for signal in Signal::iterator() {
        if matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler; nothing runs on the signal's behalf.
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }?;
    }
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// Closes every descriptor above 2 but those in `keep` (ascending): descriptors the
/// agent opened for other purposes (connections, other processes' pipes) must not
/// live on in the child, even for the time it is held.
fn close_others(keep: &[RawFd], max_fd: RawFd) {
    let mut first = 3;
    for &fd in keep.iter().chain(std::iter::once(&RawFd::MAX)) {
        if fd > first {
            close_range(first, fd - 1, max_fd);
        }
        first = fd.saturating_add(1);
    }
}

/// Closes `first..=last`, by `close_range(2)` or one by one up to `max_fd`.
fn close_range(first: RawFd, last: RawFd, max_fd: RawFd) {
    // SAFETY: close_range takes three integers and only closes descriptors; those it
    // closes are not used again by the child.
    let done = unsafe { libc::syscall(libc::SYS_close_range, first as u32, last as u32, 0u32) };
    if done == 0 {
        return;
    }
    for fd in first..=last.min(max_fd) {
        // SAFETY: as above, for one descriptor; EBADF for closed ones is harmless.
        unsafe { libc::close(fd) };
    }
}

/// Tries each candidate path like `execvp`; gives back the error that explains best.
fn exec(plan: &Plan<'_>) -> Errno {
    let mut denied = false;
    let mut last = Errno::ENOENT;
    for path in plan.candidates {
        // SAFETY: the path, argv and envp are NUL-terminated strings and
        // null-terminated pointer arrays that live (in the parent's memory image) for
        // the whole call; execve returns only on failure.
        unsafe { libc::execve(path.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
        match Errno::last() {
            Errno::EACCES => denied = true,
            e @ (Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ENODEV) => last = e,
            other => return other,
        }
    }
    if denied {
        Errno::EACCES
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::Stage;

    #[test]
    fn every_stage_is_listed_at_its_number() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            assert_eq!(*stage as usize, i, "{stage:?}");
            assert_eq!(Stage::from_u32(i as u32), Some(*stage));
        }
        // Nothing past the list reads as a stage.
        assert_eq!(Stage::Join as usize + 1, Stage::ALL.len());
        assert_eq!(Stage::from_u32(Stage::ALL.len() as u32), None);
    }
}
