//! The commands' side of the container's cgroup in the guest: pause, resume,
//! update, stats and OOM events, through the agent.

use super::lifecycle::ask;
use crate::error::RuntimeError;
use crate::sandbox::plan::OOM_KILLS_FILE;
use crate::state::{ContainerState, Store};
use husk_protocol::ContainerStats;
use std::time::Duration;

/// Freezes the container's processes; returns once the guest says they are frozen.
pub fn pause(store: &Store, state: &ContainerState) -> Result<(), RuntimeError> {
    ask(store, state, "pause", |a| a.pause(&state.id))
}

/// Thaws a paused container.
pub fn resume(store: &Store, state: &ContainerState) -> Result<(), RuntimeError> {
    ask(store, state, "resume", |a| a.resume(&state.id))
}

/// Changes the container's cgroup limits to those set in `resources` (OCI
/// `linux.resources`).
pub fn update(
    store: &Store,
    state: &ContainerState,
    resources: serde_json::Value,
) -> Result<(), RuntimeError> {
    ask(store, state, "update", |a| a.update(&state.id, resources))
}

/// The container's usage, with its cgroup's figures.
pub fn stats(store: &Store, state: &ContainerState) -> Result<ContainerStats, RuntimeError> {
    ask(store, state, "read the statistics of", |a| {
        a.stats(&state.id)
    })
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
    ask(store, state, "watch the OOM events of", |client| loop {
        let event = client.oom_event(poll)?;
        if !on_event(event.as_deref()) {
            return Ok(());
        }
    })
}

/// The OOM kill count the sandbox recorded when the container's process exited;
/// `None` before that, or where the guest had no cgroup figures.
pub fn final_oom_kills(store: &Store, id: &str) -> Option<u64> {
    std::fs::read_to_string(store.dir(id).join(OOM_KILLS_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}
