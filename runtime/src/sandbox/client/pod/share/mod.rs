//! The pod's member directory: `<sandbox state dir>/containers`, a shared mount on
//! the host that virtiofsd's share holds as `containers/` (a slave of it, see
//! `husk_vmm::virtiofsd::layout::ShareLayout::receive_host_mounts`). A member's root
//! file system goes at `containers/<id>/rootfs` and its binds at
//! `containers/<id>/mounts/<n>`; mounted there on the host, they appear in the
//! share at once, and unmounting them (lazily) takes them out again.
//!
//! Each entry is a detached copy of its source (`open_tree`), made read-only when
//! the spec asks before it is attached (`mount_setattr`, `move_mount`): the copies
//! that propagate into virtiofsd's namespace are read-only too, so the guest cannot
//! write through a read-only bind.

use crate::sandbox::share::HostBind;
use husk_vmm::virtiofsd::layout::set_read_only;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use crate::sandbox::share::MEMBERS_DIR as DIR_NAME;

/// A host mount operation of the pod's member directory that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} {}", path.display())]
pub struct PodShareError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn fail<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(nix::errno::Errno) -> PodShareError + 'a {
    move |e| PodShareError {
        what,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn io_fail<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PodShareError + 'a {
    move |source| PodShareError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The member directory of the sandbox whose state directory is `sandbox_dir`.
#[derive(Debug, Clone)]
pub struct PodShare {
    dir: PathBuf,
}

impl PodShare {
    /// The member directory of the sandbox in `sandbox_dir`.
    pub fn of(sandbox_dir: &Path) -> PodShare {
        PodShare {
            dir: sandbox_dir.join(DIR_NAME),
        }
    }

    /// The directory on the host.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory a shared mount of its own (before virtiofsd starts).
    pub fn create(&self) -> Result<(), PodShareError> {
        let dir = &self.dir;
        std::fs::create_dir_all(dir).map_err(io_fail("create", dir))?;
        mount(
            Some(dir.as_path()),
            dir.as_path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(fail("bind-mount onto itself", dir))?;
        mount(
            None::<&str>,
            dir.as_path(),
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .map_err(fail("make shared", dir))
    }

    /// Unmounts the directory with everything below it and removes it. Idempotent.
    pub fn destroy(&self) -> Result<(), PodShareError> {
        let dir = &self.dir;
        if !dir.exists() {
            return Ok(());
        }
        detach(dir)?;
        remove_mount_points(dir)
    }

    /// Mounts member `id`'s root file system and binds. On failure what was mounted
    /// is undone.
    pub fn add(&self, id: &str, rootfs: &Path, binds: &[HostBind]) -> Result<(), PodShareError> {
        let added = self.mount_member(id, rootfs, binds);
        if added.is_err() {
            if let Err(e) = self.remove(id) {
                tracing::warn!("undoing member {id}'s mounts: {e}");
            }
        }
        added
    }

    fn mount_member(
        &self,
        id: &str,
        rootfs: &Path,
        binds: &[HostBind],
    ) -> Result<(), PodShareError> {
        let member = self.dir.join(id);
        let target = member.join("rootfs");
        std::fs::create_dir_all(&target).map_err(io_fail("create", &target))?;
        attach_copy(rootfs, &target, false)?;
        for bind in binds {
            let target = member.join("mounts").join(bind.mount.to_string());
            if bind.dir {
                std::fs::create_dir_all(&target).map_err(io_fail("create", &target))?;
            } else {
                if let Some(parent) = target.parent() {
                    std::fs::create_dir_all(parent).map_err(io_fail("create", parent))?;
                }
                std::fs::File::create(&target).map_err(io_fail("create", &target))?;
            }
            attach_copy(&bind.source, &target, bind.readonly)?;
        }
        Ok(())
    }

    /// Unmounts member `id`'s entries and removes its directory. Idempotent.
    pub fn remove(&self, id: &str) -> Result<(), PodShareError> {
        let member = self.dir.join(id);
        if !member.exists() {
            return Ok(());
        }
        let mounts = member.join("mounts");
        if let Ok(entries) = std::fs::read_dir(&mounts) {
            for entry in entries.flatten() {
                detach(&entry.path())?;
            }
        }
        detach(&member.join("rootfs"))?;
        remove_mount_points(&member)
    }
}

/// Removes the tree of (now unmounted) mount points below and at `path`: only empty
/// directories and empty files, on the same file system as `path`. Anything else
/// means a mount is still there, and is reported rather than deleted: a
/// recursive delete would reach into a container's root file system or a bound host
/// directory.
fn remove_mount_points(path: &Path) -> Result<(), PodShareError> {
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::symlink_metadata(path).map_err(io_fail("inspect", path))?;
    let still_mounted = |p: &Path| PodShareError {
        what: "remove (still mounted, or not made by husk)",
        path: p.to_path_buf(),
        source: std::io::Error::from_raw_os_error(libc::ENOTEMPTY),
    };
    let entries = std::fs::read_dir(path).map_err(io_fail("list", path))?;
    for entry in entries {
        let entry = entry.map_err(io_fail("list", path))?;
        let child = entry.path();
        let meta = std::fs::symlink_metadata(&child).map_err(io_fail("inspect", &child))?;
        if meta.dev() != top.dev() {
            return Err(still_mounted(&child));
        }
        if meta.is_dir() {
            remove_mount_points(&child)?;
        } else if meta.is_file() && meta.len() == 0 {
            std::fs::remove_file(&child).map_err(io_fail("remove", &child))?;
        } else {
            return Err(still_mounted(&child));
        }
    }
    std::fs::remove_dir(path).map_err(io_fail("remove", path))
}

/// Lazily unmounts whatever is mounted on `path` (nothing mounted is fine). Lazily:
/// virtiofsd may still hold files open in the propagated copy.
fn detach(path: &Path) -> Result<(), PodShareError> {
    loop {
        match umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(fail("unmount", path)(e)),
        }
    }
}

fn c_path(path: &Path) -> Result<CString, PodShareError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| PodShareError {
        what: "use",
        path: path.to_path_buf(),
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })
}

/// Mounts a recursive copy of `source` on `target`, read-only (recursively) first
/// when `readonly`.
fn attach_copy(source: &Path, target: &Path, readonly: bool) -> Result<(), PodShareError> {
    let c_source = c_path(source)?;
    let c_target = c_path(target)?;
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as u32;
    // SAFETY: open_tree with a NUL-terminated path; it returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c_source.as_ptr(),
            flags,
        )
    };
    if fd < 0 {
        return Err(io_fail("copy the mount of", source)(
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: open_tree just returned this descriptor; nothing else owns it.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if readonly {
        set_read_only(
            Some(tree.as_fd()),
            c"",
            libc::AT_EMPTY_PATH | libc::AT_RECURSIVE,
        )
        .map_err(|e| io_fail("make read-only the copy of", source)(e.into()))?;
    }
    // SAFETY: move_mount of the detached tree onto a NUL-terminated target path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            c_target.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io_fail("mount onto", target)(
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
