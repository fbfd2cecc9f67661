//! `events`: the container's stats in runc's JSON, once, or a stream of stats every
//! interval and OOM events as they happen, until the container stops.

use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::Store;
use husk_protocol::ContainerStats;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long each OOM wait in the guest lasts before it is sent again.
const OOM_POLL: Duration = Duration::from_secs(5);

/// How long a sandbox whose agent no longer answers may take to exit (the
/// container's output drained, the VM stopped) before `events` reports the failure.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Where events go, one JSON value each, from two threads.
pub type Sink = Arc<dyn Fn(&Value) + Send + Sync>;

/// Container `id`'s stats as one runc stats event.
pub fn stats(store: &Store, id: &str) -> Result<Value, RuntimeError> {
    let state = running(store, id)?;
    Ok(stats_event(id, &sandbox::stats(store, &state)?))
}

/// The container `id`, refused unless its VM is up.
fn running(store: &Store, id: &str) -> Result<crate::state::ContainerState, RuntimeError> {
    let (state, status) = super::state::observe(store, id)?;
    if !status.has_sandbox() {
        return Err(RuntimeError::InvalidState(format!(
            "container \"{id}\" is not running"
        )));
    }
    Ok(state)
}

/// Streams container `id`'s stats every `interval`, and its OOM events as they
/// happen, into `out` until the container stops.
pub fn stream(store: &Store, id: &str, interval: Duration, out: Sink) -> Result<(), RuntimeError> {
    let state = running(store, id)?;
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (store, state, out, done) = (store.clone(), state.clone(), out.clone(), done.clone());
        std::thread::Builder::new()
            .name("oom".into())
            .spawn(move || {
                let mut printed = 0u64;
                // Ends with an error once the VM is gone; the stats loop notices that too.
                let _ = sandbox::watch_oom(&store, &state, OOM_POLL, |id| {
                    if id == Some(state.id.as_str()) {
                        out(&oom_event(&state.id));
                        printed += 1;
                    }
                    !done.load(Ordering::SeqCst)
                });
                printed
            })
            .map_err(|e| RuntimeError::io("start the OOM watcher thread", e))?
    };
    let result = loop {
        match super::state::observe(store, id) {
            Ok((_, status)) if status.has_sandbox() => {}
            Ok(_) => break Ok(()),
            Err(e) => break Err(e),
        }
        match sandbox::stats(store, &state) {
            Ok(stats) => out(&stats_event(id, &stats)),
            // The container may have stopped meanwhile: that ends the stream. Its
            // sandbox process stops the VM first and exits after, so a failed request
            // can come before the status changes.
            Err(e) => {
                break if stops_within(store, id, STOP_WAIT) {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
        std::thread::sleep(interval);
    };
    done.store(true, Ordering::SeqCst);
    // The watcher's wait in the guest ends within OOM_POLL, or at once if the VM is gone.
    let printed = watcher.join().unwrap_or(0);
    // An OOM kill that ended the container may beat the watch to the VM's end: the
    // sandbox recorded the final count.
    if sandbox::final_oom_kills(store, id).is_some_and(|n| n > printed) {
        out(&oom_event(id));
    }
    result
}

/// Whether container `id` leaves the running states (or its state goes) within
/// `within`; polls its status, as nothing else tells a process that is not the
/// sandbox's parent when it ends.
fn stops_within(store: &Store, id: &str, within: Duration) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        match super::state::observe(store, id) {
            Ok((_, status)) if status.has_sandbox() => {}
            _ => return true,
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// runc's OOM event.
fn oom_event(id: &str) -> Value {
    json!({"type": "oom", "id": id})
}

/// A stats event in runc's shape (`libcontainer/intelrdt`-free subset of its
/// `types.Stats`): `cpu.usage` in nanoseconds, `memory.usage` and `memory.raw` in
/// bytes, `pids`. Without cgroup figures (an older agent) the `/proc` sums stand in.
pub fn stats_event(id: &str, s: &ContainerStats) -> Value {
    let data = match &s.cgroup {
        Some(c) => json!({
            "cpu": {"usage": {
                "total": c.cpu_usage_usec.saturating_mul(1000),
                "user": c.cpu_user_usec.saturating_mul(1000),
                "kernel": c.cpu_system_usec.saturating_mul(1000),
            }},
            "memory": {
                "cache": c.memory_file,
                "usage": {"usage": c.memory_current, "limit": c.memory_max.unwrap_or(u64::MAX)},
                "raw": {
                    "anon": c.memory_anon,
                    "file": c.memory_file,
                    "oom": c.oom,
                    "oom_kill": c.oom_kill,
                },
            },
            "pids": {"current": c.pids_current, "limit": c.pids_max.unwrap_or(0)},
        }),
        None => json!({
            "cpu": {"usage": {"total": s.cpu_usage_ns}},
            "memory": {"usage": {"usage": s.memory_bytes}},
            "pids": {"current": s.pids},
        }),
    };
    json!({"type": "stats", "id": id, "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_protocol::CgroupStats;

    #[test]
    fn stats_are_printed_in_runcs_shape() {
        let stats = ContainerStats {
            cpu_usage_ns: 1,
            memory_bytes: 2,
            pids: 3,
            cgroup: Some(CgroupStats {
                memory_current: 4096,
                memory_max: Some(33554432),
                memory_anon: 1024,
                memory_file: 2048,
                cpu_usage_usec: 3,
                cpu_user_usec: 2,
                cpu_system_usec: 1,
                pids_current: 2,
                pids_max: None,
                oom: 1,
                oom_kill: 1,
                frozen: false,
            }),
        };
        let v = stats_event("c1", &stats);
        assert_eq!(v["type"], "stats");
        assert_eq!(v["id"], "c1");
        assert_eq!(v["data"]["cpu"]["usage"]["total"], 3000);
        assert_eq!(v["data"]["cpu"]["usage"]["kernel"], 1000);
        assert_eq!(v["data"]["memory"]["usage"]["usage"], 4096);
        assert_eq!(v["data"]["memory"]["usage"]["limit"], 33554432);
        assert_eq!(v["data"]["memory"]["raw"]["oom_kill"], 1);
        assert_eq!(v["data"]["pids"], json!({"current": 2, "limit": 0}));
        let v = stats_event(
            "c1",
            &ContainerStats {
                cgroup: None,
                ..stats
            },
        );
        assert_eq!(v["data"]["memory"]["usage"]["usage"], 2);
        assert_eq!(v["data"]["pids"]["current"], 3);
    }
}
