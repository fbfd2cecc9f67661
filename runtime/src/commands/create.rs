//! `husk create` and `husk run`.

use crate::bundle::Bundle;
use crate::cli::{CreateOpts, RunArgs};
use crate::config::{HostLimits, HuskConfig};
use crate::error::RuntimeError;
use crate::hooks::{self, Phase};
use crate::logging::now_rfc3339;
use crate::sandbox::{self, CreateOptions};
use crate::state::{validate_id, ContainerState, Status, Store};
use husk_protocol::error_chain;
use std::collections::BTreeMap;
use std::path::Path;

/// Creates container `id` from its bundle: checks the id, the bundle and the
/// configuration, records the state (`creating`), boots the sandbox, runs the
/// `prestart`, `createRuntime` and `createContainer` hooks and records `created`. On
/// any failure nothing is left in the store (nor a sandbox).
pub fn create(
    store: &Store,
    id: &str,
    opts: &CreateOpts,
    systemd_cgroup: bool,
) -> Result<ContainerState, RuntimeError> {
    if opts.no_pivot || opts.no_new_keyring {
        tracing::debug!("--no-pivot/--no-new-keyring: accepted (nothing to do on the host side)");
    }
    let sandbox_opts = CreateOptions {
        console_socket: opts.console_socket.clone(),
        pid_file: opts.pid_file.clone(),
        preserve_fds: opts.preserve_fds,
        stdio: None,
    };
    create_from_bundle(store, id, &opts.bundle, &sandbox_opts, systemd_cgroup)
}

/// [`create`] for callers other than the command line (the containerd shim): the
/// bundle directory and the sandbox process's options given directly.
pub fn create_from_bundle(
    store: &Store,
    id: &str,
    bundle_dir: &Path,
    sandbox_opts: &CreateOptions,
    systemd_cgroup: bool,
) -> Result<ContainerState, RuntimeError> {
    validate_id(id)?;
    if store.dir(id).exists() {
        return Err(RuntimeError::AlreadyExists(id.to_string()));
    }
    let bundle = Bundle::load(bundle_dir)?;
    if let Some(hooks) = bundle.spec.hooks() {
        hooks::validate(hooks)?;
    }
    let annotations: BTreeMap<String, String> = bundle
        .spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let resources = bundle
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref());
    let config = HuskConfig::load()?.resolve(&annotations, resources, HostLimits::detect())?;
    let mut state = ContainerState {
        id: id.to_string(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        status: Status::Creating,
        pid: None,
        pid_start_time: None,
        created: now_rfc3339(),
        owner: super::owner(),
        annotations,
        config,
        systemd_cgroup,
        hooks: bundle.spec.hooks().clone(),
        pod: None,
        guest_pid: None,
    };
    let _lock = store.create(&state)?;
    let booted = sandbox::create(store, &mut state, &bundle.spec, sandbox_opts).and_then(|()| {
        // The sandbox is up and the process created, held before exec.
        for phase in [
            Phase::Prestart,
            Phase::CreateRuntime,
            Phase::CreateContainer,
        ] {
            hooks::run(&state, phase, Status::Creating)?;
        }
        if state.status == Status::Creating {
            state.status = Status::Created;
        }
        store.save(&state)
    });
    if let Err(e) = booted {
        discard(store, &state);
        return Err(e);
    }
    Ok(state)
}

/// Tears down whatever a failed create or run left, runs the `poststop` hooks (the
/// spec continues a failed create at delete) and removes its state directory.
/// Errors here are logged, not returned: the original error is the one to report.
fn discard(store: &Store, state: &ContainerState) {
    if let Err(e) = sandbox::destroy(store, state) {
        tracing::warn!("cleaning up {}: {}", state.id, error_chain(&e));
    }
    hooks::run_logged(state, Phase::Poststop, Status::Stopped);
    if let Err(e) = store.remove(&state.id) {
        tracing::warn!("cleaning up {}: {}", state.id, error_chain(&e));
    }
}

/// `husk run`: create, then start; without `--detach`, wait for the container to
/// exit, delete it (unless `--keep`) and give its exit status.
pub fn run(store: &Store, args: &RunArgs, systemd_cgroup: bool) -> Result<i32, RuntimeError> {
    let state = create(store, &args.id, &args.opts, systemd_cgroup)?;
    if let Err(e) = super::start::start(store, &args.id) {
        let _lock = store.lock(&args.id)?;
        discard(store, &state);
        return Err(e);
    }
    if args.detach {
        return Ok(0);
    }
    let state = store.load(&args.id)?;
    let code = sandbox::wait(store, &state)?;
    if !args.keep {
        let _lock = store.lock(&args.id)?;
        let state = store.load(&args.id)?;
        discard(store, &state);
    }
    Ok(code)
}
