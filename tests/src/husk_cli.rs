//! The `husk` CLI as the benchmarks drive it: a state root and a configuration of
//! their own, detached runs, forced deletes, and the start timings that `husk --debug`
//! logs.

use crate::guest_image::workspace_bin;
use husk_runtime::sandbox::timings::{CREATE_LINE, START_LINE};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `husk` with a state root and a configuration file.
#[derive(Debug, Clone)]
pub struct HuskCli {
    /// `--root`.
    pub root: PathBuf,
    /// `HUSK_CONFIG`.
    pub config: PathBuf,
}

impl HuskCli {
    /// `husk --root ROOT` with `HUSK_CONFIG`, stdio on /dev/null.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(workspace_bin("husk"));
        cmd.env("HUSK_CONFIG", &self.config)
            .arg("--root")
            .arg(&self.root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// `husk run -d` of `bundle` as `id`; the sandbox process it leaves behind
    /// becomes a child of the nearest subreaper. Gives an error with husk's stderr.
    pub fn run_detached(&self, id: &str, bundle: &Path, stderr: &Path) -> Result<(), String> {
        let status = self
            .command()
            .arg("run")
            .arg("-d")
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stderr(std::fs::File::create(stderr).map_err(|e| e.to_string())?)
            .status()
            .map_err(|e| format!("husk run -d {id}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!(
                "husk run -d {id}: {status}: {}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            ))
        }
    }

    /// The sandbox process of `id`, from `husk state`.
    pub fn sandbox_pid(&self, id: &str) -> Result<u32, String> {
        let out = self
            .command()
            .arg("state")
            .arg(id)
            .stdout(Stdio::piped())
            .output()
            .map_err(|e| e.to_string())?;
        let state: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("husk state {id}: {e}"))?;
        state["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("husk state {id}: no pid in {state}"))
    }

    /// `husk delete --force id`.
    pub fn delete_force(&self, id: &str) -> Result<(), String> {
        let status = self
            .command()
            .args(["delete", "--force", id])
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("husk delete --force {id}: {status}"))
        }
    }
}

/// The phases of one `husk run`, in ms on `CLOCK_MONOTONIC`, from the debug log
/// lines of `husk --debug --log-format json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoggedStart {
    /// `(phase, monotonic ms)`, in the order logged: `sandbox`, `virtiofsd`, `vmm`,
    /// `kernel`, `agent_ready`, `created` (create's line) and `started` (start's).
    pub phases: Vec<(String, f64)>,
}

/// Reads the start timings out of a JSON log; `None` if the lines are missing.
pub fn logged_start(log: &str) -> Option<LoggedStart> {
    let mut phases = Vec::new();
    for line in log.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let msg = entry["msg"].as_str().unwrap_or_default();
        let words = |m: &str| -> Vec<(String, f64)> {
            m.split_whitespace()
                .filter_map(|w| {
                    let (k, v) = w.split_once('=')?;
                    Some((k.to_owned(), v.trim_end_matches(')').parse().ok()?))
                })
                .collect()
        };
        if msg.starts_with(CREATE_LINE) {
            let kv = words(msg);
            let origin = kv.iter().find(|(k, _)| k == "origin_monotonic_ms")?.1;
            phases.extend(
                kv.into_iter()
                    .filter(|(k, _)| k != "origin_monotonic_ms" && k != "guest_boot")
                    .map(|(k, v)| (k, origin + v)),
            );
        } else if msg.starts_with(START_LINE) {
            let at = words(msg)
                .into_iter()
                .find(|(k, _)| k == "(monotonic_ms" || k == "monotonic_ms")?
                .1;
            phases.push(("started".into(), at));
        }
    }
    (phases.len() >= 2).then_some(LoggedStart { phases })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phases_are_read_from_the_debug_lines() {
        let log = concat!(
            "{\"level\":\"debug\",\"msg\":\"start timings (ms after create began): sandbox=5.0 ",
            "virtiofsd=20.0 vmm=25.5 kernel=100.0 guest_boot=900.0 agent_ready=1000.0 ",
            "created=1030.0 origin_monotonic_ms=1000.000\",\"time\":\"t\"}\n",
            "not json\n",
            "{\"level\":\"debug\",\"msg\":\"process started in 3.0 ms (monotonic_ms=2040.500)\"}\n"
        );
        let got = logged_start(log).unwrap();
        let names: Vec<&str> = got.phases.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "sandbox",
                "virtiofsd",
                "vmm",
                "kernel",
                "agent_ready",
                "created",
                "started"
            ]
        );
        assert_eq!(got.phases[0].1, 1005.0);
        assert_eq!(got.phases[6].1, 2040.5);
        assert_eq!(logged_start("{\"msg\":\"other\"}"), None);
    }
}
