//! Pods: several containers in one VM, as Kubernetes' CRI asks.
//!
//! containerd's CRI plugin marks each container's spec with annotations: the pod's
//! sandbox (pause) container is [`Role::Sandbox`], and boots the VM as any
//! container does; an application container is a [`Role::Member`] of the sandbox
//! named by `io.kubernetes.cri.sandbox-id`, and is created in that sandbox's VM
//! instead of a VM of its own.
//!
//! | module | what it does |
//! |---|---|
//! | [`share`] | the pod's directory of member root file systems and binds, mounted on the host and propagated into virtiofsd's share |
//! | [`shm`] | the sandbox and the members in its IPC namespace bind the pod's `/dev/shm`, a tmpfs of the guest's |
//! | [`member`] | creating a member: its share entries, its spec for the guest (namespace paths through `sandbox::namespaces`), its relay process |

pub mod member;
pub mod share;

use std::collections::BTreeMap;

/// The CRI annotation that tells a pod's sandbox from its containers.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The CRI annotation naming a container's pod sandbox.
pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";

/// What a container is to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A container with a VM of its own and no pod (the CLI's case).
    Single,
    /// A pod's sandbox container: it boots the pod's VM.
    Sandbox,
    /// A container created in the VM of the pod sandbox `sandbox`.
    Member {
        /// The sandbox container's ID.
        sandbox: String,
    },
}

/// The container's role from its spec's annotations. A `container` without a
/// sandbox ID, or naming itself, has a VM of its own.
pub fn role(id: &str, annotations: &BTreeMap<String, String>) -> Role {
    match annotations.get(CONTAINER_TYPE).map(String::as_str) {
        Some("sandbox") => Role::Sandbox,
        Some("container") => match annotations.get(SANDBOX_ID) {
            Some(sandbox) if !sandbox.is_empty() && sandbox != id => Role::Member {
                sandbox: sandbox.clone(),
            },
            _ => Role::Single,
        },
        _ => Role::Single,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
        BTreeMap::from(pairs.map(|(k, v)| (k.to_owned(), v.to_owned())))
    }

    #[test]
    fn roles_follow_the_cri_annotations() {
        assert_eq!(role("c", &annotations([])), Role::Single);
        assert_eq!(
            role(
                "p",
                &annotations([(CONTAINER_TYPE, "sandbox"), (SANDBOX_ID, "p")])
            ),
            Role::Sandbox
        );
        assert_eq!(
            role(
                "c",
                &annotations([(CONTAINER_TYPE, "container"), (SANDBOX_ID, "p")])
            ),
            Role::Member {
                sandbox: "p".into()
            }
        );
        for odd in [
            annotations([(CONTAINER_TYPE, "container")]),
            annotations([(CONTAINER_TYPE, "container"), (SANDBOX_ID, "")]),
            annotations([(CONTAINER_TYPE, "container"), (SANDBOX_ID, "c")]),
            annotations([(CONTAINER_TYPE, "other"), (SANDBOX_ID, "p")]),
        ] {
            assert_eq!(role("c", &odd), Role::Single, "{odd:?}");
        }
    }
}
