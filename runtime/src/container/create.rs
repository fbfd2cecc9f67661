//! `create` and `run`.

use crate::bundle::Bundle;
use crate::config::{HostLimits, HuskConfig};
use crate::error::RuntimeError;
use crate::hooks::{self, Phase};
use crate::logging::now_rfc3339;
use crate::sandbox::{self, SandboxStdio};
use crate::state::{validate_id, ContainerState, Status, Store};
use husk_protocol::error_chain;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the container's stdio comes from.
#[derive(Debug, Default)]
pub enum Stdio {
    /// This process's own stdin, stdout and stderr (the CLI's case: conmon's pipes).
    #[default]
    Inherit,
    /// These descriptors (the shim's fifos, say).
    Given(SandboxStdio),
}

/// `create`'s options.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// Where the engine wants the terminal's master (with `process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// Where to write the pid of the process that stands for the container.
    pub pid_file: Option<PathBuf>,
    /// Descriptors 3 .. 3+N kept open (in the sandbox process; they do not reach the
    /// guest).
    pub preserve_fds: u32,
    /// The container's stdio.
    pub stdio: Stdio,
    /// `--systemd-cgroup` was given (recorded in the state).
    pub systemd_cgroup: bool,
}

/// `run`'s options beyond `create`'s.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// Return once the container runs.
    pub detach: bool,
    /// Keep the container's state after it exits.
    pub keep: bool,
}

/// Creates container `id` from its bundle: checks the id, the bundle and the
/// configuration, records the state (`creating`), boots the sandbox, runs the
/// `prestart`, `createRuntime` and `createContainer` hooks and records `created`. On
/// any failure nothing is left in the store (nor a sandbox).
pub fn create(
    store: &Store,
    id: &str,
    opts: CreateOptions,
) -> Result<ContainerState, RuntimeError> {
    let CreateOptions {
        bundle: bundle_dir,
        console_socket,
        pid_file,
        preserve_fds,
        stdio,
        systemd_cgroup,
    } = opts;
    let sandbox_opts = sandbox::CreateOptions {
        console_socket,
        pid_file,
        preserve_fds,
        stdio: match stdio {
            Stdio::Inherit => None,
            Stdio::Given(fds) => Some(fds),
        },
    };
    validate_id(id)?;
    if store.dir(id).exists() {
        return Err(RuntimeError::AlreadyExists(id.to_string()));
    }
    let bundle = Bundle::load(&bundle_dir)?;
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
        owner: owner(),
        annotations,
        config,
        systemd_cgroup,
        hooks: bundle.spec.hooks().clone(),
        pod: None,
        guest_pid: None,
    };
    let _lock = store.create(&state)?;
    let booted = sandbox::create(store, &mut state, &bundle.spec, &sandbox_opts).and_then(|()| {
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

/// `run`: create, then start; unless detached, wait for the container to exit,
/// delete it (unless kept) and give its exit status.
pub fn run(
    store: &Store,
    id: &str,
    opts: CreateOptions,
    run: RunOptions,
) -> Result<i32, RuntimeError> {
    let state = create(store, id, opts)?;
    if let Err(e) = super::start::start(store, id) {
        let _lock = store.lock(id)?;
        discard(store, &state);
        return Err(e);
    }
    if run.detach {
        return Ok(0);
    }
    let state = store.load(id)?;
    let code = sandbox::wait(store, &state)?;
    if !run.keep {
        let _lock = store.lock(id)?;
        let state = store.load(id)?;
        discard(store, &state);
    }
    Ok(code)
}

/// The user running husk, by name if it has one.
fn owner() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}
