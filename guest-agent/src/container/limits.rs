//! OCI `process.rlimits`, `process.oomScoreAdj` and `linux.sysctl`.
//!
//! Resource limits and the OOM score adjustment are set by the agent on the held
//! child (`prlimit`, `/proc/<pid>/oom_score_adj`) after its setup and before it may
//! exec: the agent still has every capability, so raising a hard limit or lowering
//! the score works as under runc, whose setup does it while still privileged.
//! Sysctls are written by the child itself, inside the container's namespaces.

use husk_protocol::{AgentError, ErrorCode};
use nix::errno::Errno;
use nix::libc;
use nix::unistd::Pid;
use serde::Deserialize;
use std::ffi::CString;

/// One entry of OCI `process.rlimits`.
#[derive(Debug, Deserialize)]
pub struct RlimitSpec {
    #[serde(rename = "type")]
    kind: String,
    hard: u64,
    soft: u64,
}

/// A resource limit to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// `RLIMIT_*` as the spec names it.
    pub name: String,
    resource: libc::__rlimit_resource_t,
    /// Soft limit (`u64::MAX`: unlimited).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

const RESOURCES: [(&str, libc::__rlimit_resource_t); 16] = [
    ("RLIMIT_AS", libc::RLIMIT_AS),
    ("RLIMIT_CORE", libc::RLIMIT_CORE),
    ("RLIMIT_CPU", libc::RLIMIT_CPU),
    ("RLIMIT_DATA", libc::RLIMIT_DATA),
    ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
    ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
    ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
    ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
    ("RLIMIT_NICE", libc::RLIMIT_NICE),
    ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
    ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
    ("RLIMIT_RSS", libc::RLIMIT_RSS),
    ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
    ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
    ("RLIMIT_STACK", libc::RLIMIT_STACK),
];

/// Validates `process.rlimits`: known names, each once, soft not above hard.
pub fn rlimits(specs: &[RlimitSpec]) -> Result<Vec<Rlimit>, AgentError> {
    let mut out: Vec<Rlimit> = Vec::with_capacity(specs.len());
    for spec in specs {
        let resource = RESOURCES
            .iter()
            .find(|(name, _)| *name == spec.kind)
            .map(|(_, r)| *r)
            .ok_or_else(|| {
                invalid(format!(
                    "process.rlimits: unknown resource {:?} (expected RLIMIT_NOFILE, \
                     RLIMIT_NPROC, ...)",
                    spec.kind
                ))
            })?;
        if out.iter().any(|r| r.resource == resource) {
            return Err(invalid(format!(
                "process.rlimits: {} is given twice",
                spec.kind
            )));
        }
        if spec.soft > spec.hard {
            return Err(invalid(format!(
                "process.rlimits: {} soft limit {} is above its hard limit {}",
                spec.kind, spec.soft, spec.hard
            )));
        }
        out.push(Rlimit {
            name: spec.kind.clone(),
            resource,
            soft: spec.soft,
            hard: spec.hard,
        });
    }
    Ok(out)
}

/// Validates `process.oomScoreAdj` (-1000 to 1000).
pub fn oom_score_adj(value: Option<i64>) -> Result<Option<i32>, AgentError> {
    match value {
        Some(v) if !(-1000..=1000).contains(&v) => Err(invalid(format!(
            "process.oomScoreAdj {v} is out of range (-1000 to 1000)"
        ))),
        Some(v) => Ok(Some(v as i32)),
        None => Ok(None),
    }
}

/// Sets the limits and the OOM score adjustment of the held process `pid`.
pub fn apply(pid: Pid, rlimits: &[Rlimit], oom_score_adj: Option<i32>) -> Result<(), AgentError> {
    for limit in rlimits {
        let new = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: `new` is a valid rlimit for the call; no old value is asked for.
        let done =
            unsafe { libc::prlimit(pid.as_raw(), limit.resource, &new, std::ptr::null_mut()) };
        if done < 0 {
            return Err(AgentError::new(
                ErrorCode::InvalidArgument,
                format!(
                    "process.rlimits: setting {} to soft {} hard {}: {}",
                    limit.name,
                    limit.soft,
                    limit.hard,
                    Errno::last().desc()
                ),
            ));
        }
    }
    if let Some(adj) = oom_score_adj {
        let path = format!("/proc/{pid}/oom_score_adj");
        std::fs::write(&path, adj.to_string()).map_err(|e| {
            AgentError::new(
                ErrorCode::Internal,
                format!("process.oomScoreAdj: writing {adj} to {path}: {e}"),
            )
        })?;
    }
    Ok(())
}

/// A sysctl to write: `/proc/sys/<name with . as />` and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sysctl {
    /// The name, for messages.
    pub name: String,
    /// The file under `/proc/sys`.
    pub path: CString,
    /// What is written.
    pub value: Vec<u8>,
}

/// Most sysctls one container may set.
const MAX_SYSCTLS: usize = 256;

/// Validates `linux.sysctl` (an object of name to value).
pub fn sysctls(value: &serde_json::Value) -> Result<Vec<Sysctl>, AgentError> {
    let map = match value {
        serde_json::Value::Null => return Ok(Vec::new()),
        serde_json::Value::Object(map) => map,
        _ => return Err(invalid("linux.sysctl is not an object of names to values")),
    };
    if map.len() > MAX_SYSCTLS {
        return Err(invalid(format!(
            "linux.sysctl has {} entries, more than {MAX_SYSCTLS}",
            map.len()
        )));
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let value = value
            .as_str()
            .ok_or_else(|| invalid(format!("linux.sysctl {name:?}: the value is not a string")))?;
        let bad = name.is_empty()
            || name.contains(['/', '\0'])
            || name.split('.').any(|part| part.is_empty() || part == "..");
        if bad {
            return Err(invalid(format!(
                "linux.sysctl: {name:?} is not a sysctl name (dotted, without `/` or `..`)"
            )));
        }
        let path = format!("/proc/sys/{}", name.replace('.', "/"));
        let path = CString::new(path).map_err(|_| invalid("linux.sysctl: NUL in a name"))?;
        if value.contains('\0') {
            return Err(invalid(format!("linux.sysctl {name:?}: NUL in the value")));
        }
        out.push(Sysctl {
            name: name.clone(),
            path,
            value: value.as_bytes().to_vec(),
        });
    }
    Ok(out)
}

/// Writes one sysctl. Child side: system calls only, no allocation.
pub fn write_sysctl(sysctl: &Sysctl) -> Result<(), Errno> {
    // SAFETY: the path is a NUL-terminated string that lives for the call.
    let fd = unsafe { libc::open(sysctl.path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the buffer is `value`, valid for its length; `fd` was opened above.
    let written = unsafe { libc::write(fd, sysctl.value.as_ptr().cast(), sysctl.value.len()) };
    let result = if written < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    };
    // SAFETY: `fd` is ours and not used again.
    unsafe { libc::close(fd) };
    result
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorCode::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn specs(v: serde_json::Value) -> Vec<RlimitSpec> {
        Vec::<RlimitSpec>::deserialize(v).unwrap()
    }

    #[test]
    fn rlimits_are_validated() {
        let limits = rlimits(&specs(json!([
            {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 18446744073709551615u64}
        ])))
        .unwrap();
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[0].resource, libc::RLIMIT_NOFILE);
        assert_eq!((limits[1].soft, limits[1].hard), (0, u64::MAX));
        for (bad, expected) in [
            (
                json!([{"type": "RLIMIT_FOO", "soft": 1, "hard": 1}]),
                "unknown resource",
            ),
            (
                json!([{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]),
                "above its hard",
            ),
            (
                json!([{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1},
                       {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}]),
                "twice",
            ),
        ] {
            let err = rlimits(&specs(bad)).unwrap_err();
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }

    #[test]
    fn oom_score_adj_is_bounded() {
        assert_eq!(oom_score_adj(Some(-1000)).unwrap(), Some(-1000));
        assert_eq!(oom_score_adj(None).unwrap(), None);
        assert!(oom_score_adj(Some(1001)).is_err());
    }

    #[test]
    fn sysctl_names_become_paths_and_bad_names_are_refused() {
        let list = sysctls(&json!({"kernel.domainname": "example.org"})).unwrap();
        assert_eq!(list[0].path.as_c_str(), c"/proc/sys/kernel/domainname");
        assert_eq!(list[0].value, b"example.org");
        for bad in ["kernel/../x", "..", "net..ipv4", "", ".a", "a/b"] {
            let err = sysctls(&json!({bad: "1"})).unwrap_err();
            assert!(
                err.message.contains("not a sysctl name"),
                "{bad}: {}",
                err.message
            );
        }
        assert!(sysctls(&json!({"a.b": 1})).is_err());
        assert!(sysctls(&json!(null)).unwrap().is_empty());
    }

    #[test]
    fn apply_sets_the_limits_of_a_process() {
        // On ourselves, lowering the soft limit only (allowed without privileges).
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        let limit = Rlimit {
            name: "RLIMIT_CORE".into(),
            resource: libc::RLIMIT_CORE,
            soft: 0,
            hard,
        };
        apply(Pid::this(), &[limit], None).unwrap();
        let now = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!(now, (0, hard));
        let restore = Rlimit {
            name: "RLIMIT_CORE".into(),
            resource: libc::RLIMIT_CORE,
            soft,
            hard,
        };
        apply(Pid::this(), &[restore], None).unwrap();
    }
}
