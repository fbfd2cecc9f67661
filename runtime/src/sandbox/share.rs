//! The sandbox's virtio-fs share: the container's root file system and the host
//! paths its spec bind-mounts, assembled by virtiofsd in a mount namespace of its own
//! (`husk_vmm::virtiofsd::layout`).
//!
//! In the share (guest path [`GUEST_SHARE`]): `rootfs/` is the bundle's root file
//! system, `mounts/<n>` the source of the spec's `n`th mount when that is a bind of a
//! host path. [`plan_binds`] picks those mounts out of the spec and rewrites their
//! `source` to the guest path; every other mount is the agent's to make in the guest.
//! A bind onto `/dev/shm` becomes a tmpfs in the guest: shared memory cannot cross
//! the VM boundary.

use husk_vmm::virtiofsd::layout::{Access, EntryKind, ShareEntry, ShareLayout};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A pod's member directory's name, in the sandbox's state directory and in the share.
pub const MEMBERS_DIR: &str = "containers";
/// The virtio-fs tag of the share.
pub const SHARE_TAG: &str = "sandbox";
/// Where the agent mounts the share.
pub const GUEST_SHARE: &str = "/run/husk/shares/sandbox";
/// The container's root file system in the guest.
pub const GUEST_ROOTFS: &str = "/run/husk/shares/sandbox/rootfs";
/// Most host binds one container may have.
const MAX_BINDS: usize = 256;

/// A host path the spec bind-mounts, placed at `mounts/<mount>` in the share.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostBind {
    /// The index of the mount in the spec's `mounts`.
    pub mount: usize,
    /// The host path, absolute.
    pub source: PathBuf,
    /// Whether it is a directory.
    pub dir: bool,
    /// Whether the spec asks for it read-only.
    pub readonly: bool,
}

/// A mount of the spec that cannot be carried into the guest.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// Its source is missing or unreadable.
    #[error("mount {index} (destination {destination:?}): bind source {}", source_path.display())]
    Source {
        /// Its index in `mounts`.
        index: usize,
        /// Its destination.
        destination: String,
        /// The host path.
        source_path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It is malformed.
    #[error("mount {index}: {message}")]
    Malformed {
        /// Its index in `mounts`.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// There are too many.
    #[error("more than {MAX_BINDS} bind mounts of host paths")]
    TooMany,
}

/// Picks the host binds out of `spec["mounts"]` (relative sources are relative to
/// `bundle`), checks their sources, and rewrites the spec for the guest, where the
/// share holds them at `<guest_dir>/mounts/<n>` ([`GUEST_SHARE`] for a sandbox's
/// own container).
pub fn plan_binds(
    spec: &mut Value,
    bundle: &Path,
    guest_dir: &str,
) -> Result<Vec<HostBind>, ShareError> {
    let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) else {
        return Ok(Vec::new());
    };
    let mut binds = Vec::new();
    for (index, mount) in mounts.iter_mut().enumerate() {
        let malformed = |message: &str| ShareError::Malformed {
            index,
            message: message.to_owned(),
        };
        let options: Vec<String> = match mount.get("options") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|o| o.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| malformed("options must be strings"))?,
            Some(_) => return Err(malformed("options is not a list")),
        };
        let kind = mount.get("type").and_then(Value::as_str).unwrap_or("");
        let is_bind = kind == "bind" || options.iter().any(|o| o == "bind" || o == "rbind");
        if !is_bind {
            continue;
        }
        let destination = mount
            .get("destination")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("no destination"))?
            .to_owned();
        let readonly = options
            .iter()
            .rev()
            .find(|o| *o == "ro" || *o == "rw")
            .is_some_and(|o| o == "ro");
        if destination.trim_end_matches('/') == "/dev/shm" {
            *mount = shm_tmpfs(&destination, &options);
            continue;
        }
        let source = mount
            .get("source")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed("a bind mount needs a source"))?;
        let source = bundle.join(source);
        let meta = std::fs::metadata(&source).map_err(|e| ShareError::Source {
            index,
            destination: destination.clone(),
            source_path: source.clone(),
            source: e,
        })?;
        if binds.len() == MAX_BINDS {
            return Err(ShareError::TooMany);
        }
        mount["source"] = json!(format!("{guest_dir}/mounts/{index}"));
        binds.push(HostBind {
            mount: index,
            source,
            dir: meta.is_dir(),
            readonly,
        });
    }
    Ok(binds)
}

/// The tmpfs that replaces a bind onto `/dev/shm`, with the bind's flags.
fn shm_tmpfs(destination: &str, options: &[String]) -> Value {
    let mut kept: Vec<&str> = options
        .iter()
        .map(String::as_str)
        .filter(|o| matches!(*o, "ro" | "rw" | "nosuid" | "nodev" | "noexec"))
        .collect();
    kept.extend(["mode=1777", "size=65536k"]);
    json!({"destination": destination, "type": "tmpfs", "source": "shm", "options": kept})
}

/// The share's layout: the root file system, then the binds, then a pod's member
/// directory (a host directory whose later mounts reach the share).
pub fn layout(rootfs: &Path, binds: &[HostBind], pod_share: Option<&Path>) -> ShareLayout {
    let mut entries = vec![ShareEntry {
        source: rootfs.to_path_buf(),
        target: "rootfs".into(),
        kind: EntryKind::Dir,
        access: Access::ReadWrite,
    }];
    entries.extend(binds.iter().map(|b| ShareEntry {
        source: b.source.clone(),
        target: PathBuf::from("mounts").join(b.mount.to_string()),
        kind: if b.dir {
            EntryKind::Dir
        } else {
            EntryKind::File
        },
        access: if b.readonly {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        },
    }));
    if let Some(dir) = pod_share {
        entries.push(ShareEntry {
            source: dir.to_path_buf(),
            target: MEMBERS_DIR.into(),
            kind: EntryKind::Dir,
            // The guest writes in its members' trees, never in the directory that
            // holds them: the host walks that one by path to add and remove members.
            access: Access::FixedTree,
        });
    }
    ShareLayout {
        entries,
        receive_host_mounts: pod_share.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_binds_are_rewritten_and_the_rest_is_left_to_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hosts"), "127.0.0.1 localhost\n").unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let mut spec = json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/etc/hosts", "type": "bind", "source": "hosts",
             "options": ["rbind", "ro"]},
            {"destination": "/data", "source": dir.path().join("data"),
             "options": ["bind", "ro", "rw"]},
            {"destination": "/dev/shm", "type": "bind", "source": "/nowhere",
             "options": ["bind", "nosuid", "private"]},
        ]});
        let binds = plan_binds(&mut spec, dir.path(), GUEST_SHARE).unwrap();
        assert_eq!(
            binds,
            [
                HostBind {
                    mount: 1,
                    source: dir.path().join("hosts"),
                    dir: false,
                    readonly: true
                },
                HostBind {
                    mount: 2,
                    source: dir.path().join("data"),
                    dir: true,
                    readonly: false
                },
            ]
        );
        assert_eq!(spec["mounts"][0]["source"], "proc");
        assert_eq!(
            spec["mounts"][1]["source"],
            "/run/husk/shares/sandbox/mounts/1"
        );
        assert_eq!(
            spec["mounts"][2]["source"],
            "/run/husk/shares/sandbox/mounts/2"
        );
        assert_eq!(
            spec["mounts"][3],
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                   "options": ["nosuid", "mode=1777", "size=65536k"]})
        );
        let layout = layout(Path::new("/b/rootfs"), &binds, None);
        let targets: Vec<_> = layout.entries.iter().map(|e| e.target.clone()).collect();
        assert_eq!(
            targets,
            [
                PathBuf::from("rootfs"),
                "mounts/1".into(),
                "mounts/2".into()
            ]
        );
        assert_eq!(layout.entries[1].kind, EntryKind::File);
        assert_eq!(layout.entries[1].access, Access::ReadOnly);
        assert_eq!(layout.entries[2].access, Access::ReadWrite);
        // A pod's member directory: the guest cannot make, remove or replace its
        // entries (the host walks them by path).
        let pod = super::layout(
            Path::new("/b/rootfs"),
            &binds,
            Some(Path::new("/s/containers")),
        );
        let members = pod.entries.last().unwrap();
        assert_eq!(members.target, PathBuf::from(MEMBERS_DIR));
        assert_eq!(members.access, Access::FixedTree);
        assert!(pod.receive_host_mounts);
    }

    #[test]
    fn a_missing_source_names_the_mount() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = json!({"mounts": [
            {"destination": "/etc/resolv.conf", "type": "bind", "source": "/no/such/file"}
        ]});
        let err = plan_binds(&mut spec, dir.path(), GUEST_SHARE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("mount 0"), "{err}");
        assert!(err.contains("/etc/resolv.conf"), "{err}");
        assert!(err.contains("/no/such/file"), "{err}");
        let mut spec = json!({"mounts": [{"destination": "/x", "type": "bind"}]});
        let err = plan_binds(&mut spec, dir.path(), GUEST_SHARE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a source"), "{err}");
        assert!(plan_binds(&mut json!({}), dir.path(), GUEST_SHARE)
            .unwrap()
            .is_empty());
    }
}
