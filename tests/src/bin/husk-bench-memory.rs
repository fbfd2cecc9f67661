//! `husk-bench-memory`: host memory per idle sandbox, husk against QEMU microvm with
//! the same guest and the same devices, and density: many idle sandboxes started
//! one after another, their total memory and the time to start them all. Runs where
//! `/dev/kvm` is hardware KVM (in the testbed: `tests/bench.sh`).
//!
//! Memory is PSS (`/proc/PID/smaps_rollup`) summed over the sandbox process and
//! everything it started (virtiofsd and its sandboxed child); for QEMU, over QEMU and
//! the virtiofsd started for it. Guest RAM is a memfd in both, mapped by the VMM and
//! by virtiofsd: PSS counts each page once, split between them.

use anyhow::{bail, Context};
use clap::Parser;
use husk_protocol::console::READY_PREFIX;
use husk_tests::bundle::{husk_config, spec, Bundle};
use husk_tests::console::ConsoleVm;
use husk_tests::guest_image::GuestImage;
use husk_tests::host_memory::{mem_available_kib, pss_tree_kib, Pss};
use husk_tests::husk_cli::HuskCli;
use husk_tests::share_guest::{virtiofsd, BOOT_TIMEOUT, EXIT_TIMEOUT};
use husk_tests::stats::median;
use husk_tests::vm_command::{qemu_microvm, Boot};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Host memory per sandbox against QEMU microvm, and density")]
struct Cli {
    /// Sandboxes (and QEMU VMs) measured one at a time.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Guest memory of the single sandboxes, MiB (husk's and QEMU's).
    #[arg(long, default_value_t = 256)]
    mem: u32,
    /// Sandboxes started for the density figure (0: none).
    #[arg(long, default_value_t = 50)]
    density: usize,
    /// Guest memory of each of those, MiB (annotation `io.husk.memory_mib`).
    #[arg(long, default_value_t = 64)]
    density_mem: u32,
    /// How long a sandbox idles after its start before it is measured, ms.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
}

struct Bench {
    dir: PathBuf,
    husk: HuskCli,
    settle: Duration,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Bench {
    /// A bundle running `sleep` with `mem_mib` of guest memory.
    fn sleeper(&self, name: &str, mem_mib: u32) -> Bundle {
        let bundle = Bundle::new(&self.dir.join(name), &["sleep", "1000000"], false);
        let mut config = spec(&["sleep", "1000000"], false);
        config["annotations"] = serde_json::json!({ "io.husk.memory_mib": mem_mib.to_string() });
        bundle.write_config(&config);
        bundle
    }

    /// One idle husk sandbox: PSS of its process tree and process count.
    fn husk_once(&self, bundle: &Bundle, n: usize) -> anyhow::Result<(Pss, usize)> {
        let id = format!("mem-{n}");
        self.husk
            .run_detached(&id, &bundle.dir, &self.dir.join("run.stderr"))
            .map_err(anyhow::Error::msg)?;
        let measured = self.husk.sandbox_pid(&id).map(|pid| {
            std::thread::sleep(self.settle);
            pss_tree_kib(pid)
        });
        self.husk.delete_force(&id).map_err(anyhow::Error::msg)?;
        reap();
        measured.map_err(anyhow::Error::msg)
    }

    /// One idle QEMU microvm with virtiofsd on the same root file system, virtio-rng
    /// and vhost-vsock (husk's device set): PSS of QEMU's and virtiofsd's trees.
    fn qemu_once(&self, rootfs: &Path, mem_mib: u32, n: usize) -> anyhow::Result<(Pss, usize)> {
        let image = GuestImage::from_env();
        let socket = self.dir.join(format!("qemu-fs-{n}.sock"));
        let mut fsd = Command::new(virtiofsd().map_err(anyhow::Error::msg)?)
            .arg("--socket-path")
            .arg(&socket)
            .arg("--shared-dir")
            .arg(rootfs)
            .args(["--sandbox", "namespace", "--xattr", "--cache", "auto"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start virtiofsd")?;
        let measured = wait_for_socket(&socket).and_then(|()| {
            let mut cmd = qemu_microvm(Boot {
                kernel: &image.kernel,
                initrd: &image.initrd,
                vcpus: 1,
                mem_mib,
                extra_cmdline: "husk.share=rootfs",
            });
            cmd.arg("-chardev")
                .arg(format!("socket,id=fs,path={}", socket.display()))
                .args(["-device", "vhost-user-fs-device,chardev=fs,tag=rootfs"])
                .args([
                    "-device",
                    &format!("vhost-vsock-device,guest-cid={}", 100 + n),
                ])
                .args(["-device", "virtio-rng-device"]);
            let mut vm = ConsoleVm::spawn(cmd).context("start QEMU")?;
            vm.wait_for_line(READY_PREFIX, BOOT_TIMEOUT)
                .map_err(anyhow::Error::msg)?;
            std::thread::sleep(self.settle);
            let (qemu, qn) = pss_tree_kib(vm.pid());
            let (fs, fsn) = pss_tree_kib(fsd.id());
            vm.send_line("poweroff").map_err(anyhow::Error::msg)?;
            vm.wait_exit(EXIT_TIMEOUT).map_err(anyhow::Error::msg)?;
            Ok((qemu + fs, qn + fsn))
        });
        stop(&mut fsd);
        measured
    }

    /// Starts `count` sandboxes one after another, measures them, deletes them all.
    fn density(&self, count: usize, mem_mib: u32) -> anyhow::Result<()> {
        let bundle = self.sleeper("density-bundle", mem_mib);
        let before = mem_available_kib();
        let began = Instant::now();
        let mut ids = Vec::new();
        let mut failure = None;
        for n in 0..count {
            let id = format!("dense-{n}");
            match self
                .husk
                .run_detached(&id, &bundle.dir, &self.dir.join("dense.stderr"))
            {
                Ok(()) => ids.push(id),
                Err(e) => {
                    failure = Some(format!("sandbox {} of {count}: {e}", n + 1));
                    break;
                }
            }
        }
        let start_s = began.elapsed().as_secs_f64();
        std::thread::sleep(self.settle);
        let pss: Pss = ids
            .iter()
            .filter_map(|id| self.husk.sandbox_pid(id).ok())
            .map(|pid| pss_tree_kib(pid).0)
            .sum();
        let drop_kib = before.saturating_sub(mem_available_kib());
        let began = Instant::now();
        for id in &ids {
            if let Err(e) = self.husk.delete_force(id) {
                failure.get_or_insert(e);
            }
        }
        reap();
        let delete_s = began.elapsed().as_secs_f64();
        let left = husk_processes_left();
        if let Some(e) = failure {
            bail!("density: {e}");
        }
        if left > 0 {
            bail!("density: {left} sandbox or virtiofsd processes left after delete --force");
        }
        println!(
            "\nDensity: {count} idle sandboxes (`husk run -d`, `sleep`, 1 vCPU, {mem_mib} MiB \
             guest each), started one after another\n"
        );
        println!("| metric | value |\n|---|---:|");
        println!("| time to start all (s) | {start_s:.1} |");
        println!("| per sandbox (s) | {:.2} |", start_s / count as f64);
        println!(
            "| total PSS of the sandboxes (MiB) | {:.1} |",
            mib(pss.total)
        );
        println!(
            "| PSS per sandbox (MiB) | {:.1} |",
            mib(pss.total) / count as f64
        );
        println!(
            "| of which guest RAM, per sandbox (MiB) | {:.1} |",
            mib(pss.shmem) / count as f64
        );
        println!("| host MemAvailable drop (MiB) | {:.1} |", mib(drop_kib));
        println!(
            "| MemAvailable drop per sandbox (MiB) | {:.1} |",
            mib(drop_kib) / count as f64
        );
        println!("| time to delete all, `delete --force` (s) | {delete_s:.1} |");
        Ok(())
    }
}

/// Waits (bounded) for virtiofsd's socket.
fn wait_for_socket(path: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        if Instant::now() > deadline {
            bail!("virtiofsd did not create {} within 30 s", path.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn stop(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// Reaps the sandbox processes that became this process's children (it is a
/// subreaper) once their containers were deleted.
fn reap() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Sandbox processes and virtiofsd instances still alive (zombies do not count).
fn husk_processes_left() -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            !stat.contains(") Z") && (cmdline.contains("__sandbox") || stat.contains("(virtiofsd)"))
        })
        .count()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    nix::sys::prctl::set_child_subreaper(true)?;
    let dir = std::env::temp_dir().join(format!("husk-bench-memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let bench = Bench {
        husk: HuskCli {
            root: dir.join("husk-root"),
            config: husk_config(&dir.join("husk.toml")),
        },
        dir,
        settle: Duration::from_millis(cli.settle_ms),
    };
    let bundle = bench.sleeper("bundle", cli.mem);
    let rootfs = bundle.dir.join("rootfs");
    let (mut husk, mut qemu, mut procs) = (Vec::new(), Vec::new(), (0, 0));
    for n in 0..cli.runs {
        let (pss, p) = bench.husk_once(&bundle, n).context("husk sandbox")?;
        husk.push(pss);
        procs.0 = p;
        let (pss, p) = bench.qemu_once(&rootfs, cli.mem, n).context("QEMU")?;
        qemu.push(pss);
        procs.1 = p;
        eprintln!("bench-memory: run {}/{} done", n + 1, cli.runs);
    }
    println!(
        "\nHost memory per idle sandbox, {} MiB guest, 1 vCPU, PSS {} ms after readiness \
         (medians of {} runs; husk: {} processes, QEMU: {})\n",
        cli.mem, cli.settle_ms, cli.runs, procs.0, procs.1
    );
    let m = |samples: &[Pss], f: fn(&Pss) -> u64| {
        median(&samples.iter().map(|p| mib(f(p))).collect::<Vec<_>>())
    };
    husk_tests::ratio_table::print(
        ["husk", "QEMU microvm + virtiofsd", "husk / QEMU"],
        &[
            (
                "PSS, VMM + virtiofsd (MiB)",
                m(&husk, |p| p.total),
                m(&qemu, |p| p.total),
            ),
            (
                "of which guest RAM, Pss_Shmem (MiB)",
                m(&husk, |p| p.shmem),
                m(&qemu, |p| p.shmem),
            ),
            (
                "the processes' own, PSS - Pss_Shmem (MiB)",
                m(&husk, |p| p.total - p.shmem),
                m(&qemu, |p| p.total - p.shmem),
            ),
        ],
    );
    if cli.density > 0 {
        bench.density(cli.density, cli.density_mem)?;
    }
    let _ = std::fs::remove_dir_all(&bench.dir);
    Ok(())
}
