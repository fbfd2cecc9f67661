//! A process's standard streams: pipes, or a pseudo-terminal, made before the process
//! is forked; the agent keeps its ends until the host attaches a stream.
//!
//! Nothing is buffered in the agent: output waits in the pipe (or the terminal) until
//! a stream is attached, and the process blocks once that buffer is full.

use super::reaper::lock;
use super::spec::ConsoleSize;
use husk_protocol::{AgentError, ErrorCode, StdioStream};
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::pty::{grantpt, posix_openpt, unlockpt, Winsize};
use nix::unistd::pipe2;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

nix::ioctl_write_ptr_bad!(tiocswinsz, nix::libc::TIOCSWINSZ, Winsize);
nix::ioctl_write_int_bad!(tiocgptpeer, nix::libc::TIOCGPTPEER);

/// The child's ends of its streams, all at descriptors 3 and above.
#[derive(Debug)]
pub enum ChildStdio {
    /// Pipes: the child reads `stdin` and writes `stdout` and `stderr`.
    Pipes {
        /// Read end of the stdin pipe.
        stdin: OwnedFd,
        /// Write end of the stdout pipe.
        stdout: OwnedFd,
        /// Write end of the stderr pipe.
        stderr: OwnedFd,
    },
    /// The terminal's slave side: the child's controlling terminal and stdio.
    Pty(OwnedFd),
}

/// The agent's ends of a process's streams.
#[derive(Debug)]
pub enum Streams {
    /// Pipes; each end is handed out once.
    Pipes {
        /// Write end of stdin.
        stdin: Mutex<StdinSlot>,
        /// Read end of stdout, until attached.
        stdout: Mutex<Option<File>>,
        /// Read end of stderr, until attached.
        stderr: Mutex<Option<File>>,
    },
    /// A terminal's master side, attached at most once, kept for resizing.
    Pty {
        /// The master.
        master: File,
        /// Whether a `pty` stream was attached.
        attached: AtomicBool,
    },
}

/// Where the write end of a stdin pipe is.
#[derive(Debug)]
pub enum StdinSlot {
    /// Held by the agent; no stream attached yet.
    Pending(File),
    /// Handed to a stream's relay, which holds the only strong reference.
    Attached(Weak<File>),
    /// Closed.
    Closed,
}

/// An attached stream's end, for the relay.
#[derive(Debug)]
pub enum Attached {
    /// Output to copy to the host until end of file.
    Output(File),
    /// The write end of stdin; the pipe closes when the relay drops it (or at
    /// `close_stdin`).
    Input(Arc<File>),
    /// A duplicate of the terminal's master, both ways.
    Pty(File),
}

/// Makes the streams of a new process.
pub fn create(
    terminal: bool,
    size: Option<ConsoleSize>,
) -> Result<(ChildStdio, Streams), AgentError> {
    let failed = |what: &str, e: nix::Error| {
        AgentError::new(
            ErrorCode::Internal,
            format!("cannot create {what}: {}", e.desc()),
        )
    };
    if terminal {
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let master = posix_openpt(flags).map_err(|e| failed("a terminal", e))?;
        grantpt(&master).map_err(|e| failed("a terminal", e))?;
        unlockpt(&master).map_err(|e| failed("a terminal", e))?;
        // SAFETY: TIOCGPTPEER takes open flags by value and returns a new descriptor.
        let slave = unsafe { tiocgptpeer(master.as_raw_fd(), flags.bits()) }
            .map_err(|e| failed("a terminal", e))?;
        // SAFETY: the ioctl returned a new descriptor that nothing else owns.
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        let master = File::from(OwnedFd::from(master));
        if let Some(size) = size {
            resize(&master, size.height, size.width)?;
        }
        let child = ChildStdio::Pty(above_stdio(slave).map_err(|e| failed("a terminal", e))?);
        let streams = Streams::Pty {
            master,
            attached: AtomicBool::new(false),
        };
        return Ok((child, streams));
    }
    let pipe = || -> nix::Result<(OwnedFd, OwnedFd)> {
        let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
        Ok((above_stdio(r)?, above_stdio(w)?))
    };
    let (stdin_r, stdin_w) = pipe().map_err(|e| failed("a pipe", e))?;
    let (stdout_r, stdout_w) = pipe().map_err(|e| failed("a pipe", e))?;
    let (stderr_r, stderr_w) = pipe().map_err(|e| failed("a pipe", e))?;
    let child = ChildStdio::Pipes {
        stdin: stdin_r,
        stdout: stdout_w,
        stderr: stderr_w,
    };
    let streams = Streams::Pipes {
        stdin: Mutex::new(StdinSlot::Pending(File::from(stdin_w))),
        stdout: Mutex::new(Some(File::from(stdout_r))),
        stderr: Mutex::new(Some(File::from(stderr_r))),
    };
    Ok((child, streams))
}

/// `fd` moved to a descriptor above 2, so that the child's `dup2` onto 0, 1 and 2
/// never overwrites another of its descriptors (the agent might run with one of 0-2
/// closed).
fn above_stdio(fd: OwnedFd) -> nix::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let moved = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(moved) })
}

/// Sets a terminal's window size.
pub fn resize(master: &File, rows: u16, cols: u16) -> Result<(), AgentError> {
    let size = Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, valid for the call.
    unsafe { tiocswinsz(master.as_raw_fd(), &size) }
        .map(drop)
        .map_err(|e| {
            AgentError::new(
                ErrorCode::Internal,
                format!("cannot resize the terminal: {}", e.desc()),
            )
        })
}

impl Streams {
    /// Hands out one stream's end to a relay; each at most once.
    pub fn attach(&self, stream: StdioStream, name: &str) -> Result<Attached, AgentError> {
        let twice = || {
            AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("{stream:?} of {name} is already attached").to_lowercase(),
            )
        };
        let wrong = |why: &str| {
            AgentError::new(
                ErrorCode::InvalidArgument,
                format!("cannot attach {stream:?} to {name}: {why}").to_lowercase(),
            )
        };
        match (self, stream) {
            (Streams::Pipes { .. }, StdioStream::Pty) => Err(wrong("the process has no terminal")),
            (Streams::Pty { .. }, _) if stream != StdioStream::Pty => Err(wrong(
                "the process has a terminal: attach its pty stream instead",
            )),
            (Streams::Pty { master, attached }, _) => {
                if attached.swap(true, Ordering::AcqRel) {
                    return Err(twice());
                }
                master.try_clone().map(Attached::Pty).map_err(|e| {
                    attached.store(false, Ordering::Release);
                    AgentError::new(ErrorCode::Internal, format!("cannot attach: {e}"))
                })
            }
            (Streams::Pipes { stdout, stderr, .. }, StdioStream::Stdout | StdioStream::Stderr) => {
                let slot = if stream == StdioStream::Stdout {
                    stdout
                } else {
                    stderr
                };
                lock(slot).take().map(Attached::Output).ok_or_else(twice)
            }
            (Streams::Pipes { stdin, .. }, StdioStream::Stdin) => {
                let mut slot = lock(stdin);
                match std::mem::replace(&mut *slot, StdinSlot::Closed) {
                    StdinSlot::Pending(file) => {
                        let file = Arc::new(file);
                        *slot = StdinSlot::Attached(Arc::downgrade(&file));
                        Ok(Attached::Input(file))
                    }
                    StdinSlot::Attached(relay) => {
                        *slot = StdinSlot::Attached(relay);
                        Err(twice())
                    }
                    StdinSlot::Closed => Err(AgentError::new(
                        ErrorCode::FailedPrecondition,
                        format!("stdin of {name} was closed"),
                    )),
                }
            }
        }
    }

    /// Closes stdin's write end, even while a relay holds it: the process reads end of
    /// file. Closing twice is fine.
    pub fn close_stdin(&self, name: &str) -> Result<(), AgentError> {
        let Streams::Pipes { stdin, .. } = self else {
            return Err(AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("{name} has a terminal, not a stdin pipe: send end of file (^D) on its pty stream instead"),
            ));
        };
        let mut slot = lock(stdin);
        if let StdinSlot::Attached(relay) = std::mem::replace(&mut *slot, StdinSlot::Closed) {
            if let Some(file) = relay.upgrade() {
                close_under(&file)?;
            }
        }
        Ok(())
    }

    /// The terminal's master, if the process has one.
    pub fn pty_master(&self) -> Option<&File> {
        match self {
            Streams::Pty { master, .. } => Some(master),
            Streams::Pipes { .. } => None,
        }
    }
}

/// Closes the pipe end behind `file` while a relay still holds `file`: the descriptor
/// is atomically replaced (`dup2`) by the write end of a pipe without reader, so the
/// relay's next write fails with `EPIPE` and no descriptor number is ever reused
/// under it.
fn close_under(file: &File) -> Result<(), AgentError> {
    let failed = |e: nix::Error| {
        AgentError::new(
            ErrorCode::Internal,
            format!("cannot close stdin: {}", e.desc()),
        )
    };
    let (reader, dead) = pipe2(OFlag::O_CLOEXEC).map_err(failed)?;
    drop(reader);
    // SAFETY: both descriptors are open for the whole call (`file` is borrowed,
    // `dead` owned); dup2 only replaces what `file`'s descriptor refers to.
    let done = unsafe { nix::libc::dup3(dead.as_raw_fd(), file.as_raw_fd(), nix::libc::O_CLOEXEC) };
    if done < 0 {
        return Err(failed(nix::Error::last()));
    }
    Ok(())
}
