//! Running a process in a guest, as a container of the agent, through the sandbox's
//! vsock socket: create, attach stdout and stderr, start, wait, collect.

use husk_protocol::{StdioStream, AGENT_PORT};
use husk_runtime::agent::{open_stream, AgentClient, StreamTarget, Timeouts};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

/// How a process in the guest ended, and what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// Its exit code, if it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// A minimal OCI `config.json` running `args` as root in `/`.
pub fn spec(args: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/usr/local/bin:/usr/bin:/bin"],
            "cwd": "/"
        },
        "root": { "path": "rootfs" }
    })
}

/// Runs `args` as the container `id` whose root file system is the guest path
/// `rootfs`, and waits for it within `timeout`.
pub fn run(
    vsock: &Path,
    id: &str,
    rootfs: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<Ran, String> {
    let deadline = Instant::now() + timeout;
    let mut agent = AgentClient::connect(vsock, AGENT_PORT, Timeouts::default())
        .map_err(|e| format!("reach the agent: {e}"))?;
    agent
        .create_container(id, spec(args), rootfs)
        .map_err(|e| format!("create {id}: {e}"))?;
    let collect = |stream| -> Result<std::thread::JoinHandle<String>, String> {
        let target = StreamTarget {
            container_id: id,
            exec_id: None,
            stream,
        };
        let mut conn = open_stream(vsock, AGENT_PORT, target, Timeouts::default().connect)
            .map_err(|e| format!("attach {stream:?} of {id}: {e}"))?;
        Ok(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = conn.read_to_string(&mut text);
            text
        }))
    };
    let stdout = collect(StdioStream::Stdout)?;
    let stderr = collect(StdioStream::Stderr)?;
    agent
        .start_container(id)
        .map_err(|e| format!("start {id}: {e}"))?;
    let status = agent
        .wait(id, None, Some(deadline))
        .map_err(|e| format!("wait for {id}: {e}"))?;
    // The streams end once the process's pipes are closed: after its exit.
    Ok(Ran {
        exit_code: status.exit_code,
        signal: status.signal,
        stdout: stdout.join().map_err(|_| "stdout reader panicked")?,
        stderr: stderr.join().map_err(|_| "stderr reader panicked")?,
    })
}
