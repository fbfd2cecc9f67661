//! The commands' side of the container's cgroup in the guest: pause, resume,
//! update, stats and OOM events, through the agent.

use super::lifecycle::agent;
use crate::agent::ClientError;
use crate::error::RuntimeError;
use crate::state::{ContainerState, Store};
use husk_protocol::error_chain;
use husk_protocol::{ContainerStats, ErrorCode};
use std::path::Path;
use std::time::Duration;

/// The file in a container's state directory where the sandbox records the OOM
/// kill count of its cgroup once the container's process has exited.
pub const OOM_KILLS_FILE: &str = "oom_kills";

/// An agent failure as the runtime's error: a refusal of the agent keeps its kind
/// (a paused container is an invalid state, an unsupported field is not supported).
fn agent_err(what: &str, e: ClientError) -> RuntimeError {
    match &e {
        ClientError::Agent(a) => match a.code {
            ErrorCode::FailedPrecondition => {
                RuntimeError::InvalidState(format!("{what}: {}", a.message))
            }
            ErrorCode::InvalidArgument => {
                RuntimeError::InvalidArgument(format!("{what}: {}", a.message))
            }
            ErrorCode::Unsupported => {
                let message = a.message.trim_start_matches("not supported yet: ");
                RuntimeError::NotSupported(format!("{what}: {message}"))
            }
            _ => RuntimeError::Sandbox(format!("{what}: {}", error_chain(&e))),
        },
        _ => RuntimeError::Sandbox(format!("{what}: {}", error_chain(&e))),
    }
}

/// Freezes the container's processes; returns once the guest says they are frozen.
pub fn pause(store: &Store, state: &ContainerState) -> Result<(), RuntimeError> {
    agent(store, state)?
        .pause(&state.id)
        .map_err(|e| agent_err("pause", e))
}

/// Thaws a paused container.
pub fn resume(store: &Store, state: &ContainerState) -> Result<(), RuntimeError> {
    agent(store, state)?
        .resume(&state.id)
        .map_err(|e| agent_err("resume", e))
}

/// Changes the container's cgroup limits to those set in `resources` (OCI
/// `linux.resources`).
pub fn update(
    store: &Store,
    state: &ContainerState,
    resources: serde_json::Value,
) -> Result<(), RuntimeError> {
    agent(store, state)?
        .update(&state.id, resources)
        .map_err(|e| agent_err("update", e))
}

/// The container's usage, with its cgroup's figures.
pub fn stats(store: &Store, state: &ContainerState) -> Result<ContainerStats, RuntimeError> {
    agent(store, state)?
        .stats(&state.id)
        .map_err(|e| agent_err("stats", e))
}

/// Watches for OOM kills in the container's guest: calls `on_event` with the
/// container's id for each, and with `None` each time `poll` passed without one,
/// until `on_event` answers `false` or the agent cannot be reached (the VM ended).
pub fn watch_oom(
    store: &Store,
    state: &ContainerState,
    poll: Duration,
    mut on_event: impl FnMut(Option<&str>) -> bool,
) -> Result<(), RuntimeError> {
    let mut client = agent(store, state)?;
    loop {
        let event = client
            .oom_event(poll)
            .map_err(|e| agent_err("oom_event", e))?;
        if !on_event(event.as_deref()) {
            return Ok(());
        }
    }
}

/// Records the final OOM kill count of `stats` (if it has cgroup figures) in the
/// state directory `dir`.
pub fn record_oom_kills(dir: &Path, stats: &ContainerStats) {
    if let Some(cgroup) = &stats.cgroup {
        if let Err(e) = std::fs::write(dir.join(OOM_KILLS_FILE), cgroup.oom_kill.to_string()) {
            tracing::warn!("cannot record the OOM kill count: {e}");
        }
    }
}

/// The OOM kill count the sandbox recorded when the container's process exited;
/// `None` before that, or where the guest had no cgroup figures.
pub fn final_oom_kills(store: &Store, id: &str) -> Option<u64> {
    std::fs::read_to_string(store.dir(id).join(OOM_KILLS_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}
