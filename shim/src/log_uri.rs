//! containerd's stdio URIs (its "log drivers"), as its runc shim reads them: the
//! stdout path decides for stdout and stderr together.
//!
//! - a plain path: a fifo (see [`crate::stdio`]);
//! - `file:///path`: stdout and stderr appended to the file (created 0644, its
//!   directory 0755 if missing);
//! - `binary:///path?key=value&flag`: a logging binary, started with the query as
//!   arguments (`key value flag ""`, in the URI's order), the environment
//!   `CONTAINER_ID` and `CONTAINER_NAMESPACE` and nothing else, the reading ends of
//!   the stdout and stderr pipes as descriptors 3 and 4 and a ready pipe as
//!   descriptor 5, which it closes (or writes to) once it is ready. It is stopped
//!   (SIGTERM, then SIGKILL) when the process it logs is deleted.

use crate::error::{Result, ShimError};
use crate::exit::{watch_pid, ExitCell, Exited};
use containerd_shim::monitor::{monitor_subscribe, Topic};
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a logging binary may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a logging binary may take to exit after SIGTERM (containerd's runc shim
/// gives it 10 s too), and after SIGKILL.
const TERM_WAIT: Duration = Duration::from_secs(10);
const KILL_WAIT: Duration = Duration::from_secs(5);
/// The longest URI accepted, and the most query arguments.
const MAX_URI: usize = 4096;
const MAX_ARGS: usize = 64;

/// Where a process's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// containerd's fifos (stdout and stderr paths as given).
    Fifo,
    /// Appended to a file.
    File(PathBuf),
    /// Piped to a logging binary.
    Binary {
        /// The binary.
        path: PathBuf,
        /// Its arguments, from the URI's query.
        args: Vec<String>,
    },
}

fn bad(uri: &str, message: impl Into<String>) -> ShimError {
    ShimError::Stdio {
        path: uri.chars().take(256).collect(),
        message: message.into(),
    }
}

/// Reads the stdout path containerd gave.
pub fn destination(stdout: &str) -> Result<Destination> {
    let Some((scheme, rest)) = stdout.split_once("://") else {
        return Ok(Destination::Fifo);
    };
    let is_scheme = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !is_scheme {
        return Ok(Destination::Fifo);
    }
    if stdout.len() > MAX_URI {
        return Err(bad(stdout, format!("longer than {MAX_URI} bytes")));
    }
    let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
    // No fragment: a '#' is part of the path, as nothing else would make sense here.
    let Some(path) = location.strip_prefix('/') else {
        return Err(bad(
            stdout,
            format!("needs an absolute path and no host ({scheme}:///path)"),
        ));
    };
    let path = PathBuf::from(format!(
        "/{}",
        decode(path, false).map_err(|m| bad(stdout, m))?
    ));
    match scheme.to_ascii_lowercase().as_str() {
        "file" => Ok(Destination::File(path)),
        "binary" => Ok(Destination::Binary {
            path,
            args: query_args(query).map_err(|m| bad(stdout, m))?,
        }),
        other => Err(bad(
            stdout,
            format!("unknown stdio URI scheme \"{other}\" (husk takes fifo paths, file:// and binary://)"),
        )),
    }
}

/// The query as arguments: each `key=value` as `key value`, a bare `key` as
/// `key ""` (as containerd's runc shim passes them).
fn query_args(query: &str) -> std::result::Result<Vec<String>, String> {
    let mut args = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        args.push(decode(key, true)?);
        args.push(decode(value, true)?);
        if args.len() > 2 * MAX_ARGS {
            return Err(format!("more than {MAX_ARGS} query arguments"));
        }
    }
    Ok(args)
}

/// Percent-decoding (and `+` as a space in a query).
fn decode(text: &str, plus_is_space: bool) -> std::result::Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in \"{text}\""))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    let s = String::from_utf8(out).map_err(|_| format!("\"{text}\" is not UTF-8"))?;
    if s.contains('\0') {
        return Err(format!("\"{text}\" holds a NUL byte"));
    }
    Ok(s)
}

/// Opens `path` for appending (creating it and its directory).
pub fn open_file(path: &Path) -> Result<OwnedFd> {
    let name = path.display().to_string();
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| bad(&name, format!("cannot create its directory: {e}")))?;
    }
    open(
        path,
        OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(|e| bad(&name, format!("cannot open for appending: {e}")))
}

/// A running logging binary (a child of the shim, reaped by the crate's reaper).
#[derive(Debug)]
pub struct Logger {
    path: PathBuf,
    pid: u32,
    exit: Arc<ExitCell>,
}

/// A started logging binary and the writing ends of its stdout and stderr pipes.
#[derive(Debug)]
pub struct StartedLogger {
    /// The binary.
    pub logger: Logger,
    /// What the process writes its stdout to.
    pub stdout: OwnedFd,
    /// What the process writes its stderr to.
    pub stderr: OwnedFd,
}

fn pipe(what: &str) -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| ShimError::Internal(format!("cannot create the {what} pipe: {e}")))
}

/// A close-on-exec copy of `fd` numbered 10 or above (so that placing the copies at
/// 3, 4 and 5 in the child cannot overwrite one another).
fn high_copy(fd: &OwnedFd) -> Result<OwnedFd> {
    let raw = fcntl(fd, FcntlArg::F_DUPFD_CLOEXEC(10))
        .map_err(|e| ShimError::Internal(format!("cannot duplicate a pipe: {e}")))?;
    // SAFETY: F_DUPFD_CLOEXEC just returned this new descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

impl Logger {
    /// Starts `path` with `args` for the process of container `id` in `namespace`
    /// and waits (bounded) until it is ready.
    pub fn start(path: &Path, args: &[String], id: &str, namespace: &str) -> Result<StartedLogger> {
        let name = path.display().to_string();
        let (out_r, out_w) = pipe("stdout")?;
        let (err_r, err_w) = pipe("stderr")?;
        let (ready_r, ready_w) = pipe("ready")?;
        let passed = [high_copy(&out_r)?, high_copy(&err_r)?, high_copy(&ready_w)?];
        let raw: Vec<i32> = passed.iter().map(|fd| fd.as_raw_fd()).collect();
        let mut cmd = Command::new(path);
        cmd.args(args)
            .env_clear()
            .env("CONTAINER_ID", id)
            .env("CONTAINER_NAMESPACE", namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let place = move || {
            for (target, fd) in (3..).zip(raw.iter()) {
                // SAFETY: dup2 on descriptors the parent keeps open until spawn
                // returns; it is async-signal-safe and touches no memory of ours.
                if unsafe { nix::libc::dup2(*fd, target) } < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        };
        // SAFETY: the closure runs in the forked child before exec and only calls
        // dup2 (async-signal-safe), which clears close-on-exec on the copies at 3,
        // 4 and 5; it allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(place);
        }
        let subscription = monitor_subscribe(Topic::Pid)
            .map_err(|e| ShimError::Internal(format!("cannot watch for exits: {e}")))?;
        let child = cmd
            .spawn()
            .map_err(|e| bad(&name, format!("cannot start the logging binary: {e}")))?;
        drop(passed);
        drop((out_r, err_r, ready_w));
        let pid = child.id();
        // The crate's reaper reaps it; the watcher records its exit.
        drop(child);
        let exit = Arc::new(ExitCell::default());
        let logger = Logger {
            path: path.to_owned(),
            pid,
            exit: exit.clone(),
        };
        watch_pid(subscription, pid, exit, |_| |_: &Exited| {})
            .map_err(|e| ShimError::Internal(format!("cannot watch the logging binary: {e}")))?;
        // On failure, dropping the logger stops it.
        wait_ready(&ready_r, &logger).map_err(|e| bad(&name, e))?;
        tracing::info!("logging binary {name} ready (pid {pid})");
        Ok(StartedLogger {
            logger,
            stdout: out_w,
            stderr: err_w,
        })
    }

    /// Stops the binary: SIGTERM, then SIGKILL if it is still there after
    /// [`TERM_WAIT`]. Its pipes' writers should be gone already, so that it has
    /// read everything.
    pub fn stop(&self) {
        if self.exit.get().is_some() {
            return;
        }
        let pid = Pid::from_raw(self.pid as i32);
        let _ = kill(pid, Signal::SIGTERM);
        if self.exit.wait(Some(TERM_WAIT)).is_some() {
            return;
        }
        tracing::warn!(
            "logging binary {} (pid {}) ignored SIGTERM for {TERM_WAIT:?}; killing it",
            self.path.display(),
            self.pid
        );
        let _ = kill(pid, Signal::SIGKILL);
        if self.exit.wait(Some(KILL_WAIT)).is_none() {
            tracing::error!("logging binary pid {} did not die of SIGKILL", self.pid);
        }
    }
}

impl Drop for Logger {
    /// A logger nobody holds any more (a failed Create, a deleted process) is
    /// stopped.
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the ready pipe is written to or closed by every writer.
fn wait_ready(ready: &OwnedFd, logger: &Logger) -> std::result::Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(exited) = logger.exit.get() {
            // It may have closed the pipe and exited at once: still ready.
            if poll_in(ready, Duration::ZERO) {
                return Ok(());
            }
            return Err(format!(
                "the logging binary exited with status {} before it was ready",
                exited.status
            ));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the logging binary did not close its ready descriptor (5) within {READY_TIMEOUT:?}"
            ));
        }
        if poll_in(ready, left.min(Duration::from_millis(100))) {
            return Ok(());
        }
    }
}

/// Whether `fd` is readable (or at end of file) within `limit`.
fn poll_in(fd: &OwnedFd, limit: Duration) -> bool {
    let mut fds = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(limit.as_millis()).unwrap_or(u16::MAX);
    matches!(nix::poll::poll(&mut fds, ms), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_are_fifos() {
        for p in ["/run/containerd/fifo/1/c-stdout", "", "/odd/a:b"] {
            assert_eq!(destination(p).unwrap(), Destination::Fifo, "{p}");
        }
    }

    #[test]
    fn file_and_binary_uris_are_read() {
        assert_eq!(
            destination("file:///var/log/c%201.log").unwrap(),
            Destination::File("/var/log/c 1.log".into())
        );
        assert_eq!(
            destination("binary:///usr/bin/logger?level=debug&verbose&tag=a+b").unwrap(),
            Destination::Binary {
                path: "/usr/bin/logger".into(),
                args: ["level", "debug", "verbose", "", "tag", "a b"]
                    .map(String::from)
                    .to_vec(),
            }
        );
    }

    #[test]
    fn bad_uris_are_named() {
        let err = destination("syslog:///x").unwrap_err().to_string();
        assert!(err.contains("unknown stdio URI scheme \"syslog\""), "{err}");
        let err = destination("binary://host/bin").unwrap_err().to_string();
        assert!(err.contains("absolute path"), "{err}");
        let err = destination("file:///a%zz").unwrap_err().to_string();
        assert!(err.contains("percent escape"), "{err}");
        let err = destination("file:///a%00b").unwrap_err().to_string();
        assert!(err.contains("NUL"), "{err}");
    }

    #[test]
    fn files_are_created_and_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/c.log");
        std::fs::File::from(open_file(&path).unwrap())
            .write_all(b"one\n")
            .unwrap();
        std::fs::File::from(open_file(&path).unwrap())
            .write_all(b"two\n")
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    use std::io::Write;
}
