//! The process and security fields of the OCI spec, gathered and validated before
//! `fork`: per process (`capabilities`, `noNewPrivileges`, `rlimits`,
//! `oomScoreAdj`, labels) and per container (`linux.namespaces`, `domainname`,
//! `linux.sysctl`, `linux.seccomp`).

use super::limits::{self, Rlimit, RlimitSpec, Sysctl};
use super::seccomp::{self, Program};
use super::security::{self, CapabilitiesSpec, Security};
use husk_protocol::{AgentError, ErrorCode};
use nix::sched::CloneFlags;
use serde::Deserialize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The fields of an OCI `process` object read here (flattened into the process).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessFields {
    capabilities: Option<CapabilitiesSpec>,
    #[serde(default)]
    no_new_privileges: bool,
    #[serde(default, deserialize_with = "super::seccomp::null_as_empty")]
    rlimits: Vec<RlimitSpec>,
    oom_score_adj: Option<i64>,
    apparmor_profile: Option<String>,
    selinux_label: Option<String>,
}

/// What is applied of a process's fields.
#[derive(Debug, Clone, Default)]
pub struct ProcessSetup {
    /// Capabilities and `noNewPrivileges`, applied by the child.
    pub security: Security,
    /// Resource limits, set on the held child by the agent.
    pub rlimits: Vec<Rlimit>,
    /// `oomScoreAdj`, set on the held child by the agent.
    pub oom_score_adj: Option<i32>,
}

/// Validates a process's fields. Without `capabilities` the process keeps the
/// agent's (root's) capabilities.
pub fn process_setup(fields: ProcessFields) -> Result<ProcessSetup, AgentError> {
    static IGNORED_CAPS: AtomicBool = AtomicBool::new(false);
    static LABELS: AtomicBool = AtomicBool::new(false);
    let last_cap = security::last_cap();
    let capabilities = match &fields.capabilities {
        Some(spec) => {
            let (caps, ignored) = security::capabilities(spec, last_cap)?;
            if !ignored.is_empty() {
                security::log_once(
                    &IGNORED_CAPS,
                    &format!(
                        "process.capabilities: ignoring capabilities unknown to the guest \
                         kernel: {}",
                        ignored.join(", ")
                    ),
                );
            }
            Some(caps)
        }
        None => None,
    };
    let labels = [&fields.apparmor_profile, &fields.selinux_label];
    if labels
        .iter()
        .any(|l| l.as_deref().is_some_and(|l| !l.is_empty()))
    {
        security::log_once(
            &LABELS,
            "process.apparmorProfile/selinuxLabel accepted but not applied (the guest has \
             no AppArmor or SELinux)",
        );
    }
    Ok(ProcessSetup {
        security: Security {
            capabilities,
            last_cap,
            no_new_privileges: fields.no_new_privileges,
        },
        rlimits: limits::rlimits(&fields.rlimits)?,
        oom_score_adj: limits::oom_score_adj(fields.oom_score_adj)?,
    })
}

/// What is applied of a container's fields.
#[derive(Debug)]
pub struct ContainerSetup {
    /// Namespaces unshared besides the mount namespace (never `pid` or `network`:
    /// see `pid` and `network`).
    pub namespaces: CloneFlags,
    /// Namespaces joined by path (guest paths), in the order of the spec.
    pub join: Vec<JoinSpec>,
    /// A new pid namespace (`pid` without a path).
    pub new_pid: bool,
    /// A new network namespace (`network` without a path).
    pub new_network: bool,
    /// `domainname`, set in the new UTS namespace.
    pub domainname: Option<String>,
    /// `linux.sysctl`.
    pub sysctl: Vec<Sysctl>,
    /// `linux.seccomp`, compiled; also applied to exec'd processes.
    pub seccomp: Option<Arc<Program>>,
}

/// A namespace to join by its guest path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinSpec {
    /// Its type, one `CLONE_NEW*` flag.
    pub kind: CloneFlags,
    /// Its path in the guest, normally `/proc/<pid>/ns/<type>`.
    pub path: String,
}

/// The namespaces of a container, read from `linux.namespaces`.
#[derive(Debug, PartialEq, Eq)]
struct Namespaces {
    unshare: CloneFlags,
    join: Vec<JoinSpec>,
    new_pid: bool,
    new_network: bool,
}

/// The longest namespace path accepted.
const MAX_NS_PATH: usize = 4096;

/// One entry of `linux.namespaces`.
#[derive(Debug, Deserialize)]
struct NamespaceSpec {
    #[serde(rename = "type")]
    kind: String,
    path: Option<String>,
}

/// Validates a container's fields; `hostname` tells whether a hostname is set.
pub fn container_setup(
    spec: &serde_json::Value,
    hostname: bool,
) -> Result<ContainerSetup, AgentError> {
    static LABEL: AtomicBool = AtomicBool::new(false);
    let linux = &spec["linux"];
    let domainname = match &spec["domainname"] {
        serde_json::Value::Null => None,
        serde_json::Value::String(name) if name.is_empty() => None,
        serde_json::Value::String(name) if name.len() <= 64 && !name.contains('\0') => {
            Some(name.clone())
        }
        other => {
            return Err(invalid(format!(
                "domainname {other} is not a valid domain name (a string of at most 64 bytes)"
            )))
        }
    };
    let Namespaces {
        unshare: mut namespaces,
        join,
        new_pid,
        new_network,
    } = namespaces(&linux["namespaces"])?;
    let joins_uts = join.iter().any(|j| j.kind == CloneFlags::CLONE_NEWUTS);
    if (hostname || domainname.is_some()) && !joins_uts {
        namespaces |= CloneFlags::CLONE_NEWUTS;
    }
    if linux["mountLabel"].as_str().is_some_and(|l| !l.is_empty()) {
        security::log_once(&LABEL, "linux.mountLabel accepted but not applied");
    }
    let seccomp = match &linux["seccomp"] {
        serde_json::Value::Null => None,
        profile => {
            let program = seccomp::compile(profile)?;
            if !program.unknown.is_empty() {
                static UNKNOWN: AtomicBool = AtomicBool::new(false);
                security::log_once(
                    &UNKNOWN,
                    &format!(
                        "linux.seccomp: ignoring system calls unknown on x86_64: {}",
                        program.unknown.join(", ")
                    ),
                );
            }
            Some(Arc::new(program))
        }
    };
    Ok(ContainerSetup {
        namespaces,
        join,
        new_pid,
        new_network,
        domainname,
        sysctl: limits::sysctls(&linux["sysctl"])?,
        seccomp,
    })
}

/// The namespaces besides the mount namespace (always new): unshared, joined by a
/// guest path, or, for `pid` and `network`, made by the agent around the fork.
/// `user` and `time` are accepted and not applied (see `docs/protocol.md`).
fn namespaces(list: &serde_json::Value) -> Result<Namespaces, AgentError> {
    let mut out = Namespaces {
        unshare: CloneFlags::empty(),
        join: Vec::new(),
        new_pid: false,
        new_network: false,
    };
    if list.is_null() {
        return Ok(out);
    }
    let list = Vec::<NamespaceSpec>::deserialize(list)
        .map_err(|e| invalid(format!("linux.namespaces is not a list of namespaces: {e}")))?;
    for (i, ns) in list.iter().enumerate() {
        if list[..i].iter().any(|other| other.kind == ns.kind) {
            return Err(invalid(format!(
                "linux.namespaces: {:?} is listed twice",
                ns.kind
            )));
        }
        let flag = match ns.kind.as_str() {
            "mount" => CloneFlags::CLONE_NEWNS,
            "uts" => CloneFlags::CLONE_NEWUTS,
            "ipc" => CloneFlags::CLONE_NEWIPC,
            // Unshared once the process is in its own cgroup (`child`).
            "cgroup" => CloneFlags::CLONE_NEWCGROUP,
            "pid" => CloneFlags::CLONE_NEWPID,
            "network" => CloneFlags::CLONE_NEWNET,
            "user" | "time" => continue,
            other => {
                return Err(invalid(format!(
                    "linux.namespaces: unknown namespace type {other:?}"
                )))
            }
        };
        match ns.path.as_deref().filter(|p| !p.is_empty()) {
            Some(_) if flag == CloneFlags::CLONE_NEWNS => {
                return Err(AgentError::new(
                    ErrorCode::Unsupported,
                    "linux.namespaces: joining an existing mount namespace by path is not \
                     supported (a container's mount namespace is always new)",
                ))
            }
            Some(path) => {
                if !path.starts_with('/') || path.len() > MAX_NS_PATH || path.contains('\0') {
                    return Err(invalid(format!(
                        "linux.namespaces: the {} namespace's path {path:?} is not an \
                         absolute guest path",
                        ns.kind
                    )));
                }
                out.join.push(JoinSpec {
                    kind: flag,
                    path: path.to_owned(),
                });
            }
            None if flag == CloneFlags::CLONE_NEWPID => out.new_pid = true,
            None if flag == CloneFlags::CLONE_NEWNET => out.new_network = true,
            None if flag == CloneFlags::CLONE_NEWNS => {}
            None => out.unshare |= flag,
        }
    }
    Ok(out)
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorCode::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_container_setup_parses() {
        let setup = container_setup(
            &json!({
                "domainname": "example.org",
                "linux": {
                    "namespaces": [{"type": "mount"}, {"type": "ipc"}, {"type": "pid"},
                                   {"type": "network", "path": "/proc/7/ns/net"}],
                    "sysctl": {"kernel.shmmax": "65536"},
                    "seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
                }
            }),
            false,
        )
        .unwrap();
        assert_eq!(
            setup.namespaces,
            CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS
        );
        assert!(setup.new_pid && !setup.new_network);
        assert_eq!(
            setup.join,
            [JoinSpec {
                kind: CloneFlags::CLONE_NEWNET,
                path: "/proc/7/ns/net".into()
            }]
        );
        assert_eq!(setup.domainname.as_deref(), Some("example.org"));
        assert_eq!(setup.sysctl.len(), 1);
        assert!(setup.seccomp.is_some());
        let plain = container_setup(&json!({}), true).unwrap();
        assert_eq!(plain.namespaces, CloneFlags::CLONE_NEWUTS);
        assert!(!plain.new_pid && !plain.new_network && plain.join.is_empty());
        // A hostname in a joined UTS namespace is set there: no new one.
        let joined = container_setup(
            &json!({"linux": {"namespaces": [{"type": "uts", "path": "/proc/7/ns/uts"},
                                             {"type": "network"}]}}),
            true,
        )
        .unwrap();
        assert_eq!(joined.namespaces, CloneFlags::empty());
        assert!(joined.new_network && !joined.new_pid);
        assert!(plain.domainname.is_none() && plain.seccomp.is_none());
    }

    #[test]
    fn bad_container_fields_are_named() {
        for (spec, expected) in [
            (json!({"domainname": "x".repeat(65)}), "domainname"),
            (json!({"domainname": 3}), "domainname"),
            (
                json!({"linux": {"namespaces": [{"type": "ipc"}, {"type": "ipc"}]}}),
                "listed twice",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "bogus"}]}}),
                "unknown namespace",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount", "path": "/proc/1/ns/mnt"}]}}),
                "always new",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "ipc", "path": "proc/1/ns/ipc"}]}}),
                "absolute guest path",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "pid", "path": "/a\u{0}b"}]}}),
                "absolute guest path",
            ),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}}),
                "NOTIFY",
            ),
            (json!({"linux": {"sysctl": {"../x": "1"}}}), "linux.sysctl"),
        ] {
            let err = container_setup(&spec, false).unwrap_err();
            assert!(err.message.contains(expected), "{}", err.message);
        }
    }

    #[test]
    fn process_fields_are_validated() {
        let fields = ProcessFields::deserialize(json!({
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
            "noNewPrivileges": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}],
            "oomScoreAdj": 500,
            "selinuxLabel": "system_u:system_r:container_t:s0"
        }))
        .unwrap();
        let setup = process_setup(fields).unwrap();
        let caps = setup.security.capabilities.unwrap();
        assert_eq!(
            (caps.bounding, caps.effective, caps.permitted),
            (1 << 5, 1 << 5, 0)
        );
        assert!(setup.security.no_new_privileges);
        assert_eq!(setup.rlimits.len(), 1);
        assert_eq!(setup.oom_score_adj, Some(500));
        let bad = ProcessFields::deserialize(json!({"oomScoreAdj": -1001})).unwrap();
        assert!(process_setup(bad)
            .unwrap_err()
            .message
            .contains("oomScoreAdj"));
    }
}
