//! `husk-bench-boot`: VMM process start to agent readiness, and VMM memory after boot,
//! for husk-vmm against QEMU's microvm machine booting the same kernel and initramfs.
//! Runs where `/dev/kvm` is hardware KVM (in the testbed: `tests/bench.sh`).
//!
//! Both VMMs keep guest RAM in a memfd, so the kernel accounts it as shared memory
//! (RssShmem) and the VMM's own memory is what remains: RssAnon + RssFile.

use anyhow::{bail, Context};
use clap::Parser;
use husk_protocol::console::READY_PREFIX;
use husk_tests::console::ConsoleVm;
use husk_tests::guest_image::GuestImage;
use husk_tests::stats::median;
use husk_tests::vm_command::{husk_vmm, qemu_microvm, Boot};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "Boot benchmark: husk-vmm against QEMU microvm")]
struct Cli {
    /// Boots per VMM.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    mem: u32,
}

/// One boot's figures.
#[derive(Debug, Clone, Copy)]
struct Sample {
    ready_ms: f64,
    guest_ms: f64,
    own_kib: u64,
    total_kib: u64,
}

fn boot(image: &GuestImage, mem_mib: u32) -> Boot<'_> {
    Boot {
        kernel: &image.kernel,
        initrd: &image.initrd,
        vcpus: 1,
        mem_mib,
        extra_cmdline: "",
    }
}

/// `RssAnon + RssFile` and `VmRSS` of a process, KiB.
fn memory_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?
            .trim()
            .parse()
            .with_context(|| format!("bad {name}"))
    };
    Ok((field("RssAnon:")? + field("RssFile:")?, field("VmRSS:")?))
}

fn boot_once(cmd: Command) -> anyhow::Result<Sample> {
    let mut vm = ConsoleVm::spawn(cmd).context("start the VMM")?;
    let ready = vm
        .wait_for_line(READY_PREFIX, Duration::from_secs(120))
        .map_err(anyhow::Error::msg)?;
    let ready_ms = vm.elapsed().as_secs_f64() * 1000.0;
    let (own_kib, total_kib) = memory_kib(vm.pid())?;
    let guest_ms = ready
        .split(", ")
        .find_map(|p| p.strip_suffix(" ms after kernel start)"))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no boot time in {ready:?}"))?;
    vm.send_line("poweroff").map_err(anyhow::Error::msg)?;
    let status = vm
        .wait_exit(Duration::from_secs(60))
        .map_err(anyhow::Error::msg)?;
    if !status.success() {
        bail!("VMM ended with {status}");
    }
    Ok(Sample {
        ready_ms,
        guest_ms,
        own_kib,
        total_kib,
    })
}

fn summary(samples: &[Sample]) -> [f64; 4] {
    let pick = |f: fn(&Sample) -> f64| median(&samples.iter().map(f).collect::<Vec<_>>());
    [
        pick(|s| s.ready_ms),
        pick(|s| s.guest_ms),
        pick(|s| s.own_kib as f64 / 1024.0),
        pick(|s| s.total_kib as f64 / 1024.0),
    ]
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let image = GuestImage::from_env();
    let mut husk_samples = Vec::new();
    let mut qemu_samples = Vec::new();
    // Interleave the two so that drift in the machine affects both alike.
    for run in 0..cli.runs {
        husk_samples.push(boot_once(husk_vmm(boot(&image, cli.mem))).context("husk-vmm boot")?);
        qemu_samples.push(boot_once(qemu_microvm(boot(&image, cli.mem))).context("QEMU boot")?);
        eprintln!("bench: run {}/{} done", run + 1, cli.runs);
    }
    let h = summary(&husk_samples);
    let q = summary(&qemu_samples);
    println!(
        "\nBoot to agent readiness, {} runs each, {} MiB guest, 1 vCPU (medians)\n",
        cli.runs, cli.mem
    );
    let row = |name, i: usize| (name, h[i], q[i]);
    husk_tests::ratio_table::print(
        ["husk-vmm", "QEMU microvm", "husk / QEMU"],
        &[
            row("VMM start to agent ready (ms)", 0),
            row("kernel start to agent ready, guest clock (ms)", 1),
            row("VMM's own memory after boot, RssAnon+RssFile (MiB)", 2),
            row("total resident after boot, VmRSS (MiB)", 3),
        ],
    );
    Ok(())
}
