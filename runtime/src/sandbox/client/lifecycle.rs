//! The runtime commands' side of the sandbox: start the sandbox process at `create`,
//! and reach the agent through the sandbox's vsock socket for the rest.

use super::pod::{self, share::PodShare};
use crate::agent::{AgentClient, ClientError, Timeouts};
use crate::error::RuntimeError;
use crate::sandbox::console_log::log_tail;
use crate::sandbox::guest_spec::{self, GuestSpec, Placement};
use crate::sandbox::plan::{read_report, Report, Reporter, SandboxPlan, REPORT_FD_ENV};
use crate::sandbox::plan::{EXEC_COMMAND, SANDBOX_COMMAND};
use crate::sandbox::process::exec_relay::{self, ExecPlan, RelayTask, EXEC_PLAN_ENV};
use crate::sandbox::process::vm::VmPlan;
use crate::sandbox::share::GUEST_SHARE;
use crate::sandbox::timings::{monotonic_us, StartTimings, START_LINE};
use crate::state::{process_start_time, ProcessState};
use crate::state::{ContainerState, Store};
use husk_protocol::procfs::Stat;
use husk_protocol::AGENT_PORT;
use nix::sys::signal::{kill as send_signal, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Slack on top of the boot timeout for the sandbox's own start-up.
const REPORT_SLACK: Duration = Duration::from_secs(10);
/// The vsock device waits this much longer than the agent client for a guest to
/// accept a connection: the client's own timeout, which names what it waited for,
/// fires first.
const CONNECT_SLACK: Duration = Duration::from_secs(1);
/// How long `delete` waits for a killed sandbox process to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// The descriptors a sandbox process gets as its stdin, stdout and stderr, which
/// carry the container's stdio (the shim's fifos, say).
#[derive(Debug)]
pub struct SandboxStdio {
    /// The container's stdin.
    pub stdin: OwnedFd,
    /// The container's stdout.
    pub stdout: OwnedFd,
    /// The container's stderr.
    pub stderr: OwnedFd,
}

/// `create`'s options that concern the sandbox process.
#[derive(Debug, Default)]
pub struct CreateOptions {
    /// Where the engine wants the terminal's master.
    pub console_socket: Option<PathBuf>,
    /// Where to write the sandbox process's PID.
    pub pid_file: Option<PathBuf>,
    /// Descriptors 3 .. 3+N kept open (in the sandbox process; they do not reach the
    /// guest).
    pub preserve_fds: u32,
    /// The sandbox process's stdio; `None`: this process's own (the CLI's case).
    pub stdio: Option<SandboxStdio>,
}

/// `exec`'s options.
#[derive(Debug)]
pub struct ExecOptions {
    /// The OCI `process` object.
    pub process: serde_json::Value,
    /// A terminal for the process (also `process.terminal`).
    pub tty: bool,
    /// Return once it runs, leaving a relay process behind.
    pub detach: bool,
    /// Where to write the PID of the process that lives as long as the exec'd one.
    pub pid_file: Option<PathBuf>,
    /// Where the engine wants the terminal's master.
    pub console_socket: Option<PathBuf>,
    /// Descriptors kept open (not passed into the guest).
    pub preserve_fds: u32,
    /// The detached relay's stdio; `None`: this process's own (the CLI's case).
    pub stdio: Option<SandboxStdio>,
    /// The process's id in the guest; `None`: one is made up.
    pub exec_id: Option<String>,
}

fn timeouts(state: &ContainerState) -> Timeouts {
    Timeouts {
        connect: state.config.request_timeout,
        request: state.config.request_timeout,
    }
}

/// Connects to the agent of `state`'s VM and asks it `request`, on behalf of
/// `action` (`start`, `kill`, ...). Every failure is a [`RuntimeError::Agent`]; when
/// the VM runs but its agent does not answer, it carries what the guest console and
/// the sandbox log said last, the best lead.
pub(crate) fn ask<T>(
    store: &Store,
    state: &ContainerState,
    action: &'static str,
    request: impl FnOnce(&mut AgentClient) -> Result<T, ClientError>,
) -> Result<T, RuntimeError> {
    let dir = store.dir(state.vm_id());
    let vsock = VmPlan::vsock_path(&dir);
    AgentClient::connect(&vsock, AGENT_PORT, timeouts(state))
        .and_then(|mut client| request(&mut client))
        .map_err(|cause| {
            let mut e = RuntimeError::agent(action, &state.id, cause);
            if let RuntimeError::Agent { source, .. } = &mut e {
                if matches!(
                    source.cause,
                    ClientError::ConnectRefused { .. }
                        | ClientError::Timeout { .. }
                        | ClientError::Closed { .. }
                ) {
                    source.last_words = log_tail(&dir.join("console.log"), "guest console")
                        + &log_tail(&dir.join("sandbox.log"), "sandbox log");
                }
            }
            e
        })
}

/// Starts `husk <command> <args>` with `stdio` (or this process's own) and a report
/// pipe whose writing end sits above the preserved descriptors; gives back the child
/// and the pipe's reading end.
fn spawn_reporting(
    command: &str,
    args: &[&std::ffi::OsStr],
    env: &[(&str, String)],
    preserve_fds: u32,
    stdio: Option<&SandboxStdio>,
) -> Result<(Child, OwnedFd), RuntimeError> {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| RuntimeError::io("create the report pipe", e.into()))?;
    // A copy without close-on-exec, above the preserved descriptors, for the child
    // alone: this command starts nothing else meanwhile, and closes it at once.
    let floor = 3 + preserve_fds as i32 + 1;
    let inheritable = nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_DUPFD(floor))
        .map_err(|e| RuntimeError::io("duplicate the report pipe", e.into()))?;
    // SAFETY: F_DUPFD just returned this new descriptor; nothing else owns it.
    let inheritable = unsafe { OwnedFd::from_raw_fd(inheritable) };
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(command).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env(REPORT_FD_ENV, inheritable.as_raw_fd().to_string());
    if let Some(stdio) = stdio {
        let copy = |fd: &OwnedFd, name: &str| {
            fd.try_clone()
                .map(std::process::Stdio::from)
                .map_err(|e| RuntimeError::io(format!("duplicate the sandbox's {name}"), e))
        };
        cmd.stdin(copy(&stdio.stdin, "stdin")?)
            .stdout(copy(&stdio.stdout, "stdout")?)
            .stderr(copy(&stdio.stderr, "stderr")?);
    }
    let child = cmd
        .spawn()
        .map_err(|e| RuntimeError::io("start the sandbox process (/proc/self/exe)", e))?;
    drop(inheritable);
    drop(write);
    Ok((child, read))
}

/// Writes `pid` to `path` atomically, as runc does: a temporary file beside it,
/// created exclusively (a file or symlink already at that name, planted by another
/// local user say, is refused rather than followed or truncated), then renamed over
/// `path` (which replaces whatever is there, a symlink included, without following
/// it).
pub(crate) fn write_pid_file(path: &Path, pid: u32) -> Result<(), RuntimeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.husk-tmp"));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .and_then(|mut file| {
            let written = file.write_all(pid.to_string().as_bytes());
            written
                .and_then(|()| std::fs::rename(&tmp, path))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })
        });
    written.map_err(|e| RuntimeError::io(format!("write the pid file {}", path.display()), e))
}

/// Waits for a started child's report; a child that failed or did not report in
/// time is killed and reaped.
fn await_report(
    mut child: Child,
    report: OwnedFd,
    timeout: Duration,
) -> Result<(Child, u32, Option<StartTimings>), RuntimeError> {
    let failure = match read_report(report, timeout) {
        Ok(Report::Up { guest_pid, timings }) => return Ok((child, guest_pid, timings)),
        Ok(Report::Failed(msg)) => RuntimeError::SandboxReport(msg),
        Err(e) => RuntimeError::Sandbox(e),
    };
    let _ = child.kill();
    let _ = child.wait();
    Err(failure)
}

/// Boots the sandbox for a container whose state (status Creating) is in the store,
/// and records the sandbox process in `state`.
pub fn create(
    store: &Store,
    state: &mut ContainerState,
    spec: &oci_spec::runtime::Spec,
    opts: &CreateOptions,
) -> Result<(), RuntimeError> {
    let began = monotonic_us();
    let role = pod::role(&state.id, &state.annotations);
    if let pod::Role::Member { sandbox } = &role {
        return pod::member::create(store, state, spec, opts, sandbox);
    }
    let dir = store.dir(&state.id);
    VmPlan::check_socket_paths(&dir).map_err(RuntimeError::InvalidArgument)?;
    let placement = Placement::OwnVm {
        pod: role == pod::Role::Sandbox,
    };
    let GuestSpec {
        spec,
        binds,
        network,
    } = guest_spec::for_guest(spec, &state.bundle, GUEST_SHARE, placement)?;
    let config = &state.config;
    let mut plan = SandboxPlan {
        id: state.id.clone(),
        vm: VmPlan {
            kernel: config.kernel.clone(),
            initramfs: config.initramfs.clone(),
            vcpus: config.vcpus,
            memory_mib: config.memory_mib,
            virtiofsd: config.virtiofsd.clone(),
            virtiofsd_timeout: config.virtiofsd_timeout,
            rootfs: state.rootfs.clone(),
            binds,
            dir: dir.clone(),
            network,
            pod_share: None,
            vsock_connect_timeout: config.request_timeout + CONNECT_SLACK,
        },
        spec,
        console_socket: opts.console_socket.clone(),
        boot_timeout: config.boot_timeout,
        request_timeout: config.request_timeout,
    };
    if role == pod::Role::Sandbox {
        let share = PodShare::of(&dir);
        share.create().map_err(RuntimeError::PodShare)?;
        plan.vm.pod_share = Some(share.dir().to_path_buf());
    }
    let plan_path = dir.join("sandbox.json");
    let text = serde_json::to_vec_pretty(&plan).map_err(|source| RuntimeError::Encode {
        what: "the sandbox plan",
        source,
    })?;
    std::fs::write(&plan_path, text)
        .map_err(|e| RuntimeError::io(format!("write {}", plan_path.display()), e))?;
    let (child, report) = spawn_reporting(
        SANDBOX_COMMAND,
        &[dir.as_os_str()],
        &[],
        opts.preserve_fds,
        opts.stdio.as_ref(),
    )?;
    // Boot, then the container's creation and its three stdio streams.
    let wait =
        config.boot_timeout + config.virtiofsd_timeout + config.request_timeout * 4 + REPORT_SLACK;
    let (child, guest_pid, timings) = await_report(child, report, wait)?;
    if let Some(timings) = timings {
        tracing::debug!("{}", timings.describe(began));
    }
    record_process(state, child, guest_pid, opts.pid_file.as_deref())
}

/// Records a started process that stands for the container (a sandbox process, or
/// a pod member's relay) in `state` and in the engine's pid file. It outlives this
/// command: the engine (or init) reaps it.
pub(super) fn record_process(
    state: &mut ContainerState,
    child: Child,
    guest_pid: u32,
    pid_file: Option<&Path>,
) -> Result<(), RuntimeError> {
    let pid = child.id();
    state.pid = Some(pid as i32);
    state.pid_start_time = match process_start_time(pid as i32) {
        ProcessState::Alive { start_time } => Some(start_time),
        _ => None,
    };
    state.guest_pid = Some(guest_pid);
    if let Some(path) = pid_file {
        write_pid_file(path, pid)?;
    }
    std::mem::forget(child);
    Ok(())
}

/// Lets the container's process run.
pub fn start(store: &Store, state: &mut ContainerState) -> Result<(), RuntimeError> {
    let began = monotonic_us();
    ask(store, state, "start", |a| a.start_container(&state.id))?;
    let now = monotonic_us();
    tracing::debug!(
        "{START_LINE} in {:.1} ms (monotonic_ms={:.3})",
        now.saturating_sub(began) as f64 / 1000.0,
        now as f64 / 1000.0
    );
    Ok(())
}

/// Sends `signal` to the container's process. `all` is accepted: the agent signals
/// the container's own process (its exec'd processes get theirs from their relays).
pub fn kill(
    store: &Store,
    state: &ContainerState,
    signal: i32,
    _all: bool,
) -> Result<(), RuntimeError> {
    ask(store, state, "kill", |a| a.signal(&state.id, None, signal))
}

/// Runs another process in the container; its exit code when attached, 0 when
/// detached.
pub fn exec(
    store: &Store,
    state: &ContainerState,
    opts: &ExecOptions,
) -> Result<i32, RuntimeError> {
    let plan = exec_plan(store, state, opts);
    if !opts.detach {
        if let Some(path) = &opts.pid_file {
            write_pid_file(path, std::process::id())?;
        }
        return exec_relay::run(&plan, &mut Reporter::none()).map_err(RuntimeError::Sandbox);
    }
    let pid = spawn_exec_relay(state, &plan, opts)?;
    if let Some(path) = &opts.pid_file {
        write_pid_file(path, pid)?;
    }
    Ok(0)
}

/// Runs another process in the container through a detached exec relay (`__exec`)
/// with `opts.stdio`; gives the relay's pid: it lives as long as the process and
/// exits with its status. The caller reaps it.
pub fn exec_detached(
    store: &Store,
    state: &ContainerState,
    opts: &ExecOptions,
) -> Result<u32, RuntimeError> {
    spawn_exec_relay(state, &exec_plan(store, state, opts), opts)
}

/// What an exec relay is handed for `opts`.
fn exec_plan(store: &Store, state: &ContainerState, opts: &ExecOptions) -> ExecPlan {
    let mut process = opts.process.clone();
    if opts.tty {
        if let Some(obj) = process.as_object_mut() {
            obj.insert("terminal".into(), serde_json::Value::Bool(true));
        }
    }
    ExecPlan {
        vsock: VmPlan::vsock_path(&store.dir(state.vm_id())),
        container_id: state.id.clone(),
        task: RelayTask::Exec {
            exec_id: opts
                .exec_id
                .clone()
                .unwrap_or_else(|| format!("exec-{}-{}", std::process::id(), unique())),
            process,
        },
        console_socket: opts.console_socket.clone(),
        request_timeout: state.config.request_timeout,
    }
}

fn spawn_exec_relay(
    state: &ContainerState,
    plan: &ExecPlan,
    opts: &ExecOptions,
) -> Result<u32, RuntimeError> {
    let (child, _) = spawn_relay(
        plan,
        opts.preserve_fds,
        opts.stdio.as_ref(),
        state.config.request_timeout,
    )?;
    let pid = child.id();
    std::mem::forget(child);
    Ok(pid)
}

/// Starts a relay process (`__exec`) for `plan` with `stdio` and waits for its
/// report; gives back the relay and the guest PID of what it started.
pub(super) fn spawn_relay(
    plan: &ExecPlan,
    preserve_fds: u32,
    stdio: Option<&SandboxStdio>,
    request_timeout: Duration,
) -> Result<(Child, u32), RuntimeError> {
    let json = serde_json::to_string(plan).map_err(|source| RuntimeError::Encode {
        what: "the exec plan",
        source,
    })?;
    let (child, report) = spawn_reporting(
        EXEC_COMMAND,
        &[],
        &[(EXEC_PLAN_ENV, json)],
        preserve_fds,
        stdio,
    )?;
    // Creating a container takes a request more than an exec.
    let (child, guest_pid, _) = await_report(child, report, request_timeout * 2 + REPORT_SLACK)?;
    Ok((child, guest_pid))
}

/// Sends `signal` to exec'd process `exec_id` of the container.
pub fn kill_exec(
    store: &Store,
    state: &ContainerState,
    exec_id: &str,
    signal: i32,
) -> Result<(), RuntimeError> {
    ask(store, state, "signal a process of", |a| {
        a.signal(&state.id, Some(exec_id), signal)
    })
}

/// Sets the window size of the terminal of the container's process (`exec_id`:
/// of that exec'd process instead).
pub fn resize_tty(
    store: &Store,
    state: &ContainerState,
    exec_id: Option<&str>,
    rows: u16,
    cols: u16,
) -> Result<(), RuntimeError> {
    ask(store, state, "resize the terminal of", |a| {
        a.resize_tty(&state.id, exec_id, rows, cols)
    })
}

/// A number unlikely to repeat within one container.
fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Guest PIDs of the container's processes.
pub fn ps(store: &Store, state: &ContainerState) -> Result<Vec<u32>, RuntimeError> {
    let pids = ask(store, state, "list the processes of", |a| {
        a.processes(&state.id)
    })?;
    Ok(pids
        .into_iter()
        .filter_map(|p| u32::try_from(p).ok())
        .collect())
}

/// Stops the VM and everything the sandbox runs: kills the sandbox process (if it is
/// still the one recorded) and a virtiofsd it left behind. Idempotent.
pub fn destroy(store: &Store, state: &ContainerState) -> Result<(), RuntimeError> {
    if let (Some(pid), recorded) = (state.pid, state.pid_start_time) {
        if let ProcessState::Alive { start_time } = process_start_time(pid) {
            if recorded.map_or(true, |t| t == start_time) {
                let _ = send_signal(Pid::from_raw(pid), Signal::SIGKILL);
                wait_gone(pid)?;
            }
        }
    }
    if let Some(sandbox) = &state.pod {
        return pod::member::destroy(store, state, sandbox);
    }
    // virtiofsd runs in a process group of its own whose id the sandbox recorded;
    // its sandboxed child may outlive the group's leader.
    let dir = store.dir(&state.id);
    let group: Option<i32> = std::fs::read_to_string(dir.join("virtiofsd.pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    if let Some(group) = group {
        for pid in virtiofsd_in_group(group) {
            let _ = send_signal(Pid::from_raw(pid), Signal::SIGKILL);
            wait_gone(pid)?;
        }
    }
    // A pod's member directory (its members' mounts went with their deletes).
    PodShare::of(&dir)
        .destroy()
        .map_err(RuntimeError::PodShare)?;
    // What a killed sandbox process could not undo on the veth (its tap went with it).
    crate::network::detach(&dir).map_err(RuntimeError::Network)?;
    Ok(())
}

/// The processes named virtiofsd in process group `group`.
fn virtiofsd_in_group(group: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            Stat::parse(&text).is_some_and(|s| s.comm == "virtiofsd" && s.pgrp == group)
        })
        .collect()
}

/// Waits for `pid` to be gone or a zombie.
fn wait_gone(pid: i32) -> Result<(), RuntimeError> {
    let deadline = Instant::now() + KILL_WAIT;
    while let ProcessState::Alive { .. } = process_start_time(pid) {
        if Instant::now() >= deadline {
            return Err(RuntimeError::NotDead {
                pid,
                waited: KILL_WAIT,
            });
        }
        // Not our child: nothing to wait on but its /proc entry.
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Waits for the sandbox process (a child of this command, after `create` in `run`)
/// to exit; gives its exit code (128 + N for signal N).
pub fn wait(_store: &Store, state: &ContainerState) -> Result<i32, RuntimeError> {
    use nix::sys::wait::{waitpid, WaitStatus};
    let pid = state.pid.ok_or_else(|| {
        RuntimeError::InvalidState(format!(
            "container \"{}\" has no sandbox process recorded",
            state.id
        ))
    })?;
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(RuntimeError::io(
                    format!("wait for the sandbox process {pid}"),
                    e.into(),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write_pid_file;

    #[test]
    fn the_pid_file_is_written_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pid");
        write_pid_file(&path, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42");
        write_pid_file(&path, 43).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "43");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "a temporary was left: {names:?}");
    }

    /// Another local user who plants a symlink where the temporary goes does not get
    /// the file it points to truncated or written.
    #[test]
    fn a_symlink_at_the_temporary_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("pid");
        std::os::unix::fs::symlink(&victim, dir.path().join(".pid.husk-tmp")).unwrap();
        let err = write_pid_file(&path, 42).unwrap_err();
        assert!(err.to_string().contains("pid file"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!path.exists());
    }

    /// A symlink at the pid file itself is replaced, not written through.
    #[test]
    fn a_symlink_at_the_pid_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("pid");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_pid_file(&path, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42");
    }
}
