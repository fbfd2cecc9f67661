//! The sandbox process: the host process that owns one container's VM. It lives
//! exactly as long as the container's init process and exits with its status, which
//! is what engines (conmon, containerd) wait for.
//!
//! `husk create` starts it (as `husk __sandbox DIR`) with the stdio the engine gave
//! `create`, and waits for its [`Report`]. It then: boots the VM (virtiofsd on the
//! root file system, the VMM on a thread), waits for the agent's readiness line,
//! creates the container in the guest, attaches the process's stdio, reports, and
//! waits for the process to exit while forwarding the signals it receives.

use super::exit;
use super::relay::{attach, forward_signals, ProcessRef, Relay, Stdio};
use super::vm::{SandboxVm, VmEvent};
use crate::agent::Timeouts;
use crate::sandbox::console_log::log_tail;
use crate::sandbox::plan::OOM_KILLS_FILE;
use crate::sandbox::plan::{Report, Reporter, SandboxPlan};
use crate::sandbox::share::GUEST_ROOTFS;
use crate::sandbox::timings::{monotonic_us, StartTimings};
use crate::sandbox::SandboxError;
use husk_protocol::{ContainerStats, ExitStatus};
use nix::sys::signal::{SigSet, Signal};
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

/// Signals the sandbox forwards to the container's process (SIGWINCH resizes its
/// terminal instead).
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];
pub use super::exit::VM_LOST_STATUS;
pub use super::relay::DRAIN;

/// Events the sandbox waits for.
enum Event {
    Vm(VmEvent),
    Exited(Result<ExitStatus, String>),
}

/// Runs the sandbox process for the container whose plan is `DIR/sandbox.json`;
/// gives back the status to exit with. Never returns early without reporting.
pub fn run(dir: &Path) -> i32 {
    let sandbox_started = monotonic_us();
    let mut reporter = Reporter::from_env();
    let plan: SandboxPlan = match std::fs::read(dir.join("sandbox.json"))
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(plan) => plan,
        Err(e) => {
            let msg = format!("cannot read the sandbox plan in {}: {e}", dir.display());
            tracing::error!("{msg}");
            reporter.send(&Report::Failed(msg));
            return 1;
        }
    };
    match Sandbox::start(&plan, &mut reporter, sandbox_started) {
        Ok(sandbox) => sandbox.wait(),
        Err(e) => {
            let mut msg = husk_protocol::error_chain(&e);
            if guest_gone(&e) {
                // The state directory, console.log with it, goes with the failed
                // create: its last words go into the error.
                msg.push_str(&log_tail(&dir.join("console.log"), "guest console"));
            }
            tracing::error!("{msg}");
            reporter.send(&Report::Failed(msg));
            1
        }
    }
}

struct Sandbox {
    vm: SandboxVm,
    events: mpsc::Receiver<Event>,
    relay: Relay,
}

impl Sandbox {
    fn start(
        plan: &SandboxPlan,
        reporter: &mut Reporter,
        sandbox_started: u64,
    ) -> Result<Sandbox, SandboxError> {
        // Its own session: the engine's signals to `create`'s process group do not
        // reach it, and a terminal can become its controlling terminal.
        let _ = nix::unistd::setsid();
        let mut signals = SigSet::empty();
        for sig in FORWARDED {
            signals.add(sig);
        }
        signals
            .thread_block()
            .map_err(|e| SandboxError::Io("block signals", e.into()))?;

        let deadline = Instant::now() + plan.boot_timeout;
        let (tx, events) = mpsc::channel();
        let vm_tx = tx.clone();
        let (vm_events, vm_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for e in vm_rx {
                let _ = vm_tx.send(Event::Vm(e));
            }
        });
        let vm_plan = &plan.vm;
        let mut vm = SandboxVm::boot(vm_plan, vm_events)?;
        let (agent_ready, guest_boot) =
            match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Event::Vm(VmEvent::AgentReady { at, guest_boot })) => (at, guest_boot),
                Ok(Event::Vm(VmEvent::Ended(why))) => {
                    return Err(SandboxError::Vm(format!(
                        "the VM ended while booting: {}; see {}",
                        vm.explain(&why),
                        vm_plan.dir.join("console.log").display()
                    )))
                }
                _ => {
                    // Where the guest was, for a look at a guest that hangs: its
                    // `rip` maps to a symbol of the guest kernel.
                    let registers = vm.stop_with_register_report();
                    return Err(SandboxError::Vm(format!(
                        "the guest did not boot within {:?} ({}); see {}",
                        plan.boot_timeout,
                        if registers.is_empty() {
                            "no vCPU ran"
                        } else {
                            &registers
                        },
                        vm_plan.dir.join("console.log").display()
                    )));
                }
            };
        let timeouts = Timeouts {
            connect: plan.request_timeout,
            request: plan.request_timeout,
        };
        let process = ProcessRef {
            vsock: vm.vsock.clone(),
            container_id: plan.id.clone(),
            exec_id: None,
        };
        let mut agent = process.agent(timeouts)?;
        if let Some(network) = vm.network.clone() {
            agent
                .configure_network(network)
                .map_err(|e| SandboxError::Agent("configure the guest's network".into(), e))?;
        }
        let guest_pid = agent
            .create_container(&plan.id, plan.spec.clone(), GUEST_ROOTFS)
            .map_err(|e| SandboxError::Agent("create the container in the guest".into(), e))?;
        let terminal = plan
            .spec
            .pointer("/process/terminal")
            .and_then(|t| t.as_bool())
            .unwrap_or(false);
        let stdio = if terminal {
            let size = |key: &str| {
                plan.spec
                    .pointer(&format!("/process/consoleSize/{key}"))
                    .and_then(|v| v.as_u64())
                    .and_then(|v| u16::try_from(v).ok())
                    .unwrap_or(0)
            };
            Stdio::Terminal {
                console_socket: plan.console_socket.as_deref(),
                size: (size("height"), size("width")),
            }
        } else {
            Stdio::Inherited
        };
        let (relay, pty) = attach(&process, timeouts, stdio)?;
        let timings = StartTimings {
            sandbox_started,
            virtiofsd_ready: vm.virtiofsd_ready,
            vmm_started: vm.vmm_started,
            agent_ready,
            guest_boot,
            container_created: monotonic_us(),
        };
        if !reporter.send(&Report::Up {
            guest_pid,
            timings: Some(timings),
        }) {
            // `create` is gone (killed, or timed out): nobody owns this sandbox.
            return Err(SandboxError::DiedEarly);
        }

        let waiter = process.clone();
        let dir = vm_plan.dir.clone();
        std::thread::spawn(move || {
            let status = waiter
                .agent(timeouts)
                .and_then(|mut a| {
                    let status = a
                        .wait(&waiter.container_id, None, None)
                        .map_err(|e| SandboxError::Agent("wait for the container".into(), e))?;
                    // While the VM still runs: whether memory ran out, for `events`
                    // and the shim, whose OOM watch may not have seen it yet.
                    if let Ok(stats) = a.stats(&waiter.container_id) {
                        record_oom_kills(&dir, &stats);
                    }
                    Ok(status)
                })
                .map_err(|e| husk_protocol::error_chain(&e));
            let _ = tx.send(Event::Exited(status));
        });
        let forwarder = process.clone();
        std::thread::spawn(move || forward_signals(signals, &forwarder, timeouts, pty));
        Ok(Sandbox { vm, events, relay })
    }

    /// Waits for the container's process to exit (or the VM to end); gives back the
    /// status to exit with.
    fn wait(mut self) -> i32 {
        let status = loop {
            match self.events.recv() {
                Ok(Event::Exited(Ok(status))) => break Some(status),
                Ok(Event::Exited(Err(e))) => {
                    tracing::error!("lost the container's process: {e}");
                    break None;
                }
                Ok(Event::Vm(VmEvent::Ended(why))) => {
                    let why = self.vm.explain(&why);
                    tracing::error!("the VM ended before the container: {why}");
                    break None;
                }
                Ok(Event::Vm(VmEvent::AgentReady { .. })) => {}
                Err(_) => break None,
            }
        };
        // Let the output drain, bounded; stopping the VM ends every stream.
        let _ = self.relay.finish_within(DRAIN);
        self.vm.stop();
        match status {
            Some(status) => exit::end_like(status),
            None => VM_LOST_STATUS,
        }
    }
}

/// Whether a start-up failure means the guest (or its agent) went away.
fn guest_gone(e: &SandboxError) -> bool {
    use crate::agent::ClientError;
    matches!(
        e,
        SandboxError::Vm(_) | SandboxError::Agent(_, ClientError::ConnectRefused { .. })
    )
}

/// Records the final OOM kill count of `stats` (if it has cgroup figures) in the
/// state directory `dir`.
pub fn record_oom_kills(dir: &Path, stats: &ContainerStats) {
    if let Some(cgroup) = &stats.cgroup {
        if let Err(e) = std::fs::write(dir.join(OOM_KILLS_FILE), cgroup.oom_kill.to_string()) {
            tracing::warn!("cannot record the OOM kill count: {e}");
        }
    }
}
