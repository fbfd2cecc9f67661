//! The shim's life as containerd drives it: `start` (spawn the serving shim, one
//! per pod, and print its socket address), serving the Task API until Shutdown, and `delete`
//! (clean up after a shim that died: sandbox, state, rootfs mount).

use crate::events::Events;
use crate::rootfs;
use crate::service::Service;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::write_address;
use containerd_shim::{Config, DeleteResponse, ExitSignal, Flags, StartOpts};
use husk_runtime::container;
use husk_runtime::sandbox::pod;
use husk_runtime::state::Store;
use std::path::PathBuf;
use std::sync::Arc;

/// The runtime name containerd knows husk by.
pub const RUNTIME_ID: &str = "io.containerd.husk.v2";
/// Where the shim keeps husk's state store, one per containerd namespace.
pub const STATE_BASE: &str = "/run/husk-shim";
/// Overrides [`STATE_BASE`] (the test suites use their own).
pub const STATE_BASE_ENV: &str = "HUSK_SHIM_ROOT";
/// The status `delete` reports for a task whose shim died: killed (128 + SIGKILL).
const KILLED_STATUS: u32 = 128 + 9;

/// husk's shim.
pub struct HuskShim {
    namespace: String,
    id: String,
    bundle: PathBuf,
    exit: Arc<ExitSignal>,
}

impl std::fmt::Debug for HuskShim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HuskShim")
            .field("namespace", &self.namespace)
            .field("id", &self.id)
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}

/// The state store of containerd namespace `namespace`.
pub fn store_root(namespace: &str) -> PathBuf {
    let base = std::env::var_os(STATE_BASE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(STATE_BASE));
    base.join(namespace)
}

/// The pod sandbox a bundle's container belongs to, from the CRI's annotations in
/// its `config.json` (`None`: not a pod's container, or an unreadable bundle, which
/// Create then reports).
fn pod_of(bundle: &std::path::Path) -> Option<String> {
    let text = std::fs::read(bundle.join("config.json")).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let annotations = spec.get("annotations")?.as_object()?;
    let get = |key: &str| annotations.get(key).and_then(|v| v.as_str());
    match (get(pod::CONTAINER_TYPE), get(pod::SANDBOX_ID)) {
        (Some("container"), Some(sandbox)) if !sandbox.is_empty() => Some(sandbox.to_owned()),
        _ => None,
    }
}

fn shim_error(e: impl std::fmt::Display) -> containerd_shim::Error {
    containerd_shim::Error::Other(e.to_string())
}

impl containerd_shim::Shim for HuskShim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        // containerd runs the shim in the bundle directory unless it says otherwise.
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        crate::logging::init(&args.action, args.debug);
        if args.action.is_empty() {
            // Serving: a session of its own, so that nothing aimed at containerd's
            // process group or session (a service manager stopping it) reaches the
            // shim, which must outlive a containerd restart.
            if let Err(e) = nix::unistd::setsid() {
                tracing::warn!("setsid: {e}");
            }
        }
        HuskShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            exit: Arc::default(),
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // One shim per pod: a pod's containers go to the shim of its sandbox, which
        // creates them in the sandbox's VM. Any other task has a shim of its own.
        let grouping = match pod_of(&self.bundle) {
            Some(sandbox) if sandbox != opts.id => {
                tracing::info!("start: task {} joins the shim of pod {sandbox}", opts.id);
                sandbox
            }
            _ => opts.id.clone(),
        };
        let (_pid, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        write_address(&address)?;
        Ok(address)
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        tracing::info!("delete: cleaning up task {} after its shim", self.id);
        let store = Store::open(store_root(&self.namespace)).map_err(shim_error)?;
        // Kills the sandbox process (and virtiofsd) if they are still there, and
        // removes the state; an unknown id is fine.
        container::delete::delete(&store, &self.id, true).map_err(shim_error)?;
        rootfs::unmount_all(&rootfs::target(&self.bundle)).map_err(shim_error)?;
        Ok(DeleteResponse {
            exit_status: KILLED_STATUS,
            exited_at: MessageField::some(Timestamp::now()),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        // Where the crate's bootstrap connected the publisher (it insists on it).
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let events = Events::start(publisher, self.namespace.clone(), address);
        Service::new(
            self.namespace.clone(),
            store_root(&self.namespace),
            events,
            self.exit.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(annotations: serde_json::Value) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({"ociVersion": "1.0.2", "annotations": annotations});
        std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
        dir
    }

    #[test]
    fn a_pods_container_is_grouped_with_its_sandbox() {
        let member = bundle(serde_json::json!({
            pod::CONTAINER_TYPE: "container", pod::SANDBOX_ID: "pod1"
        }));
        assert_eq!(pod_of(member.path()).as_deref(), Some("pod1"));
        let sandbox = bundle(serde_json::json!({
            pod::CONTAINER_TYPE: "sandbox", pod::SANDBOX_ID: "pod1"
        }));
        assert_eq!(pod_of(sandbox.path()), None);
        assert_eq!(pod_of(bundle(serde_json::json!({})).path()), None);
        let missing = tempfile::tempdir().unwrap();
        assert_eq!(pod_of(missing.path()), None);
    }
}
