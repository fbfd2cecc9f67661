//! Driving a VM through its serial console on stdio: wait for lines, type requests,
//! wait for the end, with a deadline on every step and the VM killed on drop.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// A VM process whose serial console is its stdin and stdout.
#[derive(Debug)]
pub struct ConsoleVm {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Everything the console printed so far, for failure messages.
    pub transcript: Vec<String>,
    started: Instant,
}

impl ConsoleVm {
    /// Starts `cmd` with its stdin and stdout piped.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Self> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_owned()).is_err() {
                    break;
                }
            }
        });
        Ok(ConsoleVm {
            stdin: child.stdin.take(),
            child,
            lines,
            transcript: Vec::new(),
            started: Instant::now(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since the process was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for a line starting with `prefix` and returns it.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("no line {prefix:?} within {timeout:?}")))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.failure(&format!("console closed before a line {prefix:?}")))
                }
            }
        }
    }

    /// Types a line on the console.
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("console input already closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot type on the console: {e}"))
    }

    /// Waits for the process to end, collecting the rest of the console.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.transcript.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("still running after {timeout:?}")))
                }
            }
        }
        // stdout is closed: the process is exiting; reap it within what is left.
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(self.failure("closed its console but did not exit"))
    }

    /// How the process ended, if it has (without waiting).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Moves what the console printed so far, without waiting, into the transcript.
    pub fn collect(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.transcript.push(line);
        }
    }

    /// What a failure report needs: whether the VMM still runs, the state of each of
    /// its threads (see [`thread_states`]) and the last lines of the guest console.
    pub fn post_mortem(&mut self) -> String {
        self.collect();
        let vmm = match self.try_status() {
            Some(status) => format!("the VMM ended: {status}"),
            None => "the VMM still runs".to_owned(),
        };
        let console = &self.transcript[self.transcript.len().saturating_sub(POST_MORTEM_LINES)..];
        format!(
            "{vmm}\n--- its threads:\n{}\n--- guest console (last lines):\n{}",
            thread_states(self.pid()),
            console.join("\n")
        )
    }

    fn failure(&self, what: &str) -> String {
        format!("{what}; console so far:\n{}", self.transcript.join("\n"))
    }
}

impl Drop for ConsoleVm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lines of console or log a failure report shows.
pub const POST_MORTEM_LINES: usize = 40;

/// One line per thread of process `pid`: name, scheduler state, and where the kernel
/// has it waiting. A vCPU thread asleep in user space is blocked on a lock of the VMM;
/// one running (`R`) while the guest prints RCU stalls is stuck below the VMM.
pub fn thread_states(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(no /proc/{pid})");
    };
    let mut lines = Vec::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let stat = read("stat");
        // The state is the first field after the parenthesized name.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or("?");
        let stack: Vec<String> = read("stack")
            .lines()
            .take(4)
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect();
        lines.push(format!(
            "{} {state} wchan={} stack={}",
            read("comm").trim(),
            read("wchan"),
            stack.join(" < ")
        ));
    }
    lines.sort();
    lines.join("\n")
}
