//! The container's stdio: containerd's fifos (or /dev/null where a path is empty),
//! opened without blocking and handed to the sandbox process as its stdin, stdout
//! and stderr, which it relays to and from the guest; or, for a stdout URI, a log
//! file or logging binary ([`crate::log_uri`]); for a terminal, the shim's relay
//! ([`crate::terminal`]) gets them instead.

use crate::error::{Result, ShimError};
use crate::log_uri::{destination, open_file, Destination, Logger};
use crate::terminal::TerminalIo;
use husk_runtime::sandbox::SandboxStdio;
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use std::os::fd::OwnedFd;

/// The stdio paths of a task, as containerd sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// The stdin fifo, or empty.
    pub stdin: String,
    /// The stdout fifo, or empty.
    pub stdout: String,
    /// The stderr fifo, or empty.
    pub stderr: String,
}

/// Who the output belongs to, for a logging binary's environment.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// The task (container) id.
    pub id: &'a str,
    /// containerd's namespace.
    pub namespace: &'a str,
}

/// A task's (or exec'd process's) stdio, opened: what the sandbox process (or exec
/// relay) gets, the shim's own writing end of the stdin fifo, which keeps the
/// sandbox from reading end of file until the engine has had its say (CloseIO drops
/// it), the shim's side of a terminal, and the logging binary if there is one.
#[derive(Debug)]
pub struct OpenedStdio {
    /// The sandbox's stdin, stdout and stderr (the shim drops its copies once the
    /// sandbox is up, so the engine sees end of file when it exits); /dev/null for
    /// a terminal process, whose stdio the shim relays.
    pub sandbox: SandboxStdio,
    /// The shim's writing end of the stdin fifo (`None` without one).
    pub stdin_writer: Option<OwnedFd>,
    /// For a terminal process: what the shim relays to and from its master.
    pub terminal: Option<TerminalIo>,
    /// The logging binary of a `binary://` stdout.
    pub logger: Option<Logger>,
}

impl StdioPaths {
    /// Opens the three without blocking on the engine's ends (`terminal`: for the
    /// shim's terminal relay rather than the sandbox), starting a logging binary for
    /// a `binary://` stdout.
    pub fn open(&self, terminal: bool, owner: Owner<'_>) -> Result<OpenedStdio> {
        let (stdin, stdin_writer) = open_input(&self.stdin)?;
        let (stdout, stderr, logger) = match destination(&self.stdout)? {
            Destination::Fifo => (open_output(&self.stdout)?, open_output(&self.stderr)?, None),
            Destination::File(path) => {
                let file = open_file(&path)?;
                let copy = file.try_clone().map_err(|e| ShimError::Stdio {
                    path: self.stdout.clone(),
                    message: format!("cannot duplicate: {e}"),
                })?;
                (file, copy, None)
            }
            Destination::Binary { path, args } => {
                let started = Logger::start(&path, &args, owner.id, owner.namespace)?;
                (started.stdout, started.stderr, Some(started.logger))
            }
        };
        if !terminal {
            return Ok(OpenedStdio {
                sandbox: SandboxStdio {
                    stdin,
                    stdout,
                    stderr,
                },
                stdin_writer,
                terminal: None,
                logger,
            });
        }
        let null = |flags| open_path("/dev/null", flags);
        Ok(OpenedStdio {
            sandbox: SandboxStdio {
                stdin: null(OFlag::O_RDONLY)?,
                stdout: null(OFlag::O_WRONLY)?,
                stderr: null(OFlag::O_WRONLY)?,
            },
            stdin_writer,
            terminal: Some(TerminalIo {
                input: (!self.stdin.is_empty()).then_some(stdin),
                output: stdout,
            }),
            logger,
        })
    }
}

/// The stdin fifo's reading end (opening it does not wait for a writer), and a
/// writing end for the shim, so that reads block rather than see end of file
/// before the engine writes, and see it once the engine closed its end and the shim
/// dropped its own. Empty: /dev/null.
fn open_input(path: &str) -> Result<(OwnedFd, Option<OwnedFd>)> {
    if path.is_empty() {
        return Ok((open_path("/dev/null", OFlag::O_RDONLY)?, None));
    }
    let reader = open_path(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK)?;
    // A reader exists now: a non-blocking open for writing succeeds at once.
    let writer = open_path(path, OFlag::O_WRONLY | OFlag::O_NONBLOCK)?;
    Ok((blocking(path, reader)?, Some(writer)))
}

/// A stdout or stderr fifo, opened for writing (read-write if its reader is not
/// there yet, so the open does not block). Empty: /dev/null.
fn open_output(path: &str) -> Result<OwnedFd> {
    if path.is_empty() {
        return open_path("/dev/null", OFlag::O_WRONLY);
    }
    let fd = match open(
        path,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // Nobody reads it yet.
        Err(Errno::ENXIO) => open_path(path, OFlag::O_RDWR | OFlag::O_NONBLOCK)?,
        Err(e) => return Err(cannot_open(path, e)),
    };
    blocking(path, fd)
}

fn cannot_open(path: &str, e: Errno) -> ShimError {
    ShimError::Stdio {
        path: path.into(),
        message: format!("cannot open: {e}"),
    }
}

fn open_path(path: &str, flags: OFlag) -> Result<OwnedFd> {
    open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| cannot_open(path, e))
}

/// Clears `O_NONBLOCK`: the sandbox's relays use blocking reads and writes.
fn blocking(path: &str, fd: OwnedFd) -> Result<OwnedFd> {
    let err = |e: Errno| ShimError::Stdio {
        path: path.into(),
        message: format!("cannot make it blocking: {e}"),
    };
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).map_err(err)?);
    fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(err)?;
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    const OWNER: Owner<'static> = Owner {
        id: "c1",
        namespace: "ns",
    };

    fn fifo(dir: &std::path::Path, name: &str) -> String {
        let path = dir.join(name);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600)).unwrap();
        path.to_str().unwrap().to_string()
    }

    #[test]
    fn empty_paths_are_dev_null() {
        let opened = StdioPaths::default().open(false, OWNER).unwrap();
        assert!(opened.stdin_writer.is_none());
        let stdio = opened.sandbox;
        let mut stdin = std::fs::File::from(stdio.stdin);
        let mut buf = [0u8; 4];
        assert_eq!(stdin.read(&mut buf).unwrap(), 0);
        std::fs::File::from(stdio.stdout).write_all(b"x").unwrap();
    }

    #[test]
    fn fifos_open_without_their_other_ends_and_block() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StdioPaths {
            stdin: fifo(dir.path(), "in"),
            stdout: fifo(dir.path(), "out"),
            stderr: fifo(dir.path(), "err"),
        };
        // Nobody holds the other ends: none of these opens may block.
        let opened = paths.open(false, OWNER).unwrap();
        let stdio = opened.sandbox;
        for fd in [&stdio.stdin, &stdio.stdout, &stdio.stderr] {
            let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
            assert!(!flags.contains(OFlag::O_NONBLOCK));
        }
        // What the engine writes to stdin arrives; end of file comes once both the
        // engine and the shim (CloseIO) closed their ends.
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .open(&paths.stdin)
            .unwrap();
        writer.write_all(b"hi").unwrap();
        drop(writer);
        let mut stdin = std::fs::File::from(stdio.stdin);
        let mut buf = [0u8; 2];
        stdin.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        drop(opened.stdin_writer);
        assert_eq!(stdin.read(&mut buf).unwrap(), 0);
    }

    #[test]
    fn output_goes_to_a_reader_that_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let out = fifo(dir.path(), "out");
        let reader = open(
            out.as_str(),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK,
            Mode::empty(),
        )
        .unwrap();
        let fd = open_output(&out).unwrap();
        std::fs::File::from(fd).write_all(b"ok").unwrap();
        let mut buf = [0u8; 2];
        std::fs::File::from(reader).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ok");
    }

    #[test]
    fn unknown_uris_and_missing_fifos_are_refused_by_name() {
        let paths = StdioPaths {
            stdout: "syslog:///dev/log".into(),
            ..Default::default()
        };
        let err = paths.open(false, OWNER).unwrap_err();
        assert!(err.to_string().contains("syslog:///dev/log"), "{err}");
        assert!(
            err.to_string().contains("unknown stdio URI scheme"),
            "{err}"
        );
        let err = open_input("/nonexistent/stdin").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/stdin"), "{err}");
    }

    #[test]
    fn a_file_uri_takes_stdout_and_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("logs/c1.log");
        let uri = format!("file://{}", log.display());
        let paths = StdioPaths {
            stdout: uri.clone(),
            stderr: uri,
            ..Default::default()
        };
        let stdio = paths.open(false, OWNER).unwrap().sandbox;
        std::fs::File::from(stdio.stdout)
            .write_all(b"out\n")
            .unwrap();
        std::fs::File::from(stdio.stderr)
            .write_all(b"err\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "out\nerr\n");
    }

    #[test]
    fn a_terminal_leaves_the_sandbox_dev_null_and_the_relay_the_fifos() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StdioPaths {
            stdin: fifo(dir.path(), "in"),
            stdout: fifo(dir.path(), "out"),
            stderr: String::new(),
        };
        let opened = paths.open(true, OWNER).unwrap();
        let io = opened.terminal.expect("the relay's side");
        assert!(io.input.is_some());
        let mut buf = [0u8; 1];
        let mut stdin = std::fs::File::from(opened.sandbox.stdin);
        assert_eq!(stdin.read(&mut buf).unwrap(), 0, "/dev/null");
        assert!(opened.stdin_writer.is_some());
    }
}
