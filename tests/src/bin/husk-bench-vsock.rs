//! `husk-bench-vsock`: host/guest stream throughput and request round-trip latency
//! through husk-vmm's virtio-vsock (userspace device, hybrid unix socket), against QEMU
//! with vhost-vsock (in-kernel device, `AF_VSOCK` on the host), same guest, same agent,
//! same protocol. Runs where `/dev/kvm` is hardware KVM (in the testbed:
//! `tests/bench.sh`).

use anyhow::Context;
use clap::Parser;
use husk_protocol::console::READY_PREFIX;
use husk_protocol::diag::StreamGenerator;
use husk_protocol::{RequestBody, AGENT_PORT};
use husk_runtime::agent::{AgentClient, Timeouts, Transport};
use husk_tests::console::ConsoleVm;
use husk_tests::guest_image::GuestImage;
use husk_tests::vm_command::{husk_vmm, qemu_microvm, Boot};
use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "vsock benchmark: husk-vmm against QEMU with vhost-vsock")]
struct Cli {
    /// MiB streamed each way.
    #[arg(long, default_value_t = 100)]
    mib: u64,
    /// Request round trips timed.
    #[arg(long, default_value_t = 1000)]
    round_trips: usize,
}

/// The guest's vsock context ID for QEMU's vhost-vsock.
const QEMU_GUEST_CID: u32 = 3;

/// `AF_VSOCK` stream as an agent transport.
#[derive(Debug)]
struct Vsock(vsock::VsockStream);

impl Read for Vsock {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Write for Vsock {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Transport for Vsock {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.0.set_read_timeout(timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.0.set_write_timeout(timeout)
    }
}

#[derive(Debug)]
struct Figures {
    up_mib_s: f64,
    down_mib_s: f64,
    rtt_median_us: f64,
    rtt_p99_us: f64,
}

fn measure<S: Transport>(agent: &mut AgentClient<S>, cli: &Cli) -> anyhow::Result<Figures> {
    let bytes = cli.mib << 20;
    let rate = |d: Duration| cli.mib as f64 / d.as_secs_f64();
    let start = Instant::now();
    agent.stream_sink(bytes, StreamGenerator::new(1).take(bytes))?;
    let up_mib_s = rate(start.elapsed());
    let start = Instant::now();
    agent.stream_source(bytes, 2)?;
    let down_mib_s = rate(start.elapsed());
    let mut rtts = Vec::with_capacity(cli.round_trips);
    for _ in 0..cli.round_trips {
        let start = Instant::now();
        agent.request(RequestBody::Version)?;
        rtts.push(start.elapsed().as_secs_f64() * 1e6);
    }
    rtts.sort_by(f64::total_cmp);
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q).round() as usize];
    Ok(Figures {
        up_mib_s,
        down_mib_s,
        rtt_median_us: at(0.5),
        rtt_p99_us: at(0.99),
    })
}

fn boot(cmd: std::process::Command) -> anyhow::Result<ConsoleVm> {
    let mut vm = ConsoleVm::spawn(cmd).context("start the VMM")?;
    vm.wait_for_line(READY_PREFIX, Duration::from_secs(120))
        .map_err(anyhow::Error::msg)?;
    Ok(vm)
}

fn finish(mut vm: ConsoleVm) -> anyhow::Result<()> {
    vm.send_line("poweroff").map_err(anyhow::Error::msg)?;
    vm.wait_exit(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// Adds the guest console so far to a measurement's error.
fn console_on_error(e: anyhow::Error, vm: &mut ConsoleVm) -> anyhow::Error {
    // The agent reports a failed connection on its console; give it a moment.
    let _ = vm.wait_for_line("husk-agent: connection ended", Duration::from_secs(3));
    vm.collect();
    let vmm = match vm.try_status() {
        Some(status) => format!("the VMM has ended ({status})"),
        None => "the VMM is still running".to_owned(),
    };
    e.context(format!(
        "{vmm}; guest console so far:\n{}",
        vm.transcript.join("\n")
    ))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.mib > 0 && cli.round_trips > 0,
        "--mib and --round-trips must be positive"
    );
    let image = GuestImage::from_env();
    let spec = Boot {
        kernel: &image.kernel,
        initrd: &image.initrd,
        vcpus: 2,
        mem_mib: 256,
        extra_cmdline: "",
    };

    let dir = std::env::temp_dir().join(format!("husk-bench-vsock-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket: PathBuf = dir.join("vsock.sock");
    let mut cmd = husk_vmm(spec);
    // Debug logs of the VMM are only connection events here: they say why a
    // connection ended if a measurement fails.
    cmd.arg("--vsock")
        .arg(&socket)
        .args(["--log-level", "debug"]);
    let mut vm = boot(cmd)?;
    let mut agent = AgentClient::connect(&socket, AGENT_PORT, Timeouts::default())?;
    let husk = measure(&mut agent, &cli)
        .map_err(|e| console_on_error(e, &mut vm))
        .context("husk-vmm")?;
    drop(agent);
    finish(vm)?;
    let _ = std::fs::remove_dir_all(&dir);

    let mut cmd = qemu_microvm(spec);
    cmd.args([
        "-device",
        &format!("vhost-vsock-device,guest-cid={QEMU_GUEST_CID}"),
    ]);
    let mut vm = boot(cmd)?;
    let stream = vsock::VsockStream::connect_with_cid_port(QEMU_GUEST_CID, AGENT_PORT)
        .context("AF_VSOCK connect to QEMU's guest")?;
    let timeouts = Timeouts::default();
    let mut agent =
        AgentClient::handshake(Vsock(stream), Instant::now() + timeouts.connect, timeouts)?;
    let qemu = measure(&mut agent, &cli)
        .map_err(|e| console_on_error(e, &mut vm))
        .context("QEMU")?;
    drop(agent);
    finish(vm)?;

    println!(
        "\nvsock, host <-> agent, {} MiB each way, {} round trips, 2 vCPUs\n",
        cli.mib, cli.round_trips
    );
    husk_tests::ratio_table::print(
        [
            "husk-vmm (userspace, hybrid)",
            "QEMU (vhost-vsock)",
            "husk / QEMU",
        ],
        &[
            ("host to guest (MiB/s)", husk.up_mib_s, qemu.up_mib_s),
            ("guest to host (MiB/s)", husk.down_mib_s, qemu.down_mib_s),
            (
                "request round trip, median (µs)",
                husk.rtt_median_us,
                qemu.rtt_median_us,
            ),
            (
                "request round trip, p99 (µs)",
                husk.rtt_p99_us,
                qemu.rtt_p99_us,
            ),
        ],
    );
    Ok(())
}
