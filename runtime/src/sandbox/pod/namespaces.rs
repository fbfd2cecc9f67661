//! A pod member's namespaces. containerd's CRI points a member at its pod's
//! namespaces by host paths: the network namespace CNI configured
//! (`/var/run/netns/cni-…`), and `/proc/<pid>/ns/<type>` of the task PID the
//! sandbox reported, which is husk's sandbox process on the host. In the guest the
//! same namespaces are those of the sandbox container's first process, so each path
//! is rewritten to `/proc/<its guest PID>/ns/<type>`, which the agent joins.

use serde_json::Value;

/// A namespace path of a member that does not lead to its pod's sandbox.
#[derive(Debug, thiserror::Error)]
#[error(
    "linux.namespaces: {kind} namespace path {path:?} is not the pod sandbox's \
     (a pod's containers can join the sandbox container's namespaces only)"
)]
pub struct ForeignNamespace {
    kind: String,
    path: String,
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

/// Rewrites the namespace paths of a member's `spec` to the sandbox's namespaces
/// in the guest. A `network` path is the pod's (whatever its host name); any other
/// path must be `/proc/<sandbox's host PID>/ns/<type>`.
pub fn rewrite(spec: &mut Value, sandbox: SandboxPids) -> Result<(), ForeignNamespace> {
    let Some(list) = spec
        .pointer_mut("/linux/namespaces")
        .and_then(Value::as_array_mut)
    else {
        return Ok(());
    };
    for ns in list {
        let kind = ns
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let Some(path) = ns
            .get("path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
        else {
            continue;
        };
        let foreign = || ForeignNamespace {
            kind: kind.clone(),
            path: path.to_owned(),
        };
        let name = proc_name(&kind).ok_or_else(foreign)?;
        let own = format!("/proc/{}/ns/{name}", sandbox.host);
        if kind != "network" && path != own {
            return Err(foreign());
        }
        ns["path"] = Value::String(format!("/proc/{}/ns/{name}", sandbox.guest));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POD: SandboxPids = SandboxPids {
        host: 4242,
        guest: 57,
    };

    #[test]
    fn the_sandbox_namespaces_become_its_guest_process_namespaces() {
        let mut spec = json!({"linux": {"namespaces": [
            {"type": "pid"},
            {"type": "network", "path": "/var/run/netns/cni-1234"},
            {"type": "ipc", "path": "/proc/4242/ns/ipc"},
            {"type": "uts", "path": "/proc/4242/ns/uts"},
            {"type": "mount"},
        ]}});
        rewrite(&mut spec, POD).unwrap();
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
    }

    #[test]
    fn another_process_namespace_is_refused_by_name() {
        let mut spec = json!({"linux": {"namespaces": [
            {"type": "pid", "path": "/proc/999/ns/pid"},
        ]}});
        let err = rewrite(&mut spec, POD).unwrap_err().to_string();
        assert!(err.contains("/proc/999/ns/pid"), "{err}");
        let mut spec = json!({"linux": {"namespaces": [{"type": "bogus", "path": "/x"}]}});
        assert!(rewrite(&mut spec, POD).is_err());
        let mut none = json!({});
        rewrite(&mut none, POD).unwrap();
    }
}
