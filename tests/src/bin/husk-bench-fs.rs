//! `husk-bench-fs`: virtio-fs throughput and small-file create rate. The same
//! `husk-checker` workload runs on the test host's own file system and, through
//! husk-vmm's vhost-user-fs device and virtiofsd, in a guest whose share is that
//! file system. Runs where `/dev/kvm` is hardware KVM (in the testbed:
//! `tests/bench.sh`).

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use husk_tests::scratch_fs::ScratchFs;
use husk_tests::share_guest::{checker, field, ShareGuest};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(about = "virtio-fs benchmark: guest over virtio-fs against the host's own file system")]
struct Cli {
    /// MiB written and read sequentially.
    #[arg(long, default_value_t = 128)]
    mib: u64,
    /// Small files created.
    #[arg(long, default_value_t = 500)]
    files: u32,
}

/// One side's figures.
#[derive(Debug)]
struct Figures {
    write_mib_s: f64,
    read_mib_s: f64,
    creates_s: f64,
}

/// Bytes or files per second from a checker line `bytes=N secs=S` / `files=N secs=S`.
fn rate(line: &str, what: &str, scale: f64) -> anyhow::Result<f64> {
    let n: f64 = field(line, what)
        .ok_or_else(|| anyhow!("no {what}= in {line:?}"))?
        .parse()?;
    let secs: f64 = field(line, "secs")
        .ok_or_else(|| anyhow!("no secs= in {line:?}"))?
        .parse()?;
    Ok(n / scale / secs)
}

/// Writes back dirty pages and drops the host's page cache, so reads come from the
/// file system rather than memory.
fn drop_host_caches() -> anyhow::Result<()> {
    nix::unistd::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").context("drop the host's caches")
}

/// Runs the checker on the host.
fn host_check(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(checker().map_err(anyhow::Error::msg)?)
        .args(args)
        .output()?;
    if !out.status.success() {
        bail!("checker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

fn measure(
    cli: &Cli,
    root: &str,
    check: &mut dyn FnMut(&[&str]) -> anyhow::Result<String>,
) -> anyhow::Result<Figures> {
    let mib = cli.mib.to_string();
    let files = cli.files.to_string();
    let seq = format!("{root}/seq-{}", root.len());
    let write = check(&["write-seq", &seq, &mib])?;
    drop_host_caches()?;
    // The file the host wrote first: never read by the guest, so its cache is cold.
    let read = check(&["read-seq", &format!("{root}/host-written")])?;
    let create = check(&[
        "create-rate",
        &format!("{root}/files-{}", root.len()),
        &files,
    ])?;
    Ok(Figures {
        write_mib_s: rate(&write, "bytes", (1 << 20) as f64)?,
        read_mib_s: rate(&read, "bytes", (1 << 20) as f64)?,
        creates_s: rate(&create, "files", 1.0)?,
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::ensure!(
        cli.mib > 0 && cli.files > 0,
        "--mib and --files must be positive"
    );
    let work = std::env::temp_dir().join(format!("husk-bench-fs-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&cli, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn run(cli: &Cli, work: &Path) -> anyhow::Result<()> {
    let size = (cli.mib * 3 + 256).max(512);
    let fs = ScratchFs::new(&work.join("scratch.img"), &work.join("share"), size)
        .map_err(anyhow::Error::msg)?;
    let share = fs.path().to_owned();
    let share_str = share
        .to_str()
        .context("share path is not UTF-8")?
        .to_owned();
    host_check(&[
        "write-seq",
        &format!("{share_str}/host-written"),
        &cli.mib.to_string(),
    ])?;

    let host = measure(cli, &share_str, &mut |args| host_check(args))?;

    let mut guest = ShareGuest::boot(work, &share, "auto", Duration::from_secs(600))
        .map_err(anyhow::Error::msg)?;
    let measured = measure(cli, "", &mut |args| {
        guest.check(args).map_err(anyhow::Error::msg)
    });
    let stderr = guest.vmm_stderr();
    let status = guest.power_off().map_err(anyhow::Error::msg)?;
    let guest_figures = measured.with_context(|| format!("in the guest; husk-vmm: {stderr}"))?;
    anyhow::ensure!(status.success(), "husk-vmm ended with {status}: {stderr}");
    drop(fs);

    println!(
        "\nvirtio-fs, {} MiB sequential, {} small files, scratch ext4 on the test host, \
         virtiofsd --cache auto, 2 vCPUs\n",
        cli.mib, cli.files
    );
    // The guest is "ours": its ratio is guest / host.
    husk_tests::ratio_table::print(
        [
            "guest over virtio-fs",
            "test host's own file system",
            "guest / host",
        ],
        &[
            (
                "sequential write + fsync (MiB/s)",
                guest_figures.write_mib_s,
                host.write_mib_s,
            ),
            (
                "sequential read, cold cache (MiB/s)",
                guest_figures.read_mib_s,
                host.read_mib_s,
            ),
            (
                "small-file creates (files/s)",
                guest_figures.creates_s,
                host.creates_s,
            ),
        ],
    );
    Ok(())
}
