//! The bundle's spec turned into the spec the guest receives, in one place: host
//! bind sources rewritten to their paths in the virtio-fs share
//! ([`crate::sandbox::share::plan_binds`]), `linux.namespaces` made fit for the
//! guest ([`namespaces`]) and a pod's `/dev/shm` bound to the guest's shared tmpfs
//! ([`shm`]).

pub mod namespaces;
pub mod shm;

use crate::error::{BundleError, RuntimeError};
use crate::network::NetworkMode;
use crate::sandbox::share::{plan_binds, HostBind};
use namespaces::SandboxPids;
use serde_json::Value;
use std::path::Path;

/// Where the container goes.
#[derive(Debug, Clone, Copy)]
pub enum Placement<'a> {
    /// A VM of its own; `pod`: it is a CRI pod's sandbox, whose VM its containers
    /// join.
    OwnVm {
        /// A pod's sandbox.
        pod: bool,
    },
    /// A pod's VM: the member's share directory in the guest, and the sandbox's
    /// processes (whose namespaces the member joins).
    PodMember {
        /// The member's directory in the guest's view of the share.
        guest_dir: &'a str,
        /// The pod sandbox's processes, on the host and in the guest.
        sandbox: SandboxPids,
    },
}

/// The spec for the guest and what the host must provide for it.
#[derive(Debug)]
pub struct GuestSpec {
    /// The rewritten spec.
    pub spec: Value,
    /// The host paths the share must hold.
    pub binds: Vec<HostBind>,
    /// The network the container's VM carries (for a pod member: the sandbox's).
    pub network: NetworkMode,
}

/// Rewrites `spec` (the bundle's, in `bundle`) for the guest; `guest_share` is where
/// the share's binds appear in the guest.
pub fn for_guest(
    spec: &oci_spec::runtime::Spec,
    bundle: &Path,
    guest_share: &str,
    placement: Placement<'_>,
) -> Result<GuestSpec, RuntimeError> {
    let bad_bundle = |source: BundleError| RuntimeError::InvalidBundle {
        bundle: bundle.to_path_buf(),
        source,
    };
    let mut spec = serde_json::to_value(spec).map_err(|source| RuntimeError::Encode {
        what: "the spec",
        source,
    })?;
    let guest_dir = match placement {
        Placement::OwnVm { .. } => guest_share,
        Placement::PodMember { guest_dir, .. } => guest_dir,
    };
    let binds = plan_binds(&mut spec, bundle, guest_dir).map_err(|e| bad_bundle(e.into()))?;
    let pids = match placement {
        Placement::OwnVm { .. } => None,
        Placement::PodMember { sandbox, .. } => Some(sandbox),
    };
    let network = namespaces::for_guest(&mut spec, pids).map_err(|e| bad_bundle(e.into()))?;
    let shared_shm = match placement {
        Placement::OwnVm { pod } => pod,
        Placement::PodMember { .. } => shm::joins_ipc(&spec),
    };
    if shared_shm {
        shm::bind_pod_shm(&mut spec);
    }
    Ok(GuestSpec {
        spec,
        binds,
        network,
    })
}
