//! `husk-bench-start`: container start latency of `run <bundle> true` for husk
//! against runc, through the CLI and through podman (runs interleaved, same bundle
//! and image), and the breakdown of husk's start from the timings `husk --debug`
//! logs. Writes every sample to `--csv` for the plot. Runs where `/dev/kvm` is
//! hardware KVM (in the testbed: `tests/bench.sh`).

use anyhow::{bail, Context};
use clap::Parser;
use husk_runtime::sandbox::timings::monotonic_us;
use husk_tests::bundle::{husk_config_with_kernel, spec, Bundle};
use husk_tests::guest_image::GuestImage;
use husk_tests::husk_cli::{logged_start, HuskCli};
use husk_tests::podman::{Podman, IMAGE};
use husk_tests::stats::{median, quantile};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, Parser)]
#[command(about = "Start latency: husk against runc, CLI and podman")]
struct Cli {
    /// Runs per runtime and front end.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Leave podman out.
    #[arg(long)]
    no_podman: bool,
    /// Where to write the samples (CSV: front end, runtime, run, ms).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Boot the guest image's bzImage instead of its ELF vmlinux (the installed
    /// default).
    #[arg(long)]
    bzimage: bool,
}

/// The four ways of running `true`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    HuskCli,
    RuncCli,
    HuskPodman,
    RuncPodman,
}

impl Way {
    fn label(self) -> (&'static str, &'static str) {
        match self {
            Way::HuskCli => ("cli", "husk"),
            Way::RuncCli => ("cli", "runc"),
            Way::HuskPodman => ("podman", "husk"),
            Way::RuncPodman => ("podman", "runc"),
        }
    }
}

struct Bench {
    dir: PathBuf,
    husk: HuskCli,
    bundle: Bundle,
    podman: Option<(Podman, Podman)>,
    runc: PathBuf,
}

/// Milliseconds between two [`monotonic_us`] instants.
fn ms(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1000.0
}

impl Bench {
    /// Runs `true` once the given way; gives its wall time and, for the husk CLI,
    /// the logged phases as ms after the command was spawned.
    fn once(&self, way: Way, n: usize) -> anyhow::Result<(f64, Vec<(String, f64)>)> {
        let id = format!("bench-{n}");
        let log = self.dir.join(format!("husk-{n}.log"));
        let mut cmd = match way {
            Way::HuskCli => {
                let mut cmd = self.husk.command();
                cmd.arg("--debug").arg("--log").arg(&log);
                cmd.args(["--log-format", "json", "run", "--bundle"]);
                cmd.arg(&self.bundle.dir).arg(&id);
                cmd
            }
            Way::RuncCli => {
                let mut cmd = Command::new(&self.runc);
                cmd.arg("--root").arg(self.dir.join("runc-root"));
                cmd.arg("run")
                    .arg("--bundle")
                    .arg(&self.bundle.dir)
                    .arg(&id);
                cmd.stdin(Stdio::null()).stdout(Stdio::null());
                cmd
            }
            Way::HuskPodman | Way::RuncPodman => {
                let (husk, runc) = self.podman.as_ref().context("podman is off")?;
                let p = if way == Way::HuskPodman { husk } else { runc };
                let mut cmd = p.command();
                cmd.args(["run", "--rm", "--network=none", IMAGE, "true"]);
                cmd.stdin(Stdio::null()).stdout(Stdio::null());
                cmd
            }
        };
        let err = self.dir.join("last.stderr");
        cmd.stderr(std::fs::File::create(&err)?);
        let began = monotonic_us();
        let status = cmd.status().with_context(|| format!("{way:?}"))?;
        let ended = monotonic_us();
        if !status.success() {
            bail!(
                "{way:?} run {n}: {status}: {}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        let mut phases = Vec::new();
        if way == Way::HuskCli {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let logged = logged_start(&text)
                .with_context(|| format!("no start timings in husk's debug log: {text}"))?;
            let began_ms = began as f64 / 1000.0;
            phases = logged
                .phases
                .into_iter()
                .map(|(k, at)| (k, at - began_ms))
                .collect();
            phases.push(("exited".into(), ms(began, ended)));
            std::fs::remove_file(&log)?;
        }
        Ok((ms(began, ended), phases))
    }
}

/// What each phase of the breakdown means, by the name logged.
const PHASES: &[(&str, &str)] = &[
    (
        "sandbox",
        "sandbox process started (husk CLI, config, state)",
    ),
    ("virtiofsd", "virtiofsd listening"),
    ("vmm", "VMM started: VM built, vCPUs running"),
    ("kernel", "kernel started (guest clock, counted back)"),
    ("agent_ready", "agent ready (console line)"),
    ("created", "container created, stdio attached"),
    ("started", "process started (`husk start` done)"),
    ("exited", "`husk run` returned (exit, VM stopped, deleted)"),
];

fn print_breakdown(samples: &[Vec<(String, f64)>]) {
    println!(
        "\nBreakdown of `husk run` (medians of {} runs; ms after the command was spawned)\n",
        samples.len()
    );
    println!("| phase reached | at (ms) | phase took (ms) | share of run |");
    println!("|---|---:|---:|---:|");
    let total = median(
        &samples
            .iter()
            .filter_map(|s| s.last().map(|p| p.1))
            .collect::<Vec<_>>(),
    );
    let mut previous = 0.0;
    for (name, what) in PHASES {
        let at: Vec<f64> = samples
            .iter()
            .filter_map(|s| s.iter().find(|(k, _)| k == name).map(|p| p.1))
            .collect();
        if at.is_empty() {
            continue;
        }
        let at = median(&at);
        println!(
            "| {what} | {at:.1} | {:.1} | {:.0}% |",
            at - previous,
            100.0 * (at - previous) / total
        );
        previous = at;
    }
}

fn setup(cli: &Cli) -> anyhow::Result<Bench> {
    let dir = std::env::temp_dir().join(format!("husk-bench-start-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let image = GuestImage::from_env();
    let kernel = if cli.bzimage {
        image.kernel
    } else {
        image.vmlinux
    };
    let husk = HuskCli {
        root: dir.join("husk-root"),
        config: husk_config_with_kernel(&dir.join("husk.toml"), &kernel),
    };
    let bundle = Bundle::new(&dir.join("bundle"), &["true"], false);
    // runc needs /proc in the container (it closes inherited descriptors through
    // /proc/self/fd); husk mounts it too, so both run the same bundle.
    let mut config = spec(&["true"], false);
    config["mounts"] = serde_json::json!([
        { "destination": "/proc", "type": "proc", "source": "proc" }
    ]);
    bundle.write_config(&config);
    let runc = which("runc")?;
    let podman = if cli.no_podman {
        None
    } else {
        let world = Podman::with_kernel(&dir.join("podman"), &kernel);
        let with_runc = world.with_runtime(&runc);
        Some((world, with_runc))
    };
    Ok(Bench {
        dir,
        husk,
        bundle,
        podman,
        runc,
    })
}

fn which(name: &str) -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("{name} is not on PATH"))
}

fn write_csv(path: &Path, samples: &[(Way, usize, f64)]) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path)?;
    writeln!(f, "frontend,runtime,run,ms")?;
    for (way, n, ms) in samples {
        let (front, runtime) = way.label();
        writeln!(f, "{front},{runtime},{n},{ms:.3}")?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let bench = setup(&cli)?;
    let mut ways = vec![Way::HuskCli, Way::RuncCli];
    if bench.podman.is_some() {
        ways.extend([Way::HuskPodman, Way::RuncPodman]);
    }
    // One unmeasured run of each first: caches, podman's first-use set-up.
    for &way in &ways {
        bench.once(way, 0).context("warm-up")?;
    }
    let mut samples = Vec::new();
    let mut phases = Vec::new();
    // Interleaved, so that drift in the (shared, emulated) machine hits all alike.
    for n in 1..=cli.runs {
        for &way in &ways {
            let (ms, p) = bench.once(way, n)?;
            samples.push((way, n, ms));
            if !p.is_empty() {
                phases.push(p);
            }
        }
        eprintln!("bench-start: run {n}/{} done", cli.runs);
    }
    if let Some(path) = &cli.csv {
        write_csv(path, &samples)?;
    }
    let of = |way| -> Vec<f64> { samples.iter().filter(|s| s.0 == way).map(|s| s.2).collect() };
    println!(
        "\nStart latency of `run <busybox bundle> true`, {} interleaved runs each (ms)\n",
        cli.runs
    );
    let mut rows = vec![
        (
            "CLI `run`, median",
            median(&of(Way::HuskCli)),
            median(&of(Way::RuncCli)),
        ),
        (
            "CLI `run`, p95",
            quantile(&of(Way::HuskCli), 0.95),
            quantile(&of(Way::RuncCli), 0.95),
        ),
    ];
    if bench.podman.is_some() {
        rows.push((
            "`podman run --rm`, median",
            median(&of(Way::HuskPodman)),
            median(&of(Way::RuncPodman)),
        ));
        rows.push((
            "`podman run --rm`, p95",
            quantile(&of(Way::HuskPodman), 0.95),
            quantile(&of(Way::RuncPodman), 0.95),
        ));
    }
    husk_tests::ratio_table::print(["husk", "runc", "husk / runc"], &rows);
    print_breakdown(&phases);
    let _ = std::fs::remove_dir_all(&bench.dir);
    Ok(())
}
