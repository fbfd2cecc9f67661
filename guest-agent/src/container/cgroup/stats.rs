//! A cgroup's figures: `memory.current`, `memory.max`, `memory.stat`, `cpu.stat`,
//! `pids.current`, `pids.max`, `memory.events`, `cgroup.events`. A missing file (its
//! controller not enabled) reads as 0 or no limit.

use super::Cgroup;
use husk_protocol::CgroupStats;
use std::io;

/// The value of `key` in a flat keyed file (`key value` lines).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next()? == key).then(|| words.next()?.parse().ok())?
    })
}

/// A single-value file: a number, or `None` for `max`.
pub fn limit(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        n => n.parse().ok(),
    }
}

impl Cgroup {
    /// The cgroup's figures now.
    pub fn stats(&self) -> io::Result<CgroupStats> {
        let read = |file: &str| match std::fs::read_to_string(self.path.join(file)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io::Error::new(e.kind(), format!("{file}: {e}"))),
        };
        let number = |text: &Option<String>| text.as_deref().and_then(|t| t.trim().parse().ok());
        let memory_stat = read("memory.stat")?.unwrap_or_default();
        let cpu_stat = read("cpu.stat")?.unwrap_or_default();
        let memory_events = read("memory.events")?.unwrap_or_default();
        let cgroup_events = read("cgroup.events")?.unwrap_or_default();
        Ok(CgroupStats {
            memory_current: number(&read("memory.current")?).unwrap_or(0),
            memory_max: read("memory.max")?.as_deref().and_then(limit),
            memory_anon: keyed(&memory_stat, "anon").unwrap_or(0),
            memory_file: keyed(&memory_stat, "file").unwrap_or(0),
            cpu_usage_usec: keyed(&cpu_stat, "usage_usec").unwrap_or(0),
            cpu_user_usec: keyed(&cpu_stat, "user_usec").unwrap_or(0),
            cpu_system_usec: keyed(&cpu_stat, "system_usec").unwrap_or(0),
            pids_current: number(&read("pids.current")?).unwrap_or(0),
            pids_max: read("pids.max")?.as_deref().and_then(limit),
            oom: keyed(&memory_events, "oom").unwrap_or(0),
            oom_kill: keyed(&memory_events, "oom_kill").unwrap_or(0),
            frozen: keyed(&cgroup_events, "frozen") == Some(1),
        })
    }

    /// `memory.events`' `oom_kill` count (0 without the memory controller).
    pub fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.path.join("memory.events"))
            .ok()
            .and_then(|t| keyed(&t, "oom_kill"))
            .unwrap_or(0)
    }
}
