//! The spec's `linux.namespaces` rewritten for the guest, for an ordinary (non-pod)
//! container.
//!
//! A namespace `path` in the engine's spec is a host path. The network namespace's
//! is honoured on the host (its interface is carried into the VM through a tap, see
//! `crate::network`) and dropped from the spec handed to the guest, where the
//! container gets a new network namespace holding the VM's interface. Any other
//! host path cannot be joined from inside a VM and is refused.

use crate::network::NetworkMode;

/// A namespace path the guest cannot honour.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// `linux.namespaces` is not a list of objects.
    #[error("linux.namespaces is not a list of namespaces")]
    NotAList,
    /// A host path for a namespace other than the network namespace.
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
}

/// Reads the network mode of `spec`, then rewrites its `linux.namespaces` for the
/// guest: the network namespace's path dropped, any other path refused.
pub fn for_guest(spec: &mut serde_json::Value) -> Result<NetworkMode, NamespaceError> {
    let network = NetworkMode::from_spec(spec);
    let Some(list) = spec.pointer_mut("/linux/namespaces") else {
        return Ok(network);
    };
    if list.is_null() {
        return Ok(network);
    }
    let list = list.as_array_mut().ok_or(NamespaceError::NotAList)?;
    for ns in list.iter_mut() {
        let ns = ns.as_object_mut().ok_or(NamespaceError::NotAList)?;
        let kind = ns.get("type").and_then(|t| t.as_str()).unwrap_or_default();
        let path = ns.get("path").and_then(|p| p.as_str()).unwrap_or_default();
        if path.is_empty() {
            continue;
        }
        if kind == "network" {
            ns.remove("path");
            continue;
        }
        return Err(NamespaceError::HostPath {
            kind: kind.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(network)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::PathBuf;

    #[test]
    fn the_network_path_is_dropped_and_others_refused() {
        let mut spec = json!({"linux": {"namespaces": [
            {"type": "pid"}, {"type": "network", "path": "/run/netns/netns-1"}, {"type": "ipc"}
        ]}});
        let mode = for_guest(&mut spec).unwrap();
        assert_eq!(mode, NetworkMode::Join(PathBuf::from("/run/netns/netns-1")));
        assert_eq!(
            spec["linux"]["namespaces"],
            json!([{"type": "pid"}, {"type": "network"}, {"type": "ipc"}])
        );

        let mut plain = json!({"linux": {"namespaces": [{"type": "network"}]}});
        assert_eq!(for_guest(&mut plain).unwrap(), NetworkMode::LoopbackOnly);
        assert_eq!(plain["linux"]["namespaces"], json!([{"type": "network"}]));
        assert_eq!(
            for_guest(&mut json!({})).unwrap(),
            NetworkMode::LoopbackOnly
        );

        let mut ipc = json!({"linux": {"namespaces": [{"type": "ipc", "path": "/proc/9/ns/ipc"}]}});
        let err = for_guest(&mut ipc).unwrap_err().to_string();
        assert!(
            err.contains("ipc namespace at host path \"/proc/9/ns/ipc\""),
            "{err}"
        );
        assert!(err.contains("pod"), "{err}");
        let mut bad = json!({"linux": {"namespaces": {"type": "ipc"}}});
        assert!(matches!(for_guest(&mut bad), Err(NamespaceError::NotAList)));
    }
}
