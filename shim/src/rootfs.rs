//! The task's root file system: the mounts containerd's snapshotter prepared
//! (typically one overlay), mounted on `<bundle>/rootfs` before the sandbox starts
//! and unmounted when the task is deleted.

use crate::error::{Result, ShimError};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};

/// How many mounts stacked on one point unmounting takes off at most.
const MAX_STACKED: usize = 16;

/// One mount of `CreateTaskRequest.rootfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    /// File system type (`overlay`, `bind`, ...).
    pub fstype: String,
    /// Source (a device, a directory, or the type's name for overlay).
    pub source: String,
    /// fstab-style options: flags (`ro`, `nosuid`, `rbind`, ...) and data.
    pub options: Vec<String>,
}

/// The mount flags and data that fstab-style `options` stand for: known flag
/// names set (or clear) flags, anything else is passed on as data.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags = (flags | set) - clear;
    }
    (flags, data.join(","))
}

/// Mounts `mounts` on `target` in order; on a failure, unmounts what it mounted.
pub fn mount_all(mounts: &[RootfsMount], target: &Path) -> Result<()> {
    for (done, m) in mounts.iter().enumerate() {
        if let Err(e) = mount_one(m, target) {
            for _ in 0..done {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
    }
    Ok(())
}

fn mount_one(m: &RootfsMount, target: &Path) -> Result<()> {
    let (flags, data) = parse_options(&m.options);
    let fstype = if m.fstype.is_empty() || m.fstype == "bind" {
        None
    } else {
        Some(m.fstype.as_str())
    };
    let data = (!data.is_empty()).then_some(data.as_str());
    let err = |source| ShimError::Mount {
        what: format!("{} {}", m.fstype, m.source),
        target: target.to_owned(),
        source,
    };
    // A bind mount takes no flags but MS_BIND/MS_REC the first time; read-only and
    // the like need a remount.
    let first = if flags.contains(MsFlags::MS_BIND) {
        flags & (MsFlags::MS_BIND | MsFlags::MS_REC)
    } else {
        flags
    };
    mount(Some(m.source.as_str()), target, fstype, first, data).map_err(err)?;
    if flags.contains(MsFlags::MS_BIND) && first != flags {
        let again = flags | MsFlags::MS_REMOUNT;
        if let Err(e) = mount(None::<&str>, target, None::<&str>, again, None::<&str>) {
            let _ = umount2(target, MntFlags::MNT_DETACH);
            return Err(err(e));
        }
    }
    Ok(())
}

/// Unmounts everything mounted on `target` (nothing there is fine): a plain unmount,
/// or a lazy one if the file system is still busy.
pub fn unmount_all(target: &Path) -> Result<()> {
    for _ in 0..MAX_STACKED {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(Errno::EBUSY) => match umount2(target, MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(source) => {
                    return Err(ShimError::Unmount {
                        target: target.to_owned(),
                        source,
                    })
                }
            },
            // Not a mount point (any more), or no such directory.
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(ShimError::Unmount {
                    target: target.to_owned(),
                    source,
                })
            }
        }
    }
    Ok(())
}

/// The mount point of a bundle's root file system.
pub fn target(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_are_data() {
        let (flags, data) = parse_options(&opts(&[
            "index=off",
            "workdir=/s/2/work",
            "upperdir=/s/2/fs",
            "lowerdir=/s/1/fs",
        ]));
        assert_eq!(flags, MsFlags::empty());
        assert_eq!(
            data,
            "index=off,workdir=/s/2/work,upperdir=/s/2/fs,lowerdir=/s/1/fs"
        );
    }

    #[test]
    fn flags_set_and_clear_in_order() {
        let (flags, data) = parse_options(&opts(&["rbind", "ro", "nosuid", "rw"]));
        assert_eq!(
            flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID
        );
        assert_eq!(data, "");
        let (flags, _) = parse_options(&opts(&["rw", "ro"]));
        assert_eq!(flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn unmounting_what_is_not_mounted_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        unmount_all(dir.path()).unwrap();
        unmount_all(&dir.path().join("missing")).unwrap();
    }
}
