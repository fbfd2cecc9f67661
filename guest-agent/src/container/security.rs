//! OCI `process.capabilities` and `process.noNewPrivileges`: parsed into bit masks
//! before `fork`, applied by the child with raw `prctl` and `capset` (no
//! allocation). Also the labels the agent accepts without applying them.
//!
//! Order in the child, as in runc: the bounding set is reduced while the process is
//! still root, `PR_SET_KEEPCAPS` keeps the permitted set across `setuid`, then
//! `capset` sets the effective, permitted and inheritable sets and the ambient ones
//! are raised; `PR_SET_NO_NEW_PRIVS` follows.

use husk_protocol::{AgentError, ErrorCode};
use nix::errno::Errno;
use nix::libc;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};

pub use husk_protocol::features::CAPABILITIES as NAMES;

/// `_LINUX_CAPABILITY_VERSION_3`.
const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// OCI `process.capabilities`.
#[derive(Debug, Default, Deserialize)]
pub struct CapabilitiesSpec {
    #[serde(default, deserialize_with = "super::seccomp::null_as_empty")]
    bounding: Vec<String>,
    #[serde(default, deserialize_with = "super::seccomp::null_as_empty")]
    effective: Vec<String>,
    #[serde(default, deserialize_with = "super::seccomp::null_as_empty")]
    inheritable: Vec<String>,
    #[serde(default, deserialize_with = "super::seccomp::null_as_empty")]
    permitted: Vec<String>,
    #[serde(default, deserialize_with = "super::seccomp::null_as_empty")]
    ambient: Vec<String>,
}

/// The five capability sets as bit masks (bit `n`: capability `n`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The bounding set: every capability outside it is dropped.
    pub bounding: u64,
    /// The effective set.
    pub effective: u64,
    /// The permitted set.
    pub permitted: u64,
    /// The inheritable set.
    pub inheritable: u64,
    /// The ambient set.
    pub ambient: u64,
}

/// What the child applies of a process's security fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct Security {
    /// The capability sets; `None` leaves the agent's (root's full) sets.
    pub capabilities: Option<Capabilities>,
    /// The highest capability number the kernel knows.
    pub last_cap: u32,
    /// `noNewPrivileges`.
    pub no_new_privileges: bool,
}

/// Converts `process.capabilities`. Names unknown to this agent or above the
/// kernel's last capability are ignored as runc does, and given back for a log line.
pub fn capabilities(
    spec: &CapabilitiesSpec,
    last_cap: u32,
) -> Result<(Capabilities, Vec<String>), AgentError> {
    let mut ignored = Vec::new();
    let mut mask = |names: &[String], set: &str| -> Result<u64, AgentError> {
        let mut bits = 0u64;
        for name in names {
            if name.is_empty() || name.contains('\0') {
                return Err(AgentError::new(
                    ErrorCode::InvalidArgument,
                    format!("process.capabilities.{set}: {name:?} is not a capability name"),
                ));
            }
            match NAMES.iter().position(|n| n == name) {
                Some(n) if n as u32 <= last_cap => bits |= 1 << n,
                _ if !ignored.contains(name) => ignored.push(name.clone()),
                _ => {}
            }
        }
        Ok(bits)
    };
    let caps = Capabilities {
        bounding: mask(&spec.bounding, "bounding")?,
        effective: mask(&spec.effective, "effective")?,
        permitted: mask(&spec.permitted, "permitted")?,
        inheritable: mask(&spec.inheritable, "inheritable")?,
        ambient: mask(&spec.ambient, "ambient")?,
    };
    Ok((caps, ignored))
}

/// The highest capability number of the running kernel (40 if it cannot be read).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .map_or(NAMES.len() as u32 - 1, |n: u32| n.min(63))
}

/// Logs a message once per agent for each `flag` (labels are accepted, not applied).
pub fn log_once(flag: &AtomicBool, message: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        eprintln!("husk-agent: {message}");
    }
}

/// Logs (once per agent) that LSM labels are not applied.
pub fn note_labels(process: &serde_json::Value, linux: &serde_json::Value) {
    static LOGGED: AtomicBool = AtomicBool::new(false);
    let set = |v: &serde_json::Value| v.as_str().is_some_and(|s| !s.is_empty());
    let mut fields = Vec::new();
    if set(&process["apparmorProfile"]) {
        fields.push("process.apparmorProfile");
    }
    if set(&process["selinuxLabel"]) {
        fields.push("process.selinuxLabel");
    }
    if set(&linux["mountLabel"]) {
        fields.push("linux.mountLabel");
    }
    if !fields.is_empty() {
        log_once(
            &LOGGED,
            &format!(
                "{} accepted but not applied (the guest has no AppArmor or SELinux)",
                fields.join(", ")
            ),
        );
    }
}

fn prctl(option: libc::c_int, arg2: libc::c_ulong, arg3: libc::c_ulong) -> Result<(), Errno> {
    // SAFETY: the prctl options used here take integers only and touch no memory of
    // the caller.
    let done = unsafe { libc::prctl(option, arg2, arg3, 0 as libc::c_ulong, 0 as libc::c_ulong) };
    if done < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Drops every capability outside `bounding` from the bounding set, and sets
/// `PR_SET_KEEPCAPS` so that `setuid` keeps the permitted set. Child side: no
/// allocation.
pub fn before_setuid(caps: &Capabilities, last_cap: u32) -> Result<(), Errno> {
    for cap in 0..=last_cap.min(63) {
        if caps.bounding & (1 << cap) == 0 {
            prctl(libc::PR_CAPBSET_DROP, cap.into(), 0)?;
        }
    }
    prctl(libc::PR_SET_KEEPCAPS, 1, 0)
}

/// `capset` of the effective, permitted and inheritable sets, then the ambient
/// ones. Child side: no allocation.
pub fn capset(caps: &Capabilities) -> Result<(), Errno> {
    prctl(libc::PR_SET_KEEPCAPS, 0, 0)?;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let half = |shift: u32| Data {
        effective: (caps.effective >> shift) as u32,
        permitted: (caps.permitted >> shift) as u32,
        inheritable: (caps.inheritable >> shift) as u32,
    };
    let data = [half(0), half(32)];
    // SAFETY: version 3 takes a header and two data records, which live on the
    // stack for the whole call.
    let done = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if done < 0 {
        return Err(Errno::last());
    }
    for cap in 0..64u64 {
        if caps.ambient & (1 << cap) != 0 {
            prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
            )?;
        }
    }
    Ok(())
}

/// `PR_SET_NO_NEW_PRIVS`. Child side: no allocation.
pub fn no_new_privileges() -> Result<(), Errno> {
    prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value, last: u32) -> (Capabilities, Vec<String>) {
        let spec = CapabilitiesSpec::deserialize(value).unwrap();
        capabilities(&spec, last).unwrap()
    }

    #[test]
    fn names_become_bits_and_unknown_ones_are_ignored() {
        let (caps, ignored) = parse(
            json!({
                "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_BOGUS"],
                "effective": ["CAP_KILL", "kill"],
                "permitted": ["CAP_KILL", "CAP_CHECKPOINT_RESTORE"],
                "ambient": ["CAP_NET_RAW"]
            }),
            40,
        );
        assert_eq!(caps.bounding, 1 | 1 << 5 | 1 << 13);
        assert_eq!(caps.effective, 1 << 5);
        assert_eq!(caps.permitted, 1 << 5 | 1 << 40);
        assert_eq!(caps.inheritable, 0);
        assert_eq!(caps.ambient, 1 << 13);
        assert_eq!(ignored, ["CAP_BOGUS", "kill"]);
        // A capability the running kernel does not know is ignored too.
        let (caps, ignored) = parse(json!({"permitted": ["CAP_CHECKPOINT_RESTORE"]}), 39);
        assert_eq!(caps.permitted, 0);
        assert_eq!(ignored, ["CAP_CHECKPOINT_RESTORE"]);
    }

    #[test]
    fn empty_names_are_refused() {
        let spec = CapabilitiesSpec::deserialize(json!({"effective": [""]})).unwrap();
        let err = capabilities(&spec, 40).unwrap_err();
        assert!(err.message.contains("process.capabilities.effective"));
    }

    #[test]
    fn the_names_are_in_kernel_order() {
        assert_eq!(NAMES[21], "CAP_SYS_ADMIN");
        assert_eq!(NAMES[29], "CAP_AUDIT_WRITE");
        assert_eq!(NAMES[38], "CAP_PERFMON");
    }
}
