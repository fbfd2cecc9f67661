//! A share assembled from several host paths, inside virtiofsd's own mount namespace.
//!
//! A [`ShareLayout`] lists host paths (a root file system, files and directories to
//! bind) and where each goes below the shared directory. [`PreparedLayout`] turns it
//! into system calls prepared before `fork`; [`PreparedLayout::apply`] runs them in
//! the forked child before it execs virtiofsd: a new mount namespace with a private
//! tree, a tmpfs on the (empty) shared directory, the mount points, the bind mounts,
//! and read-only remounts. Nothing of it is visible outside virtiofsd's processes, and
//! all of it goes when the last of them ends, however it ends: there is nothing to
//! unmount or clean up on the host.

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::mkdir;
use std::collections::BTreeSet;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// What a host path is bound as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory (bound recursively).
    Dir,
    /// Anything else: a file, a socket, a device node.
    File,
}

/// What the guest may do through an entry of the share (enforced on the host side,
/// in virtiofsd's namespace: a guest that owns its kernel still cannot write
/// through a read-only entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read and write.
    ReadWrite,
    /// Read only, with every mount below it (`mount_setattr(AT_RECURSIVE)`).
    ReadOnly,
    /// The entry's own directory read-only (no entry in it can be made, removed or
    /// replaced), while what the host mounts below it later keeps its own flags: a
    /// pod's member directory, whose members' root file systems are writable.
    FixedTree,
}

/// One host path placed in the share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareEntry {
    /// The host path (absolute).
    pub source: PathBuf,
    /// Where it goes, relative to the shared directory; intermediate directories are
    /// made.
    pub target: PathBuf,
    /// Directory or file.
    pub kind: EntryKind,
    /// What the guest may do through it.
    pub access: Access,
}

/// The contents of a share assembled on a tmpfs, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShareLayout {
    /// The entries; a later one may go below an earlier directory.
    pub entries: Vec<ShareEntry>,
    /// Whether mounts the host makes later below a shared host directory bound
    /// into the share reach it (a pod's containers, added after virtiofsd started):
    /// virtiofsd's namespace is then a slave of the host's instead of private.
    /// Mounts made in it never reach the host either way.
    pub receive_host_mounts: bool,
}

/// A layout that cannot be assembled.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A target is absolute, empty, or climbs out with `..`.
    #[error("share target {0:?} is not a plain relative path")]
    BadTarget(PathBuf),
    /// A path holds a NUL byte.
    #[error("share path {0:?} contains a NUL byte")]
    Nul(PathBuf),
    /// A source is not absolute.
    #[error("share source {0:?} is not absolute")]
    RelativeSource(PathBuf),
}

/// One system call of the set-up.
#[derive(Debug)]
enum Step {
    Mkdir(CString),
    Touch(CString),
    Bind {
        source: CString,
        target: CString,
    },
    /// A read-only remount of the mount at the path, with those below it when
    /// `recursive`.
    ReadOnly {
        target: CString,
        recursive: bool,
    },
}

/// A layout turned into system calls on ready-made strings, for a child after `fork`.
#[derive(Debug)]
pub struct PreparedLayout {
    root: CString,
    steps: Vec<Step>,
    propagation: MsFlags,
}

impl PreparedLayout {
    /// Prepares `layout` on the shared directory `root` (an empty directory that the
    /// tmpfs will cover).
    pub fn new(root: &Path, layout: &ShareLayout) -> Result<PreparedLayout, LayoutError> {
        let mut steps = Vec::new();
        let mut made = BTreeSet::new();
        for entry in &layout.entries {
            if !entry.source.is_absolute() {
                return Err(LayoutError::RelativeSource(entry.source.clone()));
            }
            let parts = plain_components(&entry.target)?;
            let mut path = root.to_path_buf();
            for (i, part) in parts.iter().enumerate() {
                path.push(part);
                let last = i + 1 == parts.len();
                if last && entry.kind == EntryKind::File {
                    steps.push(Step::Touch(c_path(&path)?));
                } else if made.insert(path.clone()) {
                    steps.push(Step::Mkdir(c_path(&path)?));
                }
            }
            let target = c_path(&path)?;
            steps.push(Step::Bind {
                source: c_path(&entry.source)?,
                target: target.clone(),
            });
            match entry.access {
                Access::ReadWrite => {}
                Access::ReadOnly => steps.push(Step::ReadOnly {
                    target,
                    recursive: true,
                }),
                Access::FixedTree => steps.push(Step::ReadOnly {
                    target,
                    recursive: false,
                }),
            }
        }
        Ok(PreparedLayout {
            root: c_path(root)?,
            steps,
            propagation: if layout.receive_host_mounts {
                MsFlags::MS_SLAVE
            } else {
                MsFlags::MS_PRIVATE
            },
        })
    }

    /// Builds the share in a new mount namespace of the calling process. Only system
    /// calls on memory prepared beforehand: safe in a child after `fork`.
    pub fn apply(&self) -> Result<(), Errno> {
        unshare(CloneFlags::CLONE_NEWNS)?;
        let none = None::<&CStr>;
        mount(none, c"/", none, MsFlags::MS_REC | self.propagation, none)?;
        let quiet = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        mount(
            Some(c"husk-share"),
            self.root.as_c_str(),
            Some(c"tmpfs"),
            quiet,
            Some(c"mode=0755,size=1m"),
        )?;
        for step in &self.steps {
            match step {
                Step::Mkdir(path) => {
                    match mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(e),
                    }
                }
                Step::Touch(path) => {
                    let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
                    drop(open(
                        path.as_c_str(),
                        flags,
                        Mode::from_bits_truncate(0o644),
                    )?);
                }
                Step::Bind { source, target } => mount(
                    Some(source.as_c_str()),
                    target.as_c_str(),
                    none,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                )?,
                Step::ReadOnly {
                    target,
                    recursive: false,
                } => mount(
                    none,
                    target.as_c_str(),
                    none,
                    MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
                    none,
                )?,
                Step::ReadOnly {
                    target,
                    recursive: true,
                } => read_only_recursively(target)?,
            }
        }
        Ok(())
    }
}

/// Makes the mount at `target` and every mount below it read-only.
fn read_only_recursively(target: &CStr) -> Result<(), Errno> {
    set_read_only(None, target, libc::AT_RECURSIVE)
}

/// `mount_setattr(dir, path, flags)` setting `MOUNT_ATTR_RDONLY` (`dir` `None`: the
/// working directory): `flags` takes `AT_RECURSIVE` (every mount below too) and
/// `AT_EMPTY_PATH` (the mount of `dir` itself, an `open_tree` descriptor say). A
/// system call only: safe after `fork`.
pub fn set_read_only(
    dir: Option<BorrowedFd<'_>>,
    path: &CStr,
    flags: libc::c_int,
) -> Result<(), Errno> {
    let dirfd = dir.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    let attr = libc::mount_attr {
        attr_set: libc::MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is NUL-terminated, `dirfd` is AT_FDCWD or borrowed for the
    // call, and the mount_attr passed lives for the call with the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok(())
}

/// The components of a relative path with nothing but names in it.
fn plain_components(target: &Path) -> Result<Vec<&std::ffi::OsStr>, LayoutError> {
    let mut parts = Vec::new();
    for component in target.components() {
        match component {
            Component::Normal(name) => parts.push(name),
            Component::CurDir => {}
            _ => return Err(LayoutError::BadTarget(target.to_path_buf())),
        }
    }
    if parts.is_empty() {
        return Err(LayoutError::BadTarget(target.to_path_buf()));
    }
    Ok(parts)
}

fn c_path(path: &Path) -> Result<CString, LayoutError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| LayoutError::Nul(path.to_path_buf()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: &str, target: &str, kind: EntryKind, access: Access) -> ShareEntry {
        ShareEntry {
            source: source.into(),
            target: target.into(),
            kind,
            access,
        }
    }

    #[test]
    fn steps_make_each_directory_once_and_remount_read_only_entries() {
        let layout = ShareLayout {
            entries: vec![
                entry("/b/rootfs", "c1/rootfs", EntryKind::Dir, Access::ReadWrite),
                entry("/h/hosts", "c1/mounts/0", EntryKind::File, Access::ReadOnly),
                entry("/h/dir", "./c1/mounts/1", EntryKind::Dir, Access::ReadOnly),
                entry(
                    "/p/members",
                    "containers",
                    EntryKind::Dir,
                    Access::FixedTree,
                ),
            ],
            receive_host_mounts: false,
        };
        let prepared = PreparedLayout::new(Path::new("/s"), &layout).unwrap();
        let text: Vec<String> = prepared
            .steps
            .iter()
            .map(|s| match s {
                Step::Mkdir(p) => format!("mkdir {}", p.to_str().unwrap()),
                Step::Touch(p) => format!("touch {}", p.to_str().unwrap()),
                Step::Bind { source, target } => {
                    format!(
                        "bind {} {}",
                        source.to_str().unwrap(),
                        target.to_str().unwrap()
                    )
                }
                Step::ReadOnly { target, recursive } => format!(
                    "ro{} {}",
                    if *recursive { " -r" } else { "" },
                    target.to_str().unwrap()
                ),
            })
            .collect();
        assert_eq!(
            text,
            [
                "mkdir /s/c1",
                "mkdir /s/c1/rootfs",
                "bind /b/rootfs /s/c1/rootfs",
                "mkdir /s/c1/mounts",
                "touch /s/c1/mounts/0",
                "bind /h/hosts /s/c1/mounts/0",
                "ro -r /s/c1/mounts/0",
                "mkdir /s/c1/mounts/1",
                "bind /h/dir /s/c1/mounts/1",
                "ro -r /s/c1/mounts/1",
                "mkdir /s/containers",
                "bind /p/members /s/containers",
                "ro /s/containers",
            ]
        );
    }

    #[test]
    fn bad_targets_and_sources_are_refused() {
        for target in ["", "/abs", "a/../../b", ".."] {
            let layout = ShareLayout {
                entries: vec![entry("/x", target, EntryKind::Dir, Access::ReadWrite)],
                receive_host_mounts: false,
            };
            let err = PreparedLayout::new(Path::new("/s"), &layout).unwrap_err();
            assert!(matches!(err, LayoutError::BadTarget(_)), "{target}: {err}");
        }
        let layout = ShareLayout {
            entries: vec![entry("rel", "a", EntryKind::Dir, Access::ReadWrite)],
            receive_host_mounts: false,
        };
        let err = PreparedLayout::new(Path::new("/s"), &layout).unwrap_err();
        assert!(matches!(err, LayoutError::RelativeSource(_)), "{err}");
    }
}
