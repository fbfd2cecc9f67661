//! The sandbox's VM: virtiofsd on the sandbox's share (the container's root file
//! system and host binds, [`super::share`]), and the microVM (husk-vmm's library, in
//! this process) with virtio-rng, virtio-vsock and virtio-fs.

use crate::network::{self, NetworkMode};
use crate::sandbox::console_log::BoundedLog;
use crate::sandbox::share::{self, HostBind, SHARE_TAG};
use crate::sandbox::timings::{guest_boot_from_ready_line, monotonic_us};
use crate::sandbox::SandboxError;
use husk_protocol::network::NetworkConfig;
use husk_vmm::builder::{VmConfig, Vmm};
use husk_vmm::devices::virtio::fs::Fs;
use husk_vmm::devices::virtio::net::Net;
use husk_vmm::devices::virtio::rng::Rng;
use husk_vmm::devices::virtio::vsock::Vsock;
use husk_vmm::devices::virtio::VirtioDevice;
use husk_vmm::virtiofsd::{Virtiofsd, VirtiofsdConfig};
use husk_vmm::vstate::vcpu::{VmControl, VmExit};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

/// The guest's vsock context ID.
const GUEST_CID: u64 = 3;
/// The kernel command line of sandbox guests. Past the essentials (console, reset on
/// reboot and panic, the sandbox's share, [`SHARE_TAG`]), words that shorten the boot
/// (docs/benchmarks.md, "First performance pass"): probe one UART, the only one the
/// VMM has, not four; skip the IO-APIC timer check, which waits for timer ticks (the
/// VMM's in-kernel irqchip and PIT are known to work); expedited RCU grace periods,
/// which the boot waits for several times.
const CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet husk.share=sandbox \
                       8250.nr_uarts=1 no_timer_check rcupdate.rcu_expedited=1";
/// Most bytes of guest console kept in `console.log`.
const CONSOLE_LOG_MAX: u64 = 1 << 20;

/// Everything needed to boot a sandbox's VM.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VmPlan {
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Initramfs with the agent.
    pub initramfs: PathBuf,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest memory, MiB.
    pub memory_mib: u64,
    /// The virtiofsd binary.
    pub virtiofsd: PathBuf,
    /// How long virtiofsd may take to listen.
    pub virtiofsd_timeout: Duration,
    /// The container's root file system on the host.
    pub rootfs: PathBuf,
    /// Host paths the spec bind-mounts, shared beside the root file system.
    #[serde(default)]
    pub binds: Vec<HostBind>,
    /// The container's state directory: sockets and the console log go there.
    pub dir: PathBuf,
    /// Where the container's network comes from.
    #[serde(default = "loopback_only")]
    pub network: NetworkMode,
    /// A pod sandbox's member directory on the host (a shared mount), shared as
    /// `containers/`: the pod's other containers appear there later.
    #[serde(default)]
    pub pod_share: Option<PathBuf>,
    /// How long the vsock device waits for the guest to accept a host connection
    /// before closing it; a little over the agent client's own limit, so that a slow
    /// guest is reported by the client as a timeout, not as a refusal.
    #[serde(default = "default_connect_timeout")]
    pub vsock_connect_timeout: Duration,
}

fn default_connect_timeout() -> Duration {
    husk_vmm::devices::virtio::vsock::connection::DEFAULT_CONNECT_TIMEOUT
}

fn loopback_only() -> NetworkMode {
    NetworkMode::LoopbackOnly
}

/// The longest path a unix socket may be bound or reached at (`sun_path` holds 108
/// bytes with the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

impl VmPlan {
    /// The hybrid vsock socket through which the host reaches the agent.
    pub fn vsock_path(dir: &Path) -> PathBuf {
        dir.join("vsock.sock")
    }

    /// virtiofsd's vhost-user socket.
    pub fn virtiofsd_path(dir: &Path) -> PathBuf {
        dir.join("virtiofsd.sock")
    }

    /// Checks that the sockets of a sandbox in state directory `dir` fit `sun_path`:
    /// a long `--root` (or `HUSK_SHIM_ROOT`, containerd namespace) and container ID
    /// would otherwise fail deep inside the VMM or virtiofsd.
    pub fn check_socket_paths(dir: &Path) -> Result<(), String> {
        for path in [Self::vsock_path(dir), Self::virtiofsd_path(dir)] {
            let len = path.as_os_str().len();
            if len > MAX_SOCKET_PATH {
                return Err(format!(
                    "the sandbox's socket {} would be {len} bytes long, over the \
                     {MAX_SOCKET_PATH} a unix socket path may have: use a shorter \
                     state root (--root, HUSK_SHIM_ROOT) or container ID",
                    path.display()
                ));
            }
        }
        Ok(())
    }
}

/// What the VM tells the sandbox.
#[derive(Debug)]
pub enum VmEvent {
    /// The agent printed its readiness line.
    AgentReady {
        /// When the line ended ([`monotonic_us`]).
        at: u64,
        /// Kernel start to readiness on the guest's clock (µs), if the line said.
        guest_boot: Option<u64>,
    },
    /// The VM ended, for this reason.
    Ended(String),
}

/// A running VM and its helpers; dropping it stops the VM and virtiofsd.
#[derive(Debug)]
pub struct SandboxVm {
    control: Arc<VmControl>,
    thread: Option<std::thread::JoinHandle<()>>,
    virtiofsd: Virtiofsd,
    /// The hybrid vsock socket.
    pub vsock: PathBuf,
    /// What the agent must configure, when the container has a network.
    pub network: Option<NetworkConfig>,
    dir: PathBuf,
    /// When virtiofsd was listening ([`monotonic_us`]).
    pub virtiofsd_ready: u64,
    /// When the VM was built and its vCPUs started ([`monotonic_us`]).
    pub vmm_started: u64,
}

impl SandboxVm {
    /// Starts virtiofsd, builds the VM and runs it on a thread of its own; `events`
    /// hears when the agent is ready and when the VM ends.
    pub fn boot(plan: &VmPlan, events: mpsc::Sender<VmEvent>) -> Result<SandboxVm, SandboxError> {
        let vsock = VmPlan::vsock_path(&plan.dir);
        // First, so that a namespace husk cannot handle fails the create before
        // anything else starts.
        let attached = match &plan.network {
            NetworkMode::LoopbackOnly => None,
            NetworkMode::Join(netns) => network::attach(netns, &plan.dir)?,
        };
        let (nic, network_config) = match attached {
            Some(a) => {
                let nic = Net::new(
                    Box::new(a.tap),
                    a.mac,
                    u16::try_from(a.config.interfaces[0].mtu).ok(),
                )
                .map_err(|e| SandboxError::Vm(format!("virtio-net device: {e}")));
                match nic {
                    Ok(nic) => (Some(nic), Some(a.config)),
                    Err(e) => {
                        let _ = network::detach(&plan.dir);
                        return Err(e);
                    }
                }
            }
            None => (None, None),
        };
        // From here on a failure undoes the network set-up (the tap goes with `nic`).
        let mut undo = NetworkUndo(network_config.as_ref().map(|_| plan.dir.clone()));
        let socket = VmPlan::virtiofsd_path(&plan.dir);
        // An empty directory: virtiofsd's private mount namespace puts a tmpfs on it.
        let shared_dir = plan.dir.join("share");
        match std::fs::create_dir(&shared_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(SandboxError::Io("create the share's directory", e)),
        }
        let (virtiofsd, stream) = Virtiofsd::start(&VirtiofsdConfig {
            binary: plan.virtiofsd.clone(),
            shared_dir,
            socket: socket.clone(),
            start_timeout: plan.virtiofsd_timeout,
            cache: "auto".into(),
            layout: Some(share::layout(
                &plan.rootfs,
                &plan.binds,
                plan.pod_share.as_deref(),
            )),
        })?;
        let virtiofsd_ready = monotonic_us();
        let _ = std::fs::write(plan.dir.join("virtiofsd.pid"), virtiofsd.pid().to_string());
        let fs = Fs::with_stream(stream, socket.display().to_string(), SHARE_TAG)?;
        let devices: Vec<Box<dyn VirtioDevice>> = vec![
            Box::new(Rng::new()),
            Box::new({
                let mut dev = Vsock::new(GUEST_CID, vsock.clone())
                    .map_err(|e| SandboxError::Vm(format!("vsock device: {e}")))?;
                dev.set_connect_timeout(plan.vsock_connect_timeout);
                dev
            }),
            Box::new(fs),
        ];
        let mut devices = devices;
        if let Some(nic) = nic {
            devices.push(Box::new(nic));
        }
        let ready = events.clone();
        let console = BoundedLog::create(
            &plan.dir.join("console.log"),
            CONSOLE_LOG_MAX,
            Box::new(move |rest| {
                let _ = ready.send(VmEvent::AgentReady {
                    at: monotonic_us(),
                    guest_boot: guest_boot_from_ready_line(rest),
                });
            }),
        )
        .map_err(|e| SandboxError::Io("create the console log", e))?;
        let config = VmConfig {
            kernel: plan.kernel.clone(),
            initrd: Some(plan.initramfs.clone()),
            mem_mib: plan.memory_mib,
            vcpus: plan.vcpus,
            cmdline: CMDLINE.to_owned(),
        };
        let vmm = Vmm::build(&config, Box::new(console), devices)
            .map_err(|e| SandboxError::Vm(format!("{:#}", anyhow::Error::new(e))))?;
        let control = vmm.control();
        let thread = std::thread::Builder::new()
            .name("vmm".into())
            .spawn(move || {
                let why = match vmm.run() {
                    Ok(exit) => exit.to_string(),
                    Err(e) => format!("{:#}", anyhow::Error::new(e)),
                };
                let _ = events.send(VmEvent::Ended(why));
            })
            .map_err(|e| SandboxError::Io("start the VMM thread", e))?;
        undo.0 = None;
        Ok(SandboxVm {
            control,
            thread: Some(thread),
            virtiofsd,
            vsock,
            network: network_config,
            dir: plan.dir.clone(),
            virtiofsd_ready,
            vmm_started: monotonic_us(),
        })
    }

    /// Adds what is known of virtiofsd to `why` the VM ended.
    pub fn explain(&mut self, why: &str) -> String {
        match self.virtiofsd.check_exit() {
            Some(status) => format!(
                "{why}; virtiofsd ended ({status}): {}",
                self.virtiofsd.stderr_tail()
            ),
            None => why.to_owned(),
        }
    }

    /// Stops the VM, with a register report of each vCPU first: where a guest that
    /// never answered was (`vCPU 0: rip=… …`, `; `-separated; empty if no vCPU ran).
    pub fn stop_with_register_report(&mut self) -> String {
        self.control.request_register_report();
        self.stop();
        let reports: Vec<String> = self
            .control
            .register_reports()
            .iter()
            .map(|r| format!("vCPU {}: {r}", r.vcpu))
            .collect();
        reports.join("; ")
    }

    /// Stops the VM (if it still runs) and waits for its thread, then virtiofsd.
    pub fn stop(&mut self) {
        self.control.request_exit(VmExit::Stopped);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.virtiofsd.stop();
        // The VMM (and with it the tap) is gone: the veth's side can go too.
        if self.network.is_some() {
            if let Err(e) = network::detach(&self.dir) {
                tracing::warn!("{}", husk_protocol::error_chain(&e));
            }
        }
    }
}

/// Undoes the network set-up if the boot fails half-way.
struct NetworkUndo(Option<PathBuf>);

impl Drop for NetworkUndo {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = network::detach(dir);
        }
    }
}

impl Drop for SandboxVm {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_must_fit_sun_path() {
        let id = "a".repeat(64);
        let fits = Path::new("/run/husk-shim/k8s.io").join(&id);
        assert!(VmPlan::check_socket_paths(&fits).is_ok());
        let long = Path::new("/run/husk-shim/a-much-longer-containerd-namespace").join(&id);
        let err = VmPlan::check_socket_paths(&long).unwrap_err();
        assert!(
            err.contains("vsock.sock") && err.contains("125 bytes"),
            "{err}"
        );
    }
}
