//! A pod's container: created in the VM of its pod's sandbox, through a relay
//! process (`husk __exec` with [`RelayTask::Create`]) that stands for its first
//! process on the host, as the sandbox process does for the sandbox container.

use super::share::{PodShare, DIR_NAME};
use super::Role;
use crate::error::RuntimeError;
use crate::sandbox::client::lifecycle::{ask, record_process, spawn_relay, CreateOptions};
use crate::sandbox::guest_spec::namespaces::SandboxPids;
use crate::sandbox::guest_spec::{self, GuestSpec, Placement};
use crate::sandbox::process::exec_relay::{ExecPlan, RelayTask};
use crate::sandbox::process::vm::VmPlan;
use crate::sandbox::share::GUEST_SHARE;
use crate::state::{ContainerState, Status, Store};
use husk_protocol::error_chain;

/// Creates container `state.id` in the VM of pod sandbox `sandbox`: mounts its root
/// file system and binds into the pod's share, rewrites its spec for the guest and
/// starts its relay, which creates it (held until `start`) and reports.
pub fn create(
    store: &Store,
    state: &mut ContainerState,
    spec: &oci_spec::runtime::Spec,
    opts: &CreateOptions,
    sandbox: &str,
) -> Result<(), RuntimeError> {
    let id = state.id.clone();
    let pod = store.load(sandbox).map_err(|e| match e {
        RuntimeError::NotFound(_) => RuntimeError::InvalidState(format!(
            "container \"{id}\": its pod sandbox \"{sandbox}\" does not exist"
        )),
        other => other,
    })?;
    match pod.observed_status() {
        Status::Created | Status::Running => {}
        other => {
            return Err(RuntimeError::InvalidState(format!(
                "cannot add container \"{id}\" to pod sandbox \"{sandbox}\": it is {other}"
            )))
        }
    }
    let (Role::Sandbox, Some(host), Some(guest)) = (
        super::role(&pod.id, &pod.annotations),
        pod.pid,
        pod.guest_pid,
    ) else {
        return Err(RuntimeError::InvalidState(format!(
            "cannot add container \"{id}\" to \"{sandbox}\": not a pod sandbox"
        )));
    };
    state.pod = Some(sandbox.to_owned());
    let guest_dir = format!("{GUEST_SHARE}/{DIR_NAME}/{id}");
    // The pod's VM has its network already: the member's mode is the sandbox's.
    let placement = Placement::PodMember {
        guest_dir: &guest_dir,
        sandbox: SandboxPids { host, guest },
    };
    let GuestSpec { spec, binds, .. } =
        guest_spec::for_guest(spec, &state.bundle, GUEST_SHARE, placement)?;

    let share = PodShare::of(&store.dir(sandbox));
    share
        .add(&id, &state.rootfs, &binds)
        .map_err(RuntimeError::PodShare)?;
    let plan = ExecPlan {
        vsock: VmPlan::vsock_path(&store.dir(sandbox)),
        container_id: id.clone(),
        task: RelayTask::Create {
            spec,
            rootfs: format!("{guest_dir}/rootfs"),
        },
        console_socket: opts.console_socket.clone(),
        request_timeout: pod.config.request_timeout,
    };
    let started = spawn_relay(
        &plan,
        opts.preserve_fds,
        opts.stdio.as_ref(),
        pod.config.request_timeout,
    );
    match started {
        Ok((relay, guest_pid)) => record_process(state, relay, guest_pid, opts.pid_file.as_deref()),
        Err(e) => {
            if let Err(u) = share.remove(&id) {
                tracing::warn!("cleaning up container {id}: {u}");
            }
            Err(e)
        }
    }
}

/// Takes a pod's container out of its pod (its relay is already gone): the agent
/// kills what is left of it and forgets it, if the pod's VM still runs; its share
/// entries are unmounted. Idempotent.
pub fn destroy(store: &Store, state: &ContainerState, sandbox: &str) -> Result<(), RuntimeError> {
    let vm_up = store
        .load(sandbox)
        .map(|pod| {
            matches!(
                pod.observed_status(),
                Status::Created | Status::Running | Status::Paused
            )
        })
        .unwrap_or(false);
    if vm_up && state.guest_pid.is_some() {
        let removed = ask(store, state, "remove", |a| a.remove_container(&state.id));
        if let Err(e) = removed {
            // Whatever is left ends with the pod's VM.
            tracing::warn!(
                "removing container {} from its pod's VM: {}",
                state.id,
                error_chain(&e)
            );
        }
    }
    PodShare::of(&store.dir(sandbox))
        .remove(&state.id)
        .map_err(RuntimeError::PodShare)
}
