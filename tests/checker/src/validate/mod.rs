//! `husk-checker validate SECTION`: the container's view checked against the
//! bundle's `config.json`, one line per check (`ok NAME`, `fail NAME: WHY`, `skip
//! NAME: WHY`), after the model of youki's runtimetest. The conformance runner
//! (tests/src/conformance) collects the lines.

mod caps;
mod mounts;
mod process;
mod system;

use serde_json::Value;
use std::path::Path;
use std::process::ExitCode;

/// The lines of one run.
#[derive(Debug, Default)]
pub struct Report {
    failed: bool,
}

impl Report {
    /// A passed check.
    pub fn ok(&mut self, name: &str) {
        println!("ok {name}");
    }

    /// A failed check and why.
    pub fn fail(&mut self, name: &str, why: impl std::fmt::Display) {
        self.failed = true;
        println!("fail {name}: {}", one_line(&why.to_string()));
    }

    /// A check that does not apply and why.
    pub fn skip(&mut self, name: &str, why: impl std::fmt::Display) {
        println!("skip {name}: {}", one_line(&why.to_string()));
    }

    /// `ok` when `got == want`, else a failure showing both.
    pub fn expect_eq<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, want: T, got: T) {
        if want == got {
            self.ok(name);
        } else {
            self.fail(name, format!("want {want:?}, got {got:?}"));
        }
    }

    /// `ok` or a failure for a check that could not even look.
    pub fn expect_result<T: PartialEq + std::fmt::Debug, E: std::fmt::Display>(
        &mut self,
        name: &str,
        want: T,
        got: Result<T, E>,
    ) {
        match got {
            Ok(got) => self.expect_eq(name, want, got),
            Err(e) => self.fail(name, e),
        }
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " | ")
}

/// Reads the config and runs the section's checks; exit status 1 if one failed.
pub fn main(section: &str, config: &Path, host_ns: &[String]) -> ExitCode {
    let mut report = Report::default();
    let cfg: Value = match std::fs::read(config)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(cfg) => cfg,
        Err(e) => {
            report.fail(
                &format!("{section}.config"),
                format!("{}: {e}", config.display()),
            );
            return ExitCode::FAILURE;
        }
    };
    match section {
        "process" => process::check(&cfg, &mut report),
        "mounts" => mounts::check(&cfg, &mut report),
        "hostname" => system::hostname(&cfg, &mut report),
        "namespaces" => system::namespaces(&cfg, host_ns, &mut report),
        "sysctl" => system::sysctl(&cfg, &mut report),
        "cgroups" => system::cgroups(&cfg, &mut report),
        "seccomp" => system::seccomp(&cfg, &mut report),
        other => report.fail(&format!("{other}.section"), "no such section"),
    }
    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The value of `key` in `/proc/self/status` (`Umask`, `CapEff`, `NoNewPrivs`...).
pub fn proc_status(key: &str) -> Result<String, String> {
    let text = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
        .ok_or_else(|| format!("no {key} in /proc/self/status"))
}

/// The last OS error as text.
pub fn errno() -> std::io::Error {
    std::io::Error::last_os_error()
}
