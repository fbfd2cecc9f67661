//! A pod's `/dev/shm`. containerd binds one host tmpfs at `/dev/shm` in the pod's
//! sandbox and in every container that shares the pod's IPC namespace, so POSIX
//! shared memory (`shm_open`) is shared like SysV IPC. A host tmpfs cannot be shared
//! with the guest as memory, so in the guest they all bind the tmpfs the agent mounts
//! at boot in the guest's own mount namespace ([`POD_SHM`]; one VM is one pod). A
//! container's own mounts cannot serve: a bind cannot be made from another mount
//! namespace.

use husk_protocol::console::POD_SHM;
use serde_json::{json, Value};

const SHM: &str = "/dev/shm";

/// Whether `spec` joins an IPC namespace by path: a member's can only be its
/// sandbox's (its namespaces are checked before).
pub fn joins_ipc(spec: &Value) -> bool {
    spec.pointer("/linux/namespaces")
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter()
                .any(|ns| ns["type"] == "ipc" && ns["path"].as_str().is_some_and(|p| !p.is_empty()))
        })
}

/// Turns the `/dev/shm` mounts of a pod's container (the sandbox's, or a member's
/// in the pod's IPC namespace) into binds of the pod's tmpfs in the guest:
/// `nosuid`, `nodev`, `noexec`, and read-only if the mount was. Returns whether
/// there was one.
pub fn bind_pod_shm(spec: &mut Value) -> bool {
    let mut done = false;
    let mounts = spec.get_mut("mounts").and_then(Value::as_array_mut);
    for mount in mounts.into_iter().flatten() {
        let at_shm = mount["destination"]
            .as_str()
            .is_some_and(|d| d.trim_end_matches('/') == SHM);
        if !at_shm {
            continue;
        }
        let mut options = vec!["rbind", "nosuid", "nodev", "noexec"];
        if last_of(mount, &["ro", "rw"]) == Some("ro") {
            options.push("ro");
        }
        *mount = json!({
            "destination": SHM,
            "type": "bind",
            "source": POD_SHM,
            "options": options,
        });
        done = true;
    }
    done
}

/// The last of `options` in the mount's options.
fn last_of<'a>(mount: &'a Value, options: &[&str]) -> Option<&'a str> {
    mount["options"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .rev()
        .find(|o| options.contains(o))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ipc: Value, shm_options: Value) -> Value {
        json!({
            "linux": {"namespaces": [{"type": "pid"}, ipc, {"type": "mount"}]},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                 "options": shm_options},
            ]
        })
    }

    #[test]
    fn the_pods_containers_bind_the_pods_shm() {
        let options = json!(["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]);
        let mut member = spec(json!({"type": "ipc", "path": "/proc/57/ns/ipc"}), options);
        assert!(joins_ipc(&member));
        assert!(bind_pod_shm(&mut member));
        assert_eq!(
            member["mounts"][1],
            json!({"destination": "/dev/shm", "type": "bind", "source": "/run/husk/shm",
                   "options": ["rbind", "nosuid", "nodev", "noexec"]})
        );
        assert_eq!(member["mounts"][0]["type"], "proc");
        // containerd asks read-only for the sandbox's: the bind is, not the tmpfs.
        let mut sandbox = spec(json!({"type": "ipc"}), json!(["rw", "ro", "nosuid"]));
        assert!(bind_pod_shm(&mut sandbox));
        assert_eq!(
            sandbox["mounts"][1]["options"],
            json!(["rbind", "nosuid", "nodev", "noexec", "ro"])
        );
    }

    #[test]
    fn an_ipc_namespace_of_its_own_is_not_the_pods() {
        assert!(!joins_ipc(&spec(json!({"type": "ipc"}), json!([]))));
        assert!(!joins_ipc(&json!({})));
        let mut bare =
            json!({"linux": {"namespaces": [{"type": "ipc", "path": "/proc/57/ns/ipc"}]}});
        assert!(!bind_pod_shm(&mut bare));
    }
}
