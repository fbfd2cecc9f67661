//! The spec's `linux.namespaces` rewritten for the guest.
//!
//! A namespace `path` in the engine's spec is a host path, which the guest cannot
//! open. What it becomes depends on the container:
//!
//! - An ordinary container: the network namespace's path is honoured on the host
//!   (its interface is carried into the VM through a tap, see `crate::network`) and
//!   dropped from the spec handed to the guest, where the container gets a new
//!   network namespace holding the VM's interface. Any other host path is refused.
//! - A pod member: containerd's CRI points it at its pod's namespaces, the network
//!   namespace CNI configured (`/var/run/netns/cni-…`) and `/proc/<pid>/ns/<type>` of
//!   the task PID the sandbox reported (husk's sandbox process on the host). In the
//!   guest these are the namespaces of the sandbox container's first process, so
//!   each path becomes `/proc/<its guest PID>/ns/<type>`, which the agent joins. A
//!   path to any other process is refused.

use crate::network::NetworkMode;
use serde_json::Value;

/// A namespace list the guest cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// `linux.namespaces` is not a list of objects.
    #[error("linux.namespaces is not a list of namespaces")]
    NotAList,
    /// An ordinary container names a host path for a namespace other than the
    /// network namespace.
    #[error(
        "linux.namespaces: the {kind} namespace at host path {path:?} cannot be joined from \
         inside the container's VM (containers share namespaces only within a pod, through \
         containerd's CRI)"
    )]
    HostPath {
        /// The namespace type.
        kind: String,
        /// Its host path.
        path: String,
    },
    /// A pod member names a namespace that is not its sandbox's.
    #[error(
        "linux.namespaces: {kind} namespace path {path:?} is not the pod sandbox's \
         (a pod's containers can join the sandbox container's namespaces only)"
    )]
    NotTheSandbox {
        /// The namespace type.
        kind: String,
        /// Its host path.
        path: String,
    },
}

/// The pod's sandbox as a member's namespaces see it.
#[derive(Debug, Clone, Copy)]
pub struct SandboxPids {
    /// The PID the sandbox task reported (its sandbox process, on the host).
    pub host: i32,
    /// Its container's first process in the guest.
    pub guest: u32,
}

/// `/proc/<pid>/ns/<name>` for the spec's namespace type.
fn proc_name(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "network" => "net",
        "ipc" => "ipc",
        "uts" => "uts",
        "pid" => "pid",
        "cgroup" => "cgroup",
        "mount" => "mnt",
        "user" => "user",
        "time" => "time",
        _ => return None,
    })
}

/// Reads the network mode of `spec`, then rewrites its `linux.namespaces` for the
/// guest: for an ordinary container (`pod` is `None`) the network namespace's path
/// is dropped and any other path refused; for a member of the pod whose sandbox is
/// `pod`, every path is the sandbox's namespace in the guest (and must be the
/// sandbox's on the host, but for the network namespace's, CNI's).
pub fn for_guest(
    spec: &mut Value,
    pod: Option<SandboxPids>,
) -> Result<NetworkMode, NamespaceError> {
    let network = NetworkMode::from_spec(spec);
    let list = match spec.pointer_mut("/linux/namespaces") {
        None | Some(Value::Null) => return Ok(network),
        Some(list) => list.as_array_mut().ok_or(NamespaceError::NotAList)?,
    };
    for ns in list.iter_mut() {
        let ns = ns.as_object_mut().ok_or(NamespaceError::NotAList)?;
        let kind = ns.get("type").and_then(Value::as_str).unwrap_or_default();
        let path = ns.get("path").and_then(Value::as_str).unwrap_or_default();
        if path.is_empty() {
            continue;
        }
        let (kind, path) = (kind.to_owned(), path.to_owned());
        let Some(pod) = pod else {
            if kind != "network" {
                return Err(NamespaceError::HostPath { kind, path });
            }
            ns.remove("path");
            continue;
        };
        let Some(name) = proc_name(&kind) else {
            return Err(NamespaceError::NotTheSandbox { kind, path });
        };
        if kind != "network" && path != format!("/proc/{}/ns/{name}", pod.host) {
            return Err(NamespaceError::NotTheSandbox { kind, path });
        }
        let guest = format!("/proc/{}/ns/{name}", pod.guest);
        ns.insert("path".into(), Value::String(guest));
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    const POD: Option<SandboxPids> = Some(SandboxPids {
        host: 4242,
        guest: 57,
    });

    #[test]
    fn the_network_path_is_dropped_and_others_refused() {
        let mut spec = json!({"linux": {"namespaces": [
            {"type": "pid"}, {"type": "network", "path": "/run/netns/netns-1"}, {"type": "ipc"}
        ]}});
        let mode = for_guest(&mut spec, None).unwrap();
        assert_eq!(mode, NetworkMode::Join(PathBuf::from("/run/netns/netns-1")));
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}])
        );

        let mut plain = json!({"linux": {"namespaces": [{"type": "network"}]}});
        assert_eq!(
            for_guest(&mut plain, None).unwrap(),
            NetworkMode::LoopbackOnly
        );
        assert_eq!(plain["linux"]["namespaces"], json!([{"type": "network"}]));
        assert_eq!(
            for_guest(&mut json!({}), None).unwrap(),
            NetworkMode::LoopbackOnly
        );

        let mut ipc = json!({"linux": {"namespaces": [{"type": "ipc", "path": "/proc/9/ns/ipc"}]}});
        let err = for_guest(&mut ipc, None).unwrap_err().to_string();
        assert!(
            err.contains("ipc namespace at host path \"/proc/9/ns/ipc\""),
            "{err}"
        );
        assert!(err.contains("pod"), "{err}");
        let mut bad = json!({"linux": {"namespaces": {"type": "ipc"}}});
        assert!(matches!(
            for_guest(&mut bad, None),
            Err(NamespaceError::NotAList)
        ));
        assert!(matches!(
            for_guest(&mut bad, POD),
            Err(NamespaceError::NotAList)
        ));
    }

    #[test]
    fn a_members_namespaces_become_its_sandboxs_in_the_guest() {
        let mut spec = json!({"linux": {"namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/var/run/netns/cni-1234"},
            {"type": "ipc", "path": "/proc/4242/ns/ipc"},
            {"type": "uts", "path": "/proc/4242/ns/uts"},
            {"type": "mount"},
        ]}});
        for_guest(&mut spec, POD).unwrap();
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([
                {"type": "pid"},
                {"type": "network", "path": "/proc/57/ns/net"},
                {"type": "ipc", "path": "/proc/57/ns/ipc"},
                {"type": "uts", "path": "/proc/57/ns/uts"},
                {"type": "mount"},
            ])
        );
        for_guest(&mut json!({}), POD).unwrap();
    }

    #[test]
    fn a_member_joining_another_process_is_refused_by_name() {
        let mut spec = json!({"linux": {"namespaces": [
            {"type": "pid", "path": "/proc/999/ns/pid"},
        ]}});
        let err = for_guest(&mut spec, POD).unwrap_err().to_string();
        assert!(err.contains("/proc/999/ns/pid"), "{err}");
        assert!(err.contains("not the pod sandbox's"), "{err}");
        let mut spec = json!({"linux": {"namespaces": [{"type": "bogus", "path": "/x"}]}});
        assert!(matches!(
            for_guest(&mut spec, POD),
            Err(NamespaceError::NotTheSandbox { .. })
        ));
    }
}
