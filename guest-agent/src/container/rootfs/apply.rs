//! The system calls that build the container's tree, in the child after `fork`: no
//! allocation, no locks, no panics; everything comes ready-made in a [`RootfsPlan`].
//!
//! Paths inside the container are opened with `openat2(RESOLVE_IN_ROOT)` relative to
//! the root file system, and mounted on through `/proc/self/fd/N`, so that what is
//! mounted on is what was resolved inside the root.

use super::{DeviceNode, RootPath, RootfsPlan};
use crate::container::child::{Failure, Stage};
use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, mkdirat, mknodat, umask, Mode};
use nix::unistd::{chdir, chroot, fchownat, symlinkat, Gid, Uid};
use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// The links of a tmpfs `/dev` (runc's): name, target.
const DEV_LINKS: &[(&CStr, &CStr)] = &[
    (c"fd", c"/proc/self/fd"),
    (c"stdin", c"/proc/self/fd/0"),
    (c"stdout", c"/proc/self/fd/1"),
    (c"stderr", c"/proc/self/fd/2"),
    (c"ptmx", c"pts/ptmx"),
];

/// `struct open_how` of `openat2(2)`.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// Opens `path` (relative) inside the root `root`: `..` and symbolic links cannot
/// leave it, magic links are refused.
fn open_in(root: BorrowedFd<'_>, path: &CStr, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow {
        flags: (flags | OFlag::O_CLOEXEC).bits() as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 reads the NUL-terminated path and `how` (of the size passed),
    // both alive for the call; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the descriptor was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `/proc/self/fd/N` in a buffer of its own.
struct FdPath([u8; 32]);

impl FdPath {
    fn new(fd: RawFd) -> FdPath {
        let mut buf = [0u8; 32];
        let prefix = b"/proc/self/fd/";
        buf[..prefix.len()].copy_from_slice(prefix);
        let mut digits = [0u8; 12];
        let mut n = fd.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..len {
            buf[prefix.len() + i] = digits[len - 1 - i];
        }
        FdPath(buf)
    }

    fn get(&self) -> &CStr {
        // The buffer always holds a NUL after the digits (at most 14 + 10 bytes used).
        CStr::from_bytes_until_nul(&self.0).unwrap_or(c"/proc/self/fd/")
    }
}

/// What a missing path is made as.
#[derive(Clone, Copy)]
enum Node<'a> {
    Dir,
    File,
    Device(&'a DeviceNode),
}

/// Opens `path` inside `root` with `O_PATH`, first making it (and the directories
/// above it) if it is missing.
fn ensure(root: BorrowedFd<'_>, path: &RootPath, node: Node<'_>) -> Result<OwnedFd, Errno> {
    match open_in(root, path.full(), OFlag::O_PATH) {
        Err(Errno::ENOENT) => {}
        other => return other,
    }
    let last = path.names.len() - 1;
    for (i, name) in path.names.iter().enumerate() {
        match open_in(root, &path.prefixes[i], OFlag::O_PATH) {
            Err(Errno::ENOENT) => {}
            Ok(_) if i < last => continue,
            Ok(fd) => return Ok(fd),
            Err(e) => return Err(e),
        }
        let parent = match i {
            0 => None,
            _ => Some(open_in(
                root,
                &path.prefixes[i - 1],
                OFlag::O_PATH | OFlag::O_DIRECTORY,
            )?),
        };
        let dir = parent.as_ref().map_or(root, |p| p.as_fd());
        let made = match (i == last, node) {
            (false, _) | (true, Node::Dir) => {
                mkdirat(dir, name.as_c_str(), Mode::from_bits_truncate(0o755))
            }
            (true, Node::File) => {
                let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
                openat(dir, name.as_c_str(), flags, Mode::from_bits_truncate(0o644)).map(drop)
            }
            (true, Node::Device(d)) => {
                let perm = Mode::from_bits_truncate(d.mode);
                mknodat(dir, name.as_c_str(), d.kind, perm, d.dev).and_then(|()| {
                    fchownat(
                        dir,
                        name.as_c_str(),
                        Some(Uid::from_raw(d.uid)),
                        Some(Gid::from_raw(d.gid)),
                        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                    )
                })
            }
        };
        match made {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    open_in(root, path.full(), OFlag::O_PATH)
}

fn mount_at(
    source: Option<&CStr>,
    target: &OwnedFd,
    fstype: Option<&CStr>,
    flags: MsFlags,
    data: Option<&CStr>,
) -> Result<(), Errno> {
    mount(
        source,
        FdPath::new(target.as_raw_fd()).get(),
        fstype,
        flags,
        data,
    )
}

fn fail(stage: Stage, index: usize) -> impl Fn(Errno) -> Failure {
    move |errno| Failure {
        stage,
        index: index as u32,
        errno,
    }
}

/// The kept flags of the mount at `fd` (to remount it without changing them).
fn kept_flags(fd: RawFd) -> Result<MsFlags, Errno> {
    // SAFETY: statvfs is plain data, valid all zeroes.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid, writable statvfs; fstatvfs only fills it.
    if unsafe { libc::fstatvfs(fd, &mut st) } != 0 {
        return Err(Errno::last());
    }
    let mut flags = MsFlags::empty();
    for (st_flag, ms) in [
        (libc::ST_NOSUID, MsFlags::MS_NOSUID),
        (libc::ST_NODEV, MsFlags::MS_NODEV),
        (libc::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (libc::ST_NOATIME, MsFlags::MS_NOATIME),
        (libc::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (libc::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms;
        }
    }
    Ok(flags)
}

/// Remounts the mount at `fd` read-only, keeping its other flags.
fn remount_readonly(fd: &OwnedFd) -> Result<(), Errno> {
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    mount_at(None, fd, None, flags | kept_flags(fd.as_raw_fd())?, None)
}

/// Builds the tree on `rootfs` (in a new, private mount namespace) up to the change
/// of root; `console` is the terminal's path for `/dev/console`.
pub fn build(plan: &RootfsPlan, rootfs: &CStr, console: Option<&CStr>) -> Result<(), Failure> {
    let none = None::<&CStr>;
    let rec_bind = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(rootfs), rootfs, none, rec_bind, none).map_err(fail(Stage::RootBind, 0))?;
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail(Stage::RootBind, 0))?;
    let root = root.as_fd();
    // Mount points and nodes get exactly the modes asked for.
    let old_mask = umask(Mode::empty());
    let built = build_in(plan, root, console);
    umask(old_mask);
    built
}

fn build_in(
    plan: &RootfsPlan,
    root: BorrowedFd<'_>,
    console: Option<&CStr>,
) -> Result<(), Failure> {
    for (i, m) in plan.mounts.iter().enumerate() {
        let at = fail(Stage::Mount, i);
        let node = if m.file { Node::File } else { Node::Dir };
        let target = ensure(root, &m.dest, node).map_err(&at)?;
        mount_at(
            Some(m.source.as_c_str()),
            &target,
            m.fstype.as_deref(),
            m.flags,
            m.data.as_deref(),
        )
        .map_err(&at)?;
        if m.remount.is_some() || !m.propagation.is_empty() {
            // The mount just made, on top of the mount point.
            let top = open_in(root, m.dest.full(), OFlag::O_PATH).map_err(&at)?;
            if let Some(flags) = m.remount {
                let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | flags;
                mount_at(None, &top, None, flags, None).map_err(&at)?;
            }
            for p in &m.propagation {
                mount_at(None, &top, None, *p, None).map_err(&at)?;
            }
        }
    }
    if plan.dev_tmpfs {
        for (i, d) in plan.devices.iter().enumerate() {
            ensure(root, &d.path, Node::Device(d)).map_err(fail(Stage::Device, i))?;
        }
        let dev = open_in(root, c"dev", OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(fail(Stage::DevLinks, 0))?;
        for (i, (name, target)) in DEV_LINKS.iter().enumerate() {
            match symlinkat(*target, dev.as_fd(), *name) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(fail(Stage::DevLinks, i)(e)),
            }
        }
        if let Some(terminal) = console {
            let at = fail(Stage::Console, 0);
            let target = open_in(root, c"dev/console", OFlag::O_PATH);
            let target = match target {
                Ok(t) => t,
                Err(Errno::ENOENT) => {
                    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
                    openat(
                        dev.as_fd(),
                        c"console",
                        flags,
                        Mode::from_bits_truncate(0o600),
                    )
                    .map(drop)
                    .map_err(&at)?;
                    open_in(root, c"dev/console", OFlag::O_PATH).map_err(&at)?
                }
                Err(e) => return Err(at(e)),
            };
            mount_at(Some(terminal), &target, None, MsFlags::MS_BIND, None).map_err(&at)?;
        }
    }
    for (i, path) in plan.masked.iter().enumerate() {
        let at = fail(Stage::Masked, i);
        let target = match open_in(root, path.full(), OFlag::O_PATH) {
            Ok(t) => t,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(at(e)),
        };
        let is_dir = fstat(&target).map_err(&at)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir {
            let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
            mount_at(
                Some(c"tmpfs"),
                &target,
                Some(c"tmpfs"),
                flags,
                Some(c"size=0"),
            )
        } else {
            mount_at(Some(c"/dev/null"), &target, None, MsFlags::MS_BIND, None)
        }
        .map_err(&at)?;
    }
    for (i, path) in plan.readonly.iter().enumerate() {
        let at = fail(Stage::Readonly, i);
        let target = match open_in(root, path.full(), OFlag::O_PATH) {
            Ok(t) => t,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(at(e)),
        };
        let source = FdPath::new(target.as_raw_fd());
        let rec_bind = MsFlags::MS_BIND | MsFlags::MS_REC;
        mount_at(Some(source.get()), &target, None, rec_bind, None).map_err(&at)?;
        let top = open_in(root, path.full(), OFlag::O_PATH).map_err(&at)?;
        remount_readonly(&top).map_err(&at)?;
    }
    Ok(())
}

/// Makes the built tree the root: moved onto `/` (the agent runs from its initramfs,
/// where `pivot_root` is refused), then `chroot`.
pub fn change_root(rootfs: &CStr) -> Result<(), Failure> {
    let at = fail(Stage::Chroot, 0);
    chdir(rootfs).map_err(&at)?;
    mount(
        Some(c"."),
        c"/",
        None::<&CStr>,
        MsFlags::MS_MOVE,
        None::<&CStr>,
    )
    .map_err(&at)?;
    chroot(c".").map_err(&at)?;
    chdir(c"/").map_err(&at)
}

/// After the change of root: propagation, `/proc` for bare specs, `root.readonly`.
pub fn finish(plan: &RootfsPlan) -> Result<(), Failure> {
    let none = None::<&CStr>;
    if let Some(p) = plan.propagation {
        mount(none, c"/", none, p, none).map_err(fail(Stage::Propagation, 0))?;
    }
    if plan.implicit_proc {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(Some(c"proc"), c"/proc", Some(c"proc"), flags, none).map_err(fail(Stage::Proc, 0))?;
    }
    if plan.root_readonly {
        let at = fail(Stage::RootReadonly, 0);
        let root = open(
            c"/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(&at)?;
        remount_readonly(&root).map_err(&at)?;
    }
    Ok(())
}
