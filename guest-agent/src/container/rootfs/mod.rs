//! The container's file system tree: the OCI `mounts`, the devices of a tmpfs `/dev`,
//! `linux.maskedPaths` and `linux.readonlyPaths`, `linux.rootfsPropagation` and
//! `root.readonly`.
//!
//! [`parse`] validates the spec and prepares everything as ready-made C strings
//! before `fork` ([`RootfsPlan`]); [`apply`] makes the system calls in the child,
//! without allocating. Destinations are cleaned lexically (`..` stops at the root)
//! and resolved inside the root file system with `openat2(RESOLVE_IN_ROOT)`, so a
//! symbolic link in the image cannot send a mount outside the container; missing
//! mount points are made (a directory, or an empty file for a bind of a file) when
//! their turn comes, after the mounts before them.

pub mod apply;
pub mod options;

use husk_protocol::{AgentError, ErrorCode};
use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use serde::Deserialize;
use std::ffi::CString;
use std::path::Path;

/// Most entries in each of `mounts`, `linux.devices`, `maskedPaths`, `readonlyPaths`.
const MAX_ENTRIES: usize = 256;
/// Longest path, and longest mount data.
const MAX_PATH: usize = 4096;

/// The devices every container with a tmpfs `/dev` gets (runc's defaults): path,
/// major, minor.
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// A path inside the container, cleaned, in the forms the child walks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPath {
    /// As shown in messages, absolute.
    pub shown: String,
    /// Each component.
    pub names: Vec<CString>,
    /// The relative path up to and including each component; the last is the path.
    pub prefixes: Vec<CString>,
}

impl RootPath {
    /// Cleans an absolute path; `None` for a relative one or the root itself.
    pub fn new(path: &str) -> Option<RootPath> {
        if !path.starts_with('/') || path.len() > MAX_PATH || path.contains('\0') {
            return None;
        }
        let mut parts: Vec<&str> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
        }
        if parts.is_empty() {
            return None;
        }
        let prefixes = (1..=parts.len())
            .map(|n| CString::new(parts[..n].join("/")))
            .collect::<Result<_, _>>()
            .ok()?;
        let names = parts
            .iter()
            .map(|p| CString::new(*p))
            .collect::<Result<_, _>>()
            .ok()?;
        Some(RootPath {
            shown: format!("/{}", parts.join("/")),
            names,
            prefixes,
        })
    }

    /// The relative path.
    pub fn full(&self) -> &CString {
        &self.prefixes[self.prefixes.len() - 1]
    }
}

/// One entry of `mounts`, ready for the child.
#[derive(Debug)]
pub struct MountStep {
    /// Where.
    pub dest: RootPath,
    /// What, for messages: `tmpfs`, `bind of /run/...`.
    pub what: String,
    /// `mount(2)`'s source.
    pub source: CString,
    /// `mount(2)`'s file system type; `None` for a bind.
    pub fstype: Option<CString>,
    /// Flags of the mount (for a bind: `MS_BIND`, maybe `MS_REC`).
    pub flags: MsFlags,
    /// For a bind with other flags: the remount's flags.
    pub remount: Option<MsFlags>,
    /// Propagation changes after the mount.
    pub propagation: Vec<MsFlags>,
    /// The file-system-specific data.
    pub data: Option<CString>,
    /// The mount point is a file (a bind of a file).
    pub file: bool,
}

/// A device node to make.
#[derive(Debug)]
pub struct DeviceNode {
    /// Where.
    pub path: RootPath,
    /// Character, block or FIFO.
    pub kind: SFlag,
    /// Permission bits.
    pub mode: u32,
    /// Device number.
    pub dev: u64,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// Everything about the container's file system tree, prepared before `fork`.
#[derive(Debug)]
pub struct RootfsPlan {
    /// `mounts`, in order.
    pub mounts: Vec<MountStep>,
    /// `/dev` is a tmpfs of the spec: devices, links and the console go there.
    pub dev_tmpfs: bool,
    /// The defaults and `linux.devices`, when `dev_tmpfs`.
    pub devices: Vec<DeviceNode>,
    /// `linux.maskedPaths`.
    pub masked: Vec<RootPath>,
    /// `linux.readonlyPaths`.
    pub readonly: Vec<RootPath>,
    /// `linux.rootfsPropagation`.
    pub propagation: Option<MsFlags>,
    /// `root.readonly`.
    pub root_readonly: bool,
    /// The spec has no `mounts` at all: `/proc` is mounted if the root has one (the
    /// agent's behaviour for bare process specs).
    pub implicit_proc: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecMount {
    destination: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    source: Option<String>,
    options: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecDevice {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    major: i64,
    #[serde(default)]
    minor: i64,
    file_mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecLinux {
    rootfs_propagation: Option<String>,
    masked_paths: Option<Vec<String>>,
    readonly_paths: Option<Vec<String>>,
    devices: Option<Vec<SpecDevice>>,
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorCode::InvalidArgument, message)
}

fn field<'de, T: Deserialize<'de> + Default>(
    value: &'de serde_json::Value,
    name: &str,
) -> Result<T, AgentError> {
    match value {
        serde_json::Value::Null => Ok(T::default()),
        v => T::deserialize(v).map_err(|e| invalid(format!("{name} is not valid: {e}"))),
    }
}

/// Validates the file system part of a `config.json` and prepares it for the child.
pub fn parse(spec: &serde_json::Value) -> Result<RootfsPlan, AgentError> {
    let mounts: Option<Vec<SpecMount>> = field(&spec["mounts"], "mounts")?;
    let linux: SpecLinux = field(&spec["linux"], "linux")?;
    let root_readonly: Option<bool> = field(&spec["root"]["readonly"], "root.readonly")?;
    let mut plan = RootfsPlan {
        mounts: Vec::new(),
        dev_tmpfs: false,
        devices: Vec::new(),
        masked: Vec::new(),
        readonly: Vec::new(),
        propagation: None,
        root_readonly: root_readonly.unwrap_or(false),
        implicit_proc: mounts.is_none(),
    };
    let mounts = mounts.unwrap_or_default();
    if mounts.len() > MAX_ENTRIES {
        return Err(invalid(format!("more than {MAX_ENTRIES} mounts")));
    }
    for (i, m) in mounts.iter().enumerate() {
        let step = mount_step(m)
            .map_err(|e| invalid(format!("mount {i} (destination {:?}): {e}", m.destination)))?;
        if step.dest.shown == "/dev" && step.fstype.is_some() {
            plan.dev_tmpfs = true;
        }
        plan.mounts.push(step);
    }
    if let Some(p) = &linux.rootfs_propagation {
        plan.propagation = Some(options::root_propagation(p).ok_or_else(|| {
            invalid(format!(
                "linux.rootfsPropagation {p:?} is not a propagation"
            ))
        })?);
    }
    plan.masked = paths(linux.masked_paths.unwrap_or_default(), "linux.maskedPaths")?;
    plan.readonly = paths(
        linux.readonly_paths.unwrap_or_default(),
        "linux.readonlyPaths",
    )?;
    let devices = linux.devices.unwrap_or_default();
    if devices.len() > MAX_ENTRIES {
        return Err(invalid(format!("more than {MAX_ENTRIES} linux.devices")));
    }
    if !devices.is_empty() && !plan.dev_tmpfs {
        return Err(invalid(
            "linux.devices needs a mount of a file system (a tmpfs) on /dev: husk does not \
             make device nodes in the root file system, which is the host's",
        ));
    }
    if plan.dev_tmpfs {
        let mut nodes = Vec::new();
        for d in &devices {
            nodes.push(
                device(d).map_err(|e| invalid(format!("linux.devices entry {:?}: {e}", d.path)))?,
            );
        }
        for (path, major, minor) in DEFAULT_DEVICES {
            if nodes.iter().all(|n| n.path.shown != *path) {
                plan.devices.push(DeviceNode {
                    path: RootPath::new(path).expect("a valid default path"),
                    kind: SFlag::S_IFCHR,
                    mode: 0o666,
                    dev: nix::sys::stat::makedev(*major, *minor),
                    uid: 0,
                    gid: 0,
                });
            }
        }
        plan.devices.extend(nodes);
    }
    Ok(plan)
}

fn mount_step(m: &SpecMount) -> Result<MountStep, String> {
    let dest = RootPath::new(&m.destination)
        .ok_or("the destination must be an absolute path below the root")?;
    let opts = options::parse(m.options.as_deref().unwrap_or_default())?;
    let kind = m.kind.as_deref().unwrap_or("");
    let bind = kind == "bind" || opts.flags.contains(MsFlags::MS_BIND);
    let data = match opts.data.as_str() {
        "" => None,
        d if d.len() > MAX_PATH => return Err("its data options are too long".into()),
        d => Some(CString::new(d).map_err(|_| "NUL byte in its options")?),
    };
    let c = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    if bind {
        let source = m.source.as_deref().ok_or("a bind mount needs a source")?;
        if !source.starts_with('/') {
            return Err(format!("bind source {source:?} is not absolute"));
        }
        let meta = std::fs::metadata(source)
            .map_err(|e| format!("bind source {source:?} in the guest: {e}"))?;
        let rest = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        return Ok(MountStep {
            dest,
            what: format!("bind of {source}"),
            source: c(source)?,
            fstype: None,
            flags: MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC),
            remount: (!rest.is_empty()).then_some(rest),
            propagation: opts.propagation,
            data,
            file: !meta.is_dir(),
        });
    }
    if kind.is_empty() {
        return Err("no type".into());
    }
    if opts.flags.contains(MsFlags::MS_REMOUNT) {
        return Err("remount is only supported with bind".into());
    }
    let source = m
        .source
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or(kind);
    // The guest has cgroup v2 only: `cgroup` means its unified hierarchy, as runc
    // mounts it on a cgroup v2 host.
    let fstype = if kind == "cgroup" { "cgroup2" } else { kind };
    Ok(MountStep {
        dest,
        what: kind.to_owned(),
        source: c(source)?,
        fstype: Some(c(fstype)?),
        flags: opts.flags,
        remount: None,
        propagation: opts.propagation,
        data,
        file: false,
    })
}

fn device(d: &SpecDevice) -> Result<DeviceNode, String> {
    let path = RootPath::new(&d.path).ok_or("the path must be absolute")?;
    let kind = match d.kind.as_str() {
        "c" | "u" => SFlag::S_IFCHR,
        "b" => SFlag::S_IFBLK,
        "p" => SFlag::S_IFIFO,
        other => return Err(format!("type {other:?} is not c, u, b or p")),
    };
    let number = |n: i64| u64::try_from(n).map_err(|_| format!("{n} is not a device number"));
    Ok(DeviceNode {
        path,
        kind,
        mode: d.file_mode.unwrap_or(0o666) & 0o7777,
        dev: nix::sys::stat::makedev(number(d.major)?, number(d.minor)?),
        uid: d.uid.unwrap_or(0),
        gid: d.gid.unwrap_or(0),
    })
}

fn paths(list: Vec<String>, name: &str) -> Result<Vec<RootPath>, AgentError> {
    if list.len() > MAX_ENTRIES {
        return Err(invalid(format!("more than {MAX_ENTRIES} {name}")));
    }
    list.iter()
        .map(|p| {
            RootPath::new(p)
                .ok_or_else(|| invalid(format!("{name}: {p:?} is not an absolute path")))
        })
        .collect()
}

impl RootfsPlan {
    /// Whether the root has a `/proc` directory to mount implicitly.
    pub fn with_implicit_proc(mut self, rootfs: &Path) -> Self {
        self.implicit_proc = self.implicit_proc
            && std::fs::symlink_metadata(rootfs.join("proc")).is_ok_and(|m| m.is_dir());
        self
    }

    /// What entry `index` of a stage is, for messages.
    pub fn describe_mount(&self, index: u32) -> String {
        match self.mounts.get(index as usize) {
            Some(m) => format!("mount {index} ({} on {})", m.what, m.dest.shown),
            None => format!("mount {index}"),
        }
    }

    /// The path of device `index`.
    pub fn describe_device(&self, index: u32) -> String {
        self.devices
            .get(index as usize)
            .map_or_else(|| format!("device {index}"), |d| d.path.shown.clone())
    }

    /// Path `index` of a list.
    pub fn describe_path(list: &[RootPath], index: u32) -> String {
        list.get(index as usize)
            .map_or_else(|| format!("entry {index}"), |p| p.shown.clone())
    }
}

#[cfg(test)]
mod tests;
