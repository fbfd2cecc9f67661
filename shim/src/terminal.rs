//! Terminal processes (`ctr run -t`, `ctr task exec -t`). The sandbox process (or
//! exec relay) opens a host pseudo-terminal relayed to the guest's, and sends its
//! master over a console socket, as runc does; the shim receives it and relays it
//! to containerd's stdin and stdout (a terminal has no stderr). ResizePty goes to
//! the agent (see [`crate::service::Service::resize_pty`]).

use crate::error::{Result, ShimError};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Bytes copied per read.
const CHUNK: usize = 32 << 10;
/// How often a wait for the master checks whether it was called off.
const TICK: Duration = Duration::from_millis(100);
/// The longest wait for the master: the sandbox's boot is bounded by its own
/// timeouts, and a failed one calls the wait off.
const MAX_WAIT: Duration = Duration::from_secs(900);
/// How long the master may still take once the sandbox (or exec relay) reported
/// that it is up: it sends the master before reporting.
const AFTER_UP: Duration = Duration::from_secs(5);

/// A listening console socket; the file goes when this does.
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A console socket waited on by a thread until the master arrives, the deadline
/// passes or the wait is called off.
#[derive(Debug)]
pub struct PendingMaster {
    path: PathBuf,
    cancel: Arc<AtomicBool>,
    /// `None` once joined.
    thread: Option<JoinHandle<Result<OwnedFd>>>,
}

impl ConsoleSocket {
    /// Listens on a fresh socket in `dir` (short names: socket paths are bounded).
    pub fn bind(dir: &Path) -> Result<ConsoleSocket> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!(".console-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| {
            ShimError::Internal(format!("cannot listen on {}: {e}", path.display()))
        })?;
        let socket = ConsoleSocket { path, listener };
        socket.listener.set_nonblocking(true).map_err(|e| {
            ShimError::Internal(format!("cannot listen on {}: {e}", socket.path.display()))
        })?;
        Ok(socket)
    }

    /// Waits in a thread (until [`PendingMaster::take`] or
    /// [`PendingMaster::cancel`]) for the master.
    pub fn receive_in_background(self) -> Result<PendingMaster> {
        let deadline = Instant::now() + MAX_WAIT;
        let path = self.path.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("console".into())
            .spawn(move || self.receive(deadline, &stop))
            .map_err(|e| ShimError::Internal(format!("cannot start a thread: {e}")))?;
        Ok(PendingMaster {
            path,
            cancel,
            thread: Some(thread),
        })
    }

    fn receive(self, deadline: Instant, cancel: &AtomicBool) -> Result<OwnedFd> {
        let failed = |what: String| {
            ShimError::Internal(format!("console socket {}: {what}", self.path.display()))
        };
        let stream = loop {
            if cancel.load(Ordering::SeqCst) {
                return Err(failed("called off".into()));
            }
            if Instant::now() >= deadline {
                return Err(failed("no terminal arrived in time".into()));
            }
            match self.listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let mut fds = [PollFd::new(self.listener.as_fd(), PollFlags::POLLIN)];
                    let _ = poll(&mut fds, TICK.as_millis() as u16);
                }
                Err(e) => return Err(failed(format!("accept: {e}"))),
            }
        };
        stream
            .set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()).max(TICK),
            ))
            .map_err(|e| failed(e.to_string()))?;
        let mut name = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| failed(format!("recvmsg: {e}")))?;
        let mut received: Vec<OwnedFd> = Vec::new();
        for cmsg in msg.cmsgs().map_err(|e| failed(e.to_string()))? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                // SAFETY: SCM_RIGHTS just installed these descriptors in this
                // process; nothing else owns them.
                received.extend(
                    fds.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        if received.len() != 1 {
            return Err(failed(format!(
                "expected one descriptor, got {}",
                received.len()
            )));
        }
        Ok(received.remove(0))
    }
}

impl PendingMaster {
    /// The socket's path, for the sandbox process.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The master, once the sandbox (or exec relay) has reported that it is up
    /// (it has sent the master by then; one that runs no terminal, because its
    /// process.terminal is false, sends none).
    pub fn take(mut self) -> Result<OwnedFd> {
        let deadline = Instant::now() + AFTER_UP;
        let finished = |t: &Option<JoinHandle<_>>| t.as_ref().map_or(true, |t| t.is_finished());
        while !finished(&self.thread) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !finished(&self.thread) {
            self.stop();
            return Err(ShimError::Internal(format!(
                "the sandbox sent no terminal to {} (does the process spec say terminal: true?)",
                self.path.display()
            )));
        }
        self.thread
            .take()
            .ok_or_else(|| ShimError::Internal("the console socket was waited on already".into()))?
            .join()
            .map_err(|_| ShimError::Internal("the console socket's thread panicked".into()))?
    }

    /// Calls the wait off (the sandbox failed) and removes the socket.
    pub fn cancel(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for PendingMaster {
    /// A wait nobody takes (an error on the way) is called off too.
    fn drop(&mut self) {
        self.stop();
    }
}

/// A process's terminal around its start: nothing for a process without one;
/// else the console socket waiting for the master, and what the shim relays it to.
#[derive(Debug)]
pub struct TerminalSetup {
    console: Option<(PendingMaster, TerminalIo)>,
}

impl TerminalSetup {
    /// Listens for the master in `dir` if there is a terminal (`io`).
    pub fn new(io: Option<TerminalIo>, dir: &Path) -> Result<TerminalSetup> {
        let console = match io {
            Some(io) => Some((ConsoleSocket::bind(dir)?.receive_in_background()?, io)),
            None => None,
        };
        Ok(TerminalSetup { console })
    }

    /// The console socket for the sandbox process or exec relay.
    pub fn console_socket(&self) -> Option<PathBuf> {
        self.console.as_ref().map(|(c, _)| c.path().to_owned())
    }

    /// The process did not start: stops listening.
    pub fn cancel(self) {
        if let Some((console, _)) = self.console {
            console.cancel();
        }
    }

    /// The process is up: relays its master; the receiver hears when all its
    /// output has been relayed (`None` without a terminal).
    pub fn relay(self) -> Result<Option<Receiver<()>>> {
        match self.console {
            Some((console, io)) => Ok(Some(relay(console.take()?, io)?)),
            None => Ok(None),
        }
    }
}

/// The shim's side of a terminal: input to the master, output from it.
#[derive(Debug)]
pub struct TerminalIo {
    /// containerd's stdin (`None`: none).
    pub input: Option<OwnedFd>,
    /// containerd's stdout (a fifo, a log file or a logging binary's pipe).
    pub output: OwnedFd,
}

/// Relays `master` to and from `io`; the receiver gets word once all output has
/// been relayed (the terminal's other side is closed: the process and its
/// sandbox or exec relay are gone).
pub fn relay(master: OwnedFd, io: TerminalIo) -> Result<Receiver<()>> {
    let (done_tx, done) = mpsc::channel();
    let reader = master
        .try_clone()
        .map_err(|e| ShimError::Internal(format!("cannot duplicate the terminal: {e}")))?;
    let TerminalIo { input, output } = io;
    spawn("tty-out", move || {
        copy_output(File::from(reader), File::from(output));
        let _ = done_tx.send(());
    })?;
    if let Some(input) = input {
        spawn("tty-in", move || copy_input(input, master))?;
    }
    Ok(done)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(|_| ())
        .map_err(|e| ShimError::Internal(format!("cannot start the terminal relay: {e}")))
}

/// Master to output until the master ends (EIO once the other side is closed).
/// Output nobody takes any more is read and dropped, so that the process never
/// blocks on it.
fn copy_output(mut master: File, mut output: File) {
    let mut buf = vec![0u8; CHUNK];
    let mut writable = true;
    loop {
        match master.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if writable && output.write_all(&buf[..n]).is_err() {
                    tracing::info!("terminal output: its reader is gone; dropping the rest");
                    writable = false;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Input to master until the input ends or the master's other side is closed.
fn copy_input(input: OwnedFd, master: OwnedFd) {
    let mut buf = vec![0u8; CHUNK];
    let mut to = File::from(master);
    let mut from = File::from(input);
    loop {
        let mut fds = [
            PollFd::new(from.as_fd(), PollFlags::POLLIN),
            PollFd::new(to.as_fd(), PollFlags::empty()),
        ];
        match poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(_) => return,
        }
        let gone = PollFlags::POLLHUP | PollFlags::POLLERR;
        if fds[1].revents().is_some_and(|r| r.intersects(gone)) {
            return;
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_runtime::sandbox::process::pty::HostPty;

    #[test]
    fn the_master_arrives_over_the_console_socket() {
        let dir = tempfile::tempdir().unwrap();
        let socket = ConsoleSocket::bind(dir.path()).unwrap();
        let pending = socket.receive_in_background().unwrap();
        let pty = HostPty::open(24, 80).unwrap();
        pty.send_master(pending.path()).unwrap();
        let master = pending.take().unwrap();
        // What the other side writes reaches the received master.
        File::from(pty.slave.try_clone().unwrap())
            .write_all(b"x")
            .unwrap();
        let mut got = [0u8; 1];
        File::from(master).read_exact(&mut got).unwrap();
        assert_eq!(&got, b"x");
        // The socket file is gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_called_off_wait_ends_and_leaves_no_socket() {
        let dir = tempfile::tempdir().unwrap();
        let pending = ConsoleSocket::bind(dir.path())
            .unwrap()
            .receive_in_background()
            .unwrap();
        let started = Instant::now();
        pending.cancel();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_relay_copies_both_ways_and_ends_with_the_terminal() {
        let pty = HostPty::open(24, 80).unwrap();
        let (in_r, in_w) = nix::unistd::pipe().unwrap();
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let done = relay(
            pty.master,
            TerminalIo {
                input: Some(in_r),
                output: out_w,
            },
        )
        .unwrap();
        File::from(in_w).write_all(b"in").unwrap();
        let mut slave = File::from(pty.slave);
        let mut got = [0u8; 2];
        slave.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"in");
        slave.write_all(b"out").unwrap();
        drop(slave);
        done.recv_timeout(Duration::from_secs(10)).unwrap();
        let mut text = String::new();
        File::from(out_r).read_to_string(&mut text).unwrap();
        assert_eq!(text, "out");
    }
}
