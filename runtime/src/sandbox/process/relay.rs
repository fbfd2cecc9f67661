//! Relaying a guest process's stdio to host descriptors over the agent's stdio
//! streams: the stdio a runtime command received (pipes, files, /dev/null) or a
//! host pseudo-terminal whose master went to the engine's console socket.

use super::pty::{window_size, HostPty};
use crate::agent::{open_stream, AgentClient, StreamTarget, Timeouts};
use crate::sandbox::SandboxError;
use husk_protocol::{StdioStream, AGENT_PORT};
use nix::sys::signal::{SigSet, Signal};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Bytes copied per read.
const CHUNK: usize = 64 << 10;

/// Which process, in which sandbox.
#[derive(Debug, Clone)]
pub struct ProcessRef {
    /// The sandbox's hybrid vsock socket.
    pub vsock: PathBuf,
    /// The container.
    pub container_id: String,
    /// The exec'd process, or `None` for the container's own.
    pub exec_id: Option<String>,
}

impl ProcessRef {
    fn open(&self, stream: StdioStream, timeouts: Timeouts) -> Result<UnixStream, SandboxError> {
        let target = StreamTarget {
            container_id: &self.container_id,
            exec_id: self.exec_id.as_deref(),
            stream,
        };
        open_stream(&self.vsock, AGENT_PORT, target, timeouts.connect)
            .map_err(|e| SandboxError::Agent(format!("attach the {stream:?} stream"), e))
    }

    /// A new agent connection (for requests about this process).
    pub fn agent(&self, timeouts: Timeouts) -> Result<AgentClient, SandboxError> {
        AgentClient::connect(&self.vsock, AGENT_PORT, timeouts)
            .map_err(|e| SandboxError::Agent("reach the agent".into(), e))
    }
}

/// Copies `from` to `to` until end of file or an error; then shuts `to`'s writing
/// side down if asked (a stream's end of file).
fn pump(mut from: impl Read, mut to: impl Write, on_end: impl FnOnce()) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    on_end();
}

/// The running relays of one process.
#[derive(Debug, Default)]
pub struct Relay {
    /// Output relays: finished when the guest process's output reached end of file.
    outputs: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Relays the process's stdin, stdout and stderr from and to `stdin`, `stdout`
    /// and `stderr` (duplicates of the runtime's own descriptors, typically).
    pub fn pipes(
        process: &ProcessRef,
        timeouts: Timeouts,
        stdin: OwnedFd,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Relay, SandboxError> {
        let out = process.open(StdioStream::Stdout, timeouts)?;
        let err = process.open(StdioStream::Stderr, timeouts)?;
        let input = process.open(StdioStream::Stdin, timeouts)?;
        // stdin is not waited for: a host stdin that never ends must not keep the
        // sandbox alive.
        std::thread::spawn(move || {
            let shut = input.try_clone();
            pump(File::from(stdin), &input, move || {
                if let Ok(s) = shut {
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
            });
        });
        let outputs = vec![
            std::thread::spawn(move || pump(&out, File::from(stdout), || {})),
            std::thread::spawn(move || pump(&err, File::from(stderr), || {})),
        ];
        Ok(Relay { outputs })
    }

    /// Relays the process's terminal from and to `pty` (the slave side of a host
    /// pseudo-terminal whose master the engine holds).
    pub fn terminal(
        process: &ProcessRef,
        timeouts: Timeouts,
        pty: OwnedFd,
    ) -> Result<Relay, SandboxError> {
        let stream = process.open(StdioStream::Pty, timeouts)?;
        let to_guest = stream
            .try_clone()
            .map_err(|e| SandboxError::Io("clone the terminal stream", e))?;
        let pty_in = pty
            .try_clone()
            .map_err(|e| SandboxError::Io("clone the host terminal", e))?;
        std::thread::spawn(move || pump(File::from(pty_in), &to_guest, || {}));
        let outputs = vec![std::thread::spawn(move || {
            pump(&stream, File::from(pty), || {})
        })];
        Ok(Relay { outputs })
    }

    /// Waits until the guest process's output has all been relayed.
    pub fn finish(self) {
        for thread in self.outputs {
            let _ = thread.join();
        }
    }

    /// Waits at most `limit` for the output to be relayed (a process the guest
    /// process left behind may hold its output open for ever); the relay threads
    /// are left to the process's exit after that.
    pub fn finish_within(self, limit: std::time::Duration) -> bool {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            self.finish();
            let _ = done.send(());
        });
        finished.recv_timeout(limit).is_ok()
    }
}

/// How a process's stdio reaches the host.
#[derive(Debug, Clone, Copy)]
pub enum Stdio<'a> {
    /// Through this process's own stdin, stdout and stderr.
    Inherited,
    /// Through a host terminal of this size (rows, columns; 0: the default) whose
    /// master goes to the engine's console socket.
    Terminal {
        /// The engine's console socket.
        console_socket: Option<&'a Path>,
        /// Rows and columns.
        size: (u16, u16),
    },
}

/// Attaches `process`'s stdio as `stdio` says; gives back the relay and, for a
/// terminal, its slave (to read the window size from on SIGWINCH).
pub fn attach(
    process: &ProcessRef,
    timeouts: Timeouts,
    stdio: Stdio<'_>,
) -> Result<(Relay, Option<OwnedFd>), SandboxError> {
    match stdio {
        Stdio::Inherited => {
            let relay = Relay::pipes(
                process,
                timeouts,
                dup_std(std::io::stdin())?,
                dup_std(std::io::stdout())?,
                dup_std(std::io::stderr())?,
            )?;
            Ok((relay, None))
        }
        Stdio::Terminal {
            console_socket,
            size: (rows, cols),
        } => {
            let socket = console_socket.ok_or(SandboxError::NoConsoleSocket)?;
            let pty = HostPty::open(rows, cols)?;
            pty.send_master(socket)?;
            // Resizes of the engine's master arrive as SIGWINCH once the terminal is
            // ours; without that, the size stays as created.
            let _ = pty.control();
            let watch = pty
                .slave
                .try_clone()
                .map_err(|e| SandboxError::Io("clone the host terminal", e))?;
            Ok((Relay::terminal(process, timeouts, pty.slave)?, Some(watch)))
        }
    }
}

/// Forwards the `signals` this process receives to `process` in the guest, and
/// SIGWINCH as a resize of its terminal (`pty`, the host slave). Runs until the
/// process ends.
pub fn forward_signals(
    signals: SigSet,
    process: &ProcessRef,
    timeouts: Timeouts,
    pty: Option<OwnedFd>,
) {
    while let Ok(sig) = signals.wait() {
        let Ok(mut agent) = process.agent(timeouts) else {
            continue;
        };
        let exec_id = process.exec_id.as_deref();
        if sig == Signal::SIGWINCH {
            if let Some(Ok((rows, cols))) = pty.as_ref().map(window_size) {
                let _ = agent.resize_tty(&process.container_id, exec_id, rows, cols);
            }
        } else {
            let _ = agent.signal(&process.container_id, exec_id, sig as i32);
        }
    }
}

/// Duplicates one of this process's standard descriptors.
fn dup_std(fd: impl AsFd) -> Result<OwnedFd, SandboxError> {
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|e| SandboxError::Io("duplicate a standard descriptor", e))
}

/// How long output may keep flowing after the process exited (a process it left
/// behind may hold its stdout); then the VM stops, which ends every stream.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);
