//! When the phases of a sandbox's start happen: the sandbox process records them on
//! `CLOCK_MONOTONIC` (one clock for every process of the host), reports them with
//! its [`Report`](super::plan::Report), and `husk create` logs them at debug level
//! (`husk --debug`) relative to its own start, so users and the benchmarks see where
//! the time goes.

use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// The prefix of the debug line that `create` logs.
pub const CREATE_LINE: &str = "start timings";
/// The prefix of the debug line that `start` logs.
pub const START_LINE: &str = "process started";

/// Now on `CLOCK_MONOTONIC`, in microseconds.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on
    // Linux, so the call cannot fail (and a zero result would only skew a log line).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000 + nanos / 1000
}

/// The phases of a sandbox's start, as [`monotonic_us`] instants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartTimings {
    /// The sandbox process began.
    pub sandbox_started: u64,
    /// virtiofsd listens on its socket.
    pub virtiofsd_ready: u64,
    /// The VM is built and its vCPUs run (the kernel is entered).
    pub vmm_started: u64,
    /// The agent's readiness line reached the console.
    pub agent_ready: u64,
    /// The guest's own clock at readiness: kernel start to agent ready, in
    /// microseconds, as the agent printed it (absent if the line did not say).
    pub guest_boot: Option<u64>,
    /// The container exists in the guest and its stdio is attached.
    pub container_created: u64,
}

impl StartTimings {
    /// The `key=value` line `create` logs, every instant in milliseconds after
    /// `origin` (a [`monotonic_us`] instant taken when `create` began).
    pub fn describe(&self, origin: u64) -> String {
        let ms = |t: u64| t.saturating_sub(origin) as f64 / 1000.0;
        let mut line = format!(
            "{CREATE_LINE} (ms after create began): sandbox={:.1} virtiofsd={:.1} vmm={:.1}",
            ms(self.sandbox_started),
            ms(self.virtiofsd_ready),
            ms(self.vmm_started)
        );
        if let Some(guest) = self.guest_boot {
            // The guest clock starts with the kernel: place the kernel's start on
            // the host's timeline from the readiness line backwards.
            let _ = write!(
                line,
                " kernel={:.1} guest_boot={:.1}",
                ms(self.agent_ready.saturating_sub(guest)),
                guest as f64 / 1000.0
            );
        }
        let _ = write!(
            line,
            " agent_ready={:.1} created={:.1} origin_monotonic_ms={:.3}",
            ms(self.agent_ready),
            ms(self.container_created),
            origin as f64 / 1000.0
        );
        line
    }
}

/// The guest's boot time from the agent's readiness line (`... T ms after kernel
/// start)`), in microseconds. The line comes from the guest: anything else is `None`.
pub fn guest_boot_from_ready_line(line: &str) -> Option<u64> {
    let ms: u64 = line
        .split(", ")
        .find_map(|p| p.trim_end().strip_suffix(" ms after kernel start)"))?
        .parse()
        .ok()?;
    ms.checked_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_boot_time_is_read_from_the_readiness_line_only() {
        let line = " (version 1, 1 cpus, 236 MiB, 905 ms after kernel start)\r";
        assert_eq!(guest_boot_from_ready_line(line), Some(905_000));
        assert_eq!(guest_boot_from_ready_line(" (version 1)"), None);
        assert_eq!(
            guest_boot_from_ready_line(", -3 ms after kernel start)"),
            None
        );
        assert_eq!(
            guest_boot_from_ready_line(", 99999999999999999999 ms after kernel start)"),
            None
        );
    }

    #[test]
    fn the_line_places_every_phase_after_the_origin() {
        let t = StartTimings {
            sandbox_started: 1_005_000,
            virtiofsd_ready: 1_020_000,
            vmm_started: 1_025_500,
            agent_ready: 2_000_000,
            guest_boot: Some(900_000),
            container_created: 2_030_000,
        };
        assert_eq!(
            t.describe(1_000_000),
            "start timings (ms after create began): sandbox=5.0 virtiofsd=20.0 vmm=25.5 \
             kernel=100.0 guest_boot=900.0 agent_ready=1000.0 created=1030.0 \
             origin_monotonic_ms=1000.000"
        );
        let clock = monotonic_us();
        assert!(monotonic_us() >= clock);
    }
}
