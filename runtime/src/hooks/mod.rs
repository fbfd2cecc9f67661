//! OCI hooks (`config.json`'s `hooks`), run on the host at the points of the
//! lifecycle the runtime spec names.
//!
//! Every hook is a host program: `path` with `args` (`args[0]` is its `argv[0]`),
//! `env` (when absent, the runtime's own environment, as runc's Go `exec` does), the
//! container's state JSON on its stdin, and an optional `timeout` in seconds after
//! which its process group is killed. Its stdout and stderr are kept (the last
//! [`OUTPUT_KEEP`] bytes) for the error message.
//!
//! runc runs `createContainer` and `startContainer` in the container's namespaces;
//! husk's container lives in a microVM, so every hook runs on the host, in the
//! runtime's namespaces (see docs/cli.md, "Hooks").

pub(crate) mod error;
pub(crate) mod phase;
#[cfg(test)]
mod tests;

pub use error::HookError;
pub use phase::Phase;

use crate::state::{ContainerState, Status};
use oci_spec::runtime::{Hook, Hooks};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How much of a hook's output is kept for its error message.
pub const OUTPUT_KEEP: usize = 2048;
/// How long, once a hook has exited, its output is waited for (a background child
/// of the hook may hold the pipe open).
const OUTPUT_WAIT: Duration = Duration::from_secs(1);
/// The longest pause between two looks at a running hook.
const POLL_MAX: Duration = Duration::from_millis(20);

/// Checks every hook of `hooks` (absolute path, positive timeout) before anything is
/// started, so that a bad hook fails `create` early.
pub fn validate(hooks: &Hooks) -> Result<(), HookError> {
    for phase in Phase::ALL {
        for (index, hook) in phase.of(hooks).iter().enumerate() {
            if !hook.path().is_absolute() {
                return Err(HookError::RelativePath {
                    phase,
                    index,
                    path: hook.path().clone(),
                });
            }
            if let Some(timeout) = hook.timeout().filter(|t| *t <= 0) {
                return Err(HookError::BadTimeout {
                    phase,
                    index,
                    path: hook.path().clone(),
                    timeout,
                });
            }
        }
    }
    Ok(())
}

/// Runs `phase`'s hooks of the container in order, `status` in the state they are
/// given; stops at the first failure.
pub fn run(state: &ContainerState, phase: Phase, status: Status) -> Result<(), HookError> {
    let Some(hooks) = &state.hooks else {
        return Ok(());
    };
    let input = state_input(state, status);
    for (index, hook) in phase.of(hooks).iter().enumerate() {
        run_hook(phase, index, hook, &input)?;
    }
    Ok(())
}

/// Runs all of `phase`'s hooks of the container; a failure is logged and the next
/// hook runs (the spec's rule for `poststart` and `poststop`).
pub fn run_logged(state: &ContainerState, phase: Phase, status: Status) {
    let Some(hooks) = &state.hooks else {
        return;
    };
    let input = state_input(state, status);
    for (index, hook) in phase.of(hooks).iter().enumerate() {
        if let Err(e) = run_hook(phase, index, hook, &input) {
            tracing::warn!("container {}: {e}", state.id);
        }
    }
}

/// The state JSON a hook gets on its stdin.
fn state_input(state: &ContainerState, status: Status) -> Vec<u8> {
    let mut json = state.to_oci_json(status);
    // The recorded pid, whatever the status: poststop hooks of a stopped container
    // still learn which sandbox process it was.
    if let (Some(obj), Some(pid)) = (json.as_object_mut(), state.pid) {
        obj.insert("pid".into(), pid.into());
    }
    let mut bytes = serde_json::to_vec(&json).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// Runs one hook with `input` on its stdin: success is exit status 0 within the
/// hook's timeout.
pub fn run_hook(phase: Phase, index: usize, hook: &Hook, input: &[u8]) -> Result<(), HookError> {
    let io_err = |context: &'static str| {
        move |source| HookError::Io {
            phase,
            index,
            path: hook.path().clone(),
            context,
            source,
        }
    };
    let (mut child, output) = spawn(hook).map_err(io_err("cannot start it"))?;
    feed(&mut child, input);
    let limit = hook
        .timeout()
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(1)));
    let status = wait(&mut child, limit).map_err(io_err("cannot wait for it"))?;
    let output = match output.recv_timeout(OUTPUT_WAIT) {
        Ok(text) if !text.trim().is_empty() => format!("; output: {}", text.trim_end()),
        _ => String::new(),
    };
    match status {
        None => Err(HookError::TimedOut {
            phase,
            index,
            path: hook.path().clone(),
            secs: hook.timeout().unwrap_or_default(),
            output,
        }),
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(HookError::Failed {
            phase,
            index,
            path: hook.path().clone(),
            status,
            output,
        }),
    }
}

/// Starts the hook in a process group of its own, its stdout and stderr on one
/// pipe read by a thread that sends back the last [`OUTPUT_KEEP`] bytes at its end.
fn spawn(hook: &Hook) -> std::io::Result<(Child, mpsc::Receiver<String>)> {
    let mut cmd = Command::new(hook.path());
    let args = hook.args().as_deref().unwrap_or(&[]);
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for entry in env {
            match entry.split_once('=') {
                Some((k, v)) if !k.is_empty() => cmd.env(k, v),
                _ => cmd.env(entry, ""),
            };
        }
    }
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let reader = std::fs::File::from(reader);
    cmd.stdin(Stdio::piped())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .process_group(0);
    let child = cmd.spawn()?;
    // The parent's copies of the writing end went with `cmd`.
    drop(cmd);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(keep_tail(reader));
    });
    Ok((child, rx))
}

/// Reads `reader` to its end, keeping the last [`OUTPUT_KEEP`] bytes.
fn keep_tail(mut reader: impl Read) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > OUTPUT_KEEP {
            kept.drain(..kept.len() - OUTPUT_KEEP);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// Writes the state to the hook's stdin from a thread (a hook that does not read it
/// must not block the runtime), then closes it.
fn feed(child: &mut Child, input: &[u8]) {
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        std::thread::spawn(move || {
            // EPIPE: the hook exited or closed its stdin without reading; its business.
            let _ = stdin.write_all(&input);
        });
    }
}

/// Waits for the hook to exit, at most `limit`; on expiry its process group is
/// killed and reaped, and `None` returned.
fn wait(child: &mut Child, limit: Option<Duration>) -> std::io::Result<Option<ExitStatus>> {
    let Some(limit) = limit else {
        return child.wait().map(Some);
    };
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            let group = nix::unistd::Pid::from_raw(-(child.id() as i32));
            let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
            let status = child.wait()?;
            tracing::debug!("hook {} killed: {status:?}", child.id());
            return Ok(None);
        }
        // Nothing to block on but the child's exit: look again shortly, never past
        // the deadline.
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(POLL_MAX);
    }
}
