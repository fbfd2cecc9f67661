//! Mount tables, and the pseudo filesystems PID 1 mounts before anything else runs.

use nix::mount::{mount, MsFlags};

/// One entry of a mount table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountSpec {
    /// What to mount: a device, a 9p or virtio-fs tag, or the filesystem's name.
    pub source: &'static str,
    /// Filesystem type.
    pub fstype: &'static str,
    /// Where it goes; created if missing.
    pub target: &'static str,
    /// Mount flags.
    pub flags: MsFlags,
    /// Filesystem-specific options.
    pub data: Option<&'static str>,
}

/// The usual flags of pseudo filesystems.
pub const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

pub use husk_protocol::console::POD_SHM;

/// The early mounts, parents before children.
pub const EARLY_MOUNTS: &[MountSpec] = &[
    MountSpec {
        source: "proc",
        fstype: "proc",
        target: "/proc",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "sysfs",
        fstype: "sysfs",
        target: "/sys",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
    MountSpec {
        source: "devtmpfs",
        fstype: "devtmpfs",
        target: "/dev",
        flags: MsFlags::MS_NOSUID,
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "devpts",
        fstype: "devpts",
        target: "/dev/pts",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        data: Some("mode=0620,ptmxmode=0666"),
    },
    MountSpec {
        source: "tmpfs",
        fstype: "tmpfs",
        target: "/run",
        flags: MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        data: Some("mode=0755"),
    },
    MountSpec {
        source: "shm",
        fstype: "tmpfs",
        target: POD_SHM,
        flags: NOSUID_NODEV_NOEXEC,
        data: Some("mode=1777,size=65536k"),
    },
    MountSpec {
        source: "cgroup2",
        fstype: "cgroup2",
        target: "/sys/fs/cgroup",
        flags: NOSUID_NODEV_NOEXEC,
        data: None,
    },
];

/// A mount that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot mount {fstype} on {target}")]
pub struct MountError {
    fstype: &'static str,
    target: &'static str,
    #[source]
    source: std::io::Error,
}

/// Mounts a table in order, creating each target directory (and its parents) first.
pub fn mount_all(table: &[MountSpec]) -> Result<(), MountError> {
    for m in table {
        let fail = |source| MountError {
            fstype: m.fstype,
            target: m.target,
            source,
        };
        std::fs::create_dir_all(m.target).map_err(fail)?;
        mount(Some(m.source), m.target, Some(m.fstype), m.flags, m.data)
            .map_err(|e| fail(e.into()))?;
    }
    Ok(())
}

/// Mounts [`EARLY_MOUNTS`].
pub fn mount_early() -> Result<(), MountError> {
    mount_all(EARLY_MOUNTS)
}

/// Checks that a table mounts every parent before its children and no target twice.
pub fn check_order(table: &[MountSpec]) -> Result<(), String> {
    for (i, m) in table.iter().enumerate() {
        if !m.target.starts_with('/') {
            return Err(format!("{} is not absolute", m.target));
        }
        if table[..i].iter().any(|o| o.target == m.target) {
            return Err(format!("{} is mounted twice", m.target));
        }
        let later_parent = table[i + 1..].iter().find(|o| {
            m.target
                .starts_with(&format!("{}/", o.target.trim_end_matches('/')))
        });
        if let Some(parent) = later_parent {
            return Err(format!(
                "{} is mounted before its parent {}",
                m.target, parent.target
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_mounts_are_in_order() {
        check_order(EARLY_MOUNTS).unwrap();
    }

    #[test]
    fn check_order_catches_children_first_and_duplicates() {
        let proc_ = EARLY_MOUNTS[0];
        let dev = MountSpec {
            target: "/dev",
            ..proc_
        };
        let pts = MountSpec {
            target: "/dev/pts",
            ..proc_
        };
        assert_eq!(
            check_order(&[pts, dev]).unwrap_err(),
            "/dev/pts is mounted before its parent /dev"
        );
        assert_eq!(
            check_order(&[dev, dev]).unwrap_err(),
            "/dev is mounted twice"
        );
        assert!(check_order(&[dev, pts]).is_ok());
        // A sibling that shares a prefix is not a parent.
        let devx = MountSpec {
            target: "/devx",
            ..proc_
        };
        assert!(check_order(&[devx, dev]).is_ok());
    }
}
