//! `husk features`: what this runtime supports, in runc's `features` JSON.
//!
//! Only what husk applies is claimed. The agent (docs/protocol.md, "What the agent
//! applies") sets up a mount, UTS, IPC and cgroup namespace, the process's args, env, cwd,
//! terminal, user, umask, capabilities, rlimits, noNewPrivileges and oomScoreAdj,
//! the hostname and domainname, sysctls, a seccomp filter (x86_64 rules), the spec's
//! mounts (`mountOptions`: the agent's option table) and a cgroup v2 per container
//! in the guest (`linux.resources` memory, cpu, cpuset and pids); hooks run on the
//! host. LSM labels are not applied, so none are listed.

use crate::config::{ANNOTATION_MEMORY, ANNOTATION_VCPUS, MAX_VCPUS, MEMORY_OVERHEAD_MIB};
use crate::error::RuntimeError;
use husk_protocol::features as agent;
use serde_json::{json, Value};

/// The oldest OCI runtime-spec version husk accepts.
pub const OCI_VERSION_MIN: &str = "1.0.0";

/// The features document.
pub fn features_json() -> Value {
    json!({
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": crate::state::OCI_VERSION,
        // Run on the host (src/hooks.rs).
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": agent::MOUNT_OPTIONS,
        "linux": {
            "namespaces": ["mount", "uts", "ipc", "cgroup", "pid", "network"],
            "capabilities": &agent::CAPABILITIES[..],
            "cgroup": {"v1": false, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": agent::SECCOMP_ACTIONS,
                "operators": agent::SECCOMP_OPERATORS,
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": agent::SECCOMP_FLAGS,
                "supportedFlags": agent::SECCOMP_FLAGS
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "io.husk.version": env!("CARGO_PKG_VERSION"),
            "io.husk.isolation": "microvm (KVM), one per container",
            ANNOTATION_VCPUS: format!(
                "container annotation: vCPUs of the container's microVM, 1 to {MAX_VCPUS}; \
                 overrides linux.resources.cpu (ceil(quota/period)) and the configured vcpus"
            ),
            ANNOTATION_MEMORY: format!(
                "container annotation: guest memory of the container's microVM in MiB; \
                 overrides linux.resources.memory.limit (+{MEMORY_OVERHEAD_MIB} MiB) and the configured memory_mib"
            )
        }
    })
}

/// Prints the features document.
pub fn features() -> Result<(), RuntimeError> {
    let text = serde_json::to_string_pretty(&features_json())
        .map_err(|e| RuntimeError::io("format features", std::io::Error::other(e)))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_as_oci_features() {
        let text = features_json().to_string();
        let parsed: oci_spec::runtime::Features = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.oci_version_min(), OCI_VERSION_MIN);
        let linux = parsed.linux().as_ref().unwrap();
        let caps = linux.capabilities().as_ref().unwrap();
        assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"), "{caps:?}");
        let seccomp = linux.seccomp().as_ref().unwrap();
        assert_eq!(seccomp.enabled(), &Some(true));
        let annotations = features_json()["annotations"].clone();
        assert!(annotations.get(ANNOTATION_VCPUS).is_some());
        assert!(annotations.get(ANNOTATION_MEMORY).is_some());
    }
}
