//! Running virtiofsd, the vhost-user backend of a virtio-fs share.
//!
//! One virtiofsd serves one shared directory of one sandbox. [`Virtiofsd::start`]
//! checks what a user can get wrong (the binary, the directory), starts it with its
//! sandboxing on, and waits until its socket takes the VMM's connection or it dies,
//! whichever comes first, within an explicit timeout. The returned handle stops it
//! (and removes its socket) when dropped; [`Virtiofsd::check_exit`] tells whether it
//! died meanwhile, with the end of what it wrote on stderr.
//!
//! With a [`layout::ShareLayout`], the shared directory is assembled from several
//! host paths in virtiofsd's own mount namespace ([`layout`]).

pub mod layout;

use layout::{LayoutError, PreparedLayout, ShareLayout};

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The guest's `trusted.*` and `security.*` extended attributes, kept under
/// `user.virtiofs.` on the host: a guest that sets `security.capability` on a file of
/// a read-write bind gives it file capabilities in its own view only, never to a host
/// user who runs it, and host `trusted.*` attributes stay out of its reach. Every
/// other name (`user.*`, POSIX ACLs) passes as it is.
pub const XATTR_MAP: &str =
    ":prefix:all:trusted.:user.virtiofs.::prefix:all:security.:user.virtiofs.::ok:all:::";
/// The most descriptors one virtiofsd may hold (its own default is about a million,
/// with one per inode the guest looks up when file handles are unavailable), or the
/// VMM's own hard limit where that is lower (virtiofsd cannot raise it past that).
pub const RLIMIT_NOFILE: u64 = 65536;

/// `--rlimit-nofile`'s value: [`RLIMIT_NOFILE`], or this process's hard limit if lower.
fn rlimit_nofile() -> String {
    let hard = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(RLIMIT_NOFILE, |(_, hard)| hard);
    RLIMIT_NOFILE.min(hard).to_string()
}

/// How often the socket is tried while virtiofsd starts.
const CONNECT_RETRY: Duration = Duration::from_millis(5);
/// How long virtiofsd gets to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Lines of virtiofsd's stderr kept for error messages.
const STDERR_LINES: usize = 20;
/// The longest line of virtiofsd's stderr kept or logged, in characters.
const STDERR_LINE_MAX: usize = 512;
/// The most bytes read as one line of virtiofsd's stderr.
const STDERR_READ_MAX: u64 = 4096;
/// How long an exited virtiofsd's last stderr lines may take to be read.
const STDERR_DRAIN: Duration = Duration::from_secs(1);

/// How to start one virtiofsd.
#[derive(Debug, Clone)]
pub struct VirtiofsdConfig {
    /// The virtiofsd binary.
    pub binary: PathBuf,
    /// The directory to share.
    pub shared_dir: PathBuf,
    /// Where its vhost-user socket goes (must not exist yet).
    pub socket: PathBuf,
    /// How long it may take to listen.
    pub start_timeout: Duration,
    /// Its cache policy (`auto`, `always`, `never`, `metadata`).
    pub cache: String,
    /// If set, `shared_dir` is an empty directory on which virtiofsd's private
    /// mount namespace gets a tmpfs holding these host paths.
    pub layout: Option<ShareLayout>,
}

/// Why virtiofsd could not be started, or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum VirtiofsdError {
    /// The binary is not there or not executable.
    #[error("virtiofsd not found at {0} (install it with tests/setup.sh or `cargo install virtiofsd`, or name it with --virtiofsd)")]
    Missing(PathBuf),
    /// The directory to share is missing or not a directory.
    #[error("the shared directory {path} is not a directory")]
    SharedDir {
        /// The directory.
        path: PathBuf,
        /// Why, when the file system said.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The share layout cannot be prepared.
    #[error("the share layout of {path}")]
    Layout {
        /// The shared directory.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: LayoutError,
    },
    /// Its socket path is taken.
    #[error("the virtiofsd socket {0} exists already")]
    SocketExists(PathBuf),
    /// It could not be spawned.
    #[error("cannot start {0}")]
    Spawn(PathBuf, #[source] std::io::Error),
    /// It ended before taking the connection.
    #[error("virtiofsd exited during start-up ({status}){}", stderr_suffix(.stderr))]
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// The end of its stderr.
        stderr: String,
    },
    /// It did not listen in time.
    #[error("virtiofsd did not listen on {socket} within {timeout:?}")]
    Timeout {
        /// The socket it should have created.
        socket: PathBuf,
        /// The limit.
        timeout: Duration,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// A running virtiofsd; stopped when dropped.
#[derive(Debug)]
pub struct Virtiofsd {
    child: Child,
    socket: PathBuf,
    shared_dir: PathBuf,
    stderr: Arc<Mutex<VecDeque<String>>>,
    /// Disconnected once the stderr reader has read to the end.
    stderr_done: Option<mpsc::Receiver<()>>,
    ended: Option<ExitStatus>,
    stopped: bool,
}

impl Virtiofsd {
    /// Starts virtiofsd and returns it with the VMM's connection to its socket.
    pub fn start(config: &VirtiofsdConfig) -> Result<(Virtiofsd, UnixStream), VirtiofsdError> {
        if !is_executable(&config.binary) {
            return Err(VirtiofsdError::Missing(config.binary.clone()));
        }
        match std::fs::metadata(&config.shared_dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(VirtiofsdError::SharedDir {
                    path: config.shared_dir.clone(),
                    source: None,
                })
            }
            Err(e) => {
                return Err(VirtiofsdError::SharedDir {
                    path: config.shared_dir.clone(),
                    source: Some(e),
                })
            }
        }
        if config.socket.symlink_metadata().is_ok() {
            return Err(VirtiofsdError::SocketExists(config.socket.clone()));
        }
        let layout = match &config.layout {
            Some(layout) => Some(PreparedLayout::new(&config.shared_dir, layout).map_err(
                |source| VirtiofsdError::Layout {
                    path: config.shared_dir.clone(),
                    source,
                },
            )?),
            None => None,
        };
        let mut command = Command::new(&config.binary);
        command
            .arg("--socket-path")
            .arg(&config.socket)
            .arg("--shared-dir")
            .arg(&config.shared_dir)
            .args([
                "--sandbox",
                "namespace",
                "--xattr",
                "--xattrmap",
                XATTR_MAP,
                "--inode-file-handles=prefer",
                "--rlimit-nofile",
                &rlimit_nofile(),
                "--cache",
                &config.cache,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: with `--sandbox namespace` the process that
            // serves is a child of the one started here, and outlives it if only the
            // parent is signalled.
            .process_group(0);
        // SAFETY: the closure only calls close_range, sigprocmask, prctl and the
        // layout's unshare, mount, mkdir and open on strings prepared before the fork:
        // system calls, which are async-signal-safe; nothing allocates.
        unsafe {
            command.pre_exec(move || {
                close_inherited_at_exec()?;
                if let Some(layout) = &layout {
                    layout.apply().map_err(std::io::Error::from)?;
                }
                // The VMM blocks its stop signals; virtiofsd must still take SIGTERM.
                nix::sys::signal::SigSet::empty()
                    .thread_set_mask()
                    .map_err(std::io::Error::from)?;
                // Die with the VMM even if it is killed outright.
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .spawn()
            .map_err(|e| VirtiofsdError::Spawn(config.binary.clone(), e))?;
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_done = child.stderr.take().map(|pipe| {
            let lines = Arc::clone(&stderr);
            let (done, done_rx) = mpsc::channel::<()>();
            std::thread::spawn(move || {
                keep_stderr(pipe, &lines);
                drop(done);
            });
            done_rx
        });
        let mut daemon = Virtiofsd {
            child,
            socket: config.socket.clone(),
            shared_dir: config.shared_dir.clone(),
            stderr,
            stderr_done,
            ended: None,
            stopped: false,
        };
        let stream = daemon.connect(config.start_timeout)?;
        Ok((daemon, stream))
    }

    /// Connects once virtiofsd listens, or fails when it exits or time runs out.
    fn connect(&mut self, timeout: Duration) -> Result<UnixStream, VirtiofsdError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.check_exit() {
                // Its last words may still be in the pipe: let the reader reach the
                // end (bounded: a lingering sandboxed child may hold the pipe open).
                if let Some(done) = self.stderr_done.take() {
                    let _ = done.recv_timeout(STDERR_DRAIN);
                }
                return Err(VirtiofsdError::Exited {
                    status,
                    stderr: self.stderr_tail(),
                });
            }
            match UnixStream::connect(&self.socket) {
                Ok(stream) => return Ok(stream),
                Err(_) if Instant::now() < deadline => std::thread::sleep(CONNECT_RETRY),
                Err(_) => {
                    return Err(VirtiofsdError::Timeout {
                        socket: self.socket.clone(),
                        timeout,
                    })
                }
            }
        }
    }

    /// virtiofsd's process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The directory it shares.
    pub fn shared_dir(&self) -> &Path {
        &self.shared_dir
    }

    /// How virtiofsd ended, if it did (it is reaped here).
    pub fn check_exit(&mut self) -> Option<ExitStatus> {
        if self.ended.is_none() {
            self.ended = self.child.try_wait().ok().flatten();
        }
        self.ended
    }

    /// Waits up to `timeout` for virtiofsd to end (after its VMM connection closed,
    /// for instance) and tells how it ended.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.check_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(CONNECT_RETRY);
        }
    }

    /// The last lines virtiofsd wrote on stderr, joined with `; `.
    pub fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        lines.iter().cloned().collect::<Vec<_>>().join("; ")
    }

    /// Stops virtiofsd, every process of it: SIGTERM to its process group, then
    /// SIGKILL to what is left after a grace period. Removes the socket.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let group = nix::unistd::Pid::from_raw(-(self.child.id() as i32));
        use nix::sys::signal::{kill, Signal};
        if self.check_exit().is_none() {
            let _ = kill(group, Signal::SIGTERM);
            self.wait_exit(STOP_GRACE);
        }
        // The group outlives its leader when the sandboxed child lingers. The
        // leader is not reaped yet unless it ended on its own, so the group id is
        // still reserved.
        let _ = kill(group, Signal::SIGKILL);
        if self.ended.is_none() {
            self.ended = self.child.wait().ok();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Virtiofsd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Keeps the last [`STDERR_LINES`] lines of virtiofsd's stderr (each printable and
/// at most [`STDERR_LINE_MAX`] characters) and logs them, at most 20 at once and 5 a
/// second: the guest can make virtiofsd complain (about the files it asks for), and
/// its lines must not flood the sandbox log.
fn keep_stderr(pipe: impl Read, lines: &Mutex<VecDeque<String>>) {
    let limiter = crate::rate_limit::RateLimiter::new(20, 5);
    let mut reader = BufReader::new(pipe);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        // One line, read at most a bound past the kept length; the rest of a longer
        // line is read and dropped.
        match (&mut reader)
            .take(STDERR_READ_MAX)
            .read_until(b'\n', &mut raw)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if raw.last() != Some(&b'\n') {
            skip_line(&mut reader);
        }
        let text = String::from_utf8_lossy(&raw);
        let line = husk_protocol::text::printable(text.trim_end_matches('\n'), STDERR_LINE_MAX);
        if let crate::rate_limit::Verdict::Log { suppressed } = limiter.check() {
            if suppressed > 0 {
                tracing::info!("virtiofsd: {line} ({suppressed} lines dropped before this one)");
            } else {
                tracing::info!("virtiofsd: {line}");
            }
        }
        let mut lines = lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == STDERR_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }
}

/// Reads and drops the rest of a line (to its newline or the end of input).
fn skip_line(reader: &mut impl BufRead) {
    loop {
        let Ok(buf) = reader.fill_buf() else { return };
        if buf.is_empty() {
            return;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(at) => {
                reader.consume(at + 1);
                return;
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Finds virtiofsd: on `PATH`, then where Debian's qemu packages put it.
pub fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("virtiofsd"));
    on_path
        .chain([PathBuf::from("/usr/libexec/virtiofsd")])
        .find(|p| is_executable(p))
}

/// Marks every descriptor from 3 up close-on-exec, so that nothing the VMM inherited
/// (an engine's pipes, preserved descriptors) reaches a program it starts. Marking
/// rather than closing keeps std's own exec-error pipe working. Async-signal-safe: one
/// system call, for `pre_exec`.
fn close_inherited_at_exec() -> std::io::Result<()> {
    // SAFETY: close_range takes plain integers and touches no memory of ours.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
