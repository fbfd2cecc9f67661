//! The runtime under test, driven with runc's command line.

use super::Options;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often `wait_status` asks for the state.
const POLL: Duration = Duration::from_millis(50);

/// A runtime binary with its `--root` and environment.
#[derive(Debug, Clone)]
pub struct Runtime {
    path: PathBuf,
    root: PathBuf,
    env: Vec<(String, String)>,
    /// How long a container may take to be created, to run, to stop.
    pub timeout: Duration,
}

impl Runtime {
    /// The runtime of `opts`.
    pub fn new(opts: &Options) -> Runtime {
        Runtime {
            path: opts.runtime.clone(),
            root: opts.root.clone(),
            env: opts.env.clone(),
            timeout: opts.timeout,
        }
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.path);
        cmd.arg("--root").arg(&self.root).envs(self.env.clone());
        cmd
    }

    /// Runs `args`; its stdout, or its stderr (and status) as the error.
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{args:?}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `create --bundle BUNDLE ID`, the container's stdout and stderr going to
    /// `output` and `output.err` (the process the runtime leaves behind keeps them).
    pub fn create(&self, id: &str, bundle: &Path, output: &Path) -> Result<(), String> {
        let err_path = output.with_extension("err");
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        let status = self
            .command()
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(file(output)?)
            .stderr(file(&err_path)?)
            .status()
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        if status.success() {
            Ok(())
        } else {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            Err(format!("create: {status}: {}", err.trim()))
        }
    }

    /// `state ID`, parsed.
    pub fn state(&self, id: &str) -> Result<serde_json::Value, String> {
        let text = self.run(&["state", id])?;
        serde_json::from_str(&text).map_err(|e| format!("state {id}: {e}: {text}"))
    }

    /// Polls `state ID` until its status is `status`, at most [`Runtime::timeout`].
    pub fn wait_status(&self, id: &str, status: &str) -> Result<(), String> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let last = self.state(id)?;
            if last["status"] == status {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{id} still {} after {:?} (waiting for {status})",
                    last["status"], self.timeout
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// `delete --force ID`, errors ignored (clean-up).
    pub fn force_delete(&self, id: &str) {
        let _ = self.run(&["delete", "--force", id]);
    }
}
