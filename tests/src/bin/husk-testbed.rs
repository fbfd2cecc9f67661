//! `husk-testbed`: run a command inside the emulated test host, where `/dev/kvm` is real.
//!
//! ```text
//! husk-testbed [--timeout SECS] [--mem MIB] [--cpus N] [--env K=V]... -- COMMAND [ARGS]...
//! ```
//!
//! Exits with the command's status; 124 on timeout, 125 if the testbed itself failed.

use anyhow::Context;
use clap::Parser;
use husk_tests::testbed::host::{self, Outcome, TestbedConfig};
use husk_tests::testbed::init;
use husk_tests::testbed::job::Job;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Variables passed from the caller's environment into the test host.
const PASSED_ENV: &[&str] = &["TERM", "RUST_BACKTRACE", "RUST_LOG", "NO_COLOR"];
/// Prefixes of variables passed from the caller's environment into the test host.
const PASSED_ENV_PREFIXES: &[&str] = &["HUSK_", "CARGO_"];

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Run a command inside husk's emulated test host (real /dev/kvm)"
)]
struct Cli {
    /// Test-host kernel; default: $HUSK_TESTBED_KERNEL, else `guest-image/build.sh path testhost`.
    #[arg(long)]
    kernel: Option<PathBuf>,
    /// QEMU binary that emulates the test host.
    #[arg(long, default_value = "qemu-system-x86_64")]
    qemu: PathBuf,
    /// Give up (and kill QEMU) after this many seconds; exit status 124.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Test-host memory, MiB.
    #[arg(long, default_value_t = 4096)]
    mem: u32,
    /// Test-host vCPUs.
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// Extra environment for the command, KEY=VALUE (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    envs: Vec<String>,
    /// Show the test host's kernel messages.
    #[arg(long, short)]
    verbose: bool,
    /// The command to run in the test host (looked up in PATH there).
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    if std::process::id() == 1 {
        init::run();
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("husk-testbed: error: {e:#}");
            ExitCode::from(init::SETUP_FAILED as u8)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let kernel = match cli
        .kernel
        .or_else(|| std::env::var_os("HUSK_TESTBED_KERNEL").map(PathBuf::from))
    {
        Some(k) => k,
        None => built_kernel()?,
    };
    let config = TestbedConfig {
        kernel,
        qemu: cli.qemu,
        mem_mib: cli.mem,
        cpus: cli.cpus,
        timeout: Duration::from_secs(cli.timeout),
        verbose: cli.verbose,
    };
    let job = Job {
        argv: cli.command,
        env: job_env(&cli.envs)?,
        cwd: std::env::current_dir().context("current directory")?,
    };
    Ok(match host::run(&config, &job)? {
        Outcome::Exited(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Outcome::NoStatus => {
            eprintln!("husk-testbed: the test host stopped without reporting the command's status");
            ExitCode::from(init::SETUP_FAILED as u8)
        }
        Outcome::TimedOut => {
            eprintln!(
                "husk-testbed: timed out after {}s; QEMU killed",
                cli.timeout
            );
            ExitCode::from(124)
        }
        Outcome::Interrupted(sig) => {
            eprintln!("husk-testbed: {sig}; QEMU killed");
            ExitCode::from(128 + sig as u8)
        }
    })
}

/// The environment of the command: a fixed base, selected variables of ours, then --env.
fn job_env(extra: &[String]) -> anyhow::Result<Vec<(OsString, OsString)>> {
    let mut env: Vec<(OsString, OsString)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("HOME".into(), "/root".into()),
        ("TMPDIR".into(), "/tmp".into()),
        ("HUSK_TESTBED".into(), "1".into()),
    ];
    for (key, value) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if PASSED_ENV.contains(&name.as_ref())
            || PASSED_ENV_PREFIXES.iter().any(|p| name.starts_with(p))
        {
            env.push((key, value));
        }
    }
    for kv in extra {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--env {kv:?}: expected KEY=VALUE"))?;
        env.retain(|(key, _)| key != k);
        env.push((k.into(), v.into()));
    }
    Ok(env)
}

/// Asks the guest-image build for the (cached) test-host kernel.
fn built_kernel() -> anyhow::Result<PathBuf> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-image/build.sh");
    let out = std::process::Command::new("bash")
        .args([script, "path", "testhost"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {script}"))?;
    anyhow::ensure!(out.status.success(), "{script} path testhost failed");
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}
