//! `husk events`: the container's stats in runc's JSON (`--stats`: once), or a
//! stream of stats every `--interval` and OOM events as they happen, until the
//! container stops.

use crate::cli::EventsArgs;
use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::{Status, Store};
use husk_protocol::ContainerStats;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long each OOM wait in the guest lasts before it is sent again.
const OOM_POLL: Duration = Duration::from_secs(5);

/// How long a sandbox whose agent no longer answers may take to exit (the
/// container's output drained, the VM stopped) before `events` reports the failure.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Runs `husk events`.
pub fn events(store: &Store, args: &EventsArgs) -> Result<(), RuntimeError> {
    let interval = parse_duration(&args.interval)?;
    let (state, status) = super::state::observe(store, &args.id)?;
    if !matches!(status, Status::Running | Status::Created | Status::Paused) {
        return Err(RuntimeError::InvalidState(format!(
            "container \"{}\" is not running",
            args.id
        )));
    }
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let print = |out: &Mutex<std::io::Stdout>, v: &Value| {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    if args.stats {
        let stats = sandbox::stats(store, &state)?;
        print(&out, &stats_event(&args.id, &stats));
        return Ok(());
    }
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
                        print(&out, &oom_event(&state.id));
                        printed += 1;
                    }
                    !done.load(Ordering::SeqCst)
                });
                printed
            })
            .map_err(|e| RuntimeError::io("start the OOM watcher thread", e))?
    };
    let result = loop {
        match super::state::observe(store, &args.id) {
            Ok((_, Status::Running | Status::Created | Status::Paused)) => {}
            Ok(_) => break Ok(()),
            Err(e) => break Err(e),
        }
        match sandbox::stats(store, &state) {
            Ok(stats) => print(&out, &stats_event(&args.id, &stats)),
            // The container may have stopped meanwhile: that ends the stream. Its
            // sandbox process stops the VM first and exits after, so a failed request
            // can come before the status changes.
            Err(e) => {
                break if stops_within(store, &args.id, STOP_WAIT) {
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
    if sandbox::final_oom_kills(store, &args.id).is_some_and(|n| n > printed) {
        print(&out, &oom_event(&args.id));
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
            Ok((_, Status::Running | Status::Created | Status::Paused)) => {}
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

/// A Go duration as runc takes it: a number and a unit (`ns`, `us`, `ms`, `s`, `m`,
/// `h`), several concatenated (`1m30s`); must be positive.
pub fn parse_duration(text: &str) -> Result<Duration, RuntimeError> {
    let invalid =
        || RuntimeError::InvalidArgument(format!("--interval: invalid duration {text:?}"));
    let mut rest = text.trim();
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..end].parse().map_err(|_| invalid())?;
        let after = &rest[end..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let seconds = match &after[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::try_from_secs_f64(number * seconds).map_err(|_| invalid())?;
        rest = &after[unit_len..];
    }
    if total.is_zero() {
        return Err(invalid());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_protocol::CgroupStats;

    #[test]
    fn durations_as_go_writes_them() {
        for (text, d) in [
            ("5s", Duration::from_secs(5)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h", Duration::from_secs(7200)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), d, "{text}");
        }
        for bad in ["", "5", "s", "0s", "5x", "-1s", "1s2"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

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
