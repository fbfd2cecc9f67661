//! The build machine's side of the testbed: start the test host under QEMU TCG, stream
//! its console, enforce the timeout, and always take QEMU down with us.

use super::job::{self, Job, JobError};
use super::{JOB_TAG, ROOT_TAG};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::Pid;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How to start the test host.
#[derive(Debug, Clone)]
pub struct TestbedConfig {
    /// The test-host kernel (a bzImage built from `guest-image/kernel/testhost.config`).
    pub kernel: PathBuf,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Test-host memory in MiB.
    pub mem_mib: u32,
    /// Test-host vCPUs (one QEMU TCG thread each).
    pub cpus: u32,
    /// How long the whole run may take, boot included.
    pub timeout: Duration,
    /// Show the test host's kernel messages rather than only warnings.
    pub verbose: bool,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job ran and ended with this status (128+N for signal N).
    Exited(i32),
    /// The test host stopped without reporting a status (it crashed, or init failed).
    NoStatus,
    /// The timeout struck and QEMU was killed.
    TimedOut,
    /// We were asked to stop (SIGINT, SIGTERM, SIGHUP) and killed QEMU.
    Interrupted(Signal),
}

/// A run that could not even start, or whose result cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// The test-host kernel is missing.
    #[error(
        "test-host kernel {0} does not exist (build it: guest-image/build.sh kernel testhost)"
    )]
    NoKernel(PathBuf),
    /// The job directory could not be made.
    #[error("cannot create the job directory under {dir}")]
    JobDir {
        /// Where it was to be.
        dir: PathBuf,
        /// Why not.
        #[source]
        source: std::io::Error,
    },
    /// The job could not be written or its status read.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The path of the running executable is unknown.
    #[error("cannot find the husk-testbed executable")]
    OwnPath(#[source] std::io::Error),
    /// QEMU could not be started or waited for.
    #[error("cannot run {qemu}")]
    Qemu {
        /// The QEMU binary.
        qemu: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Signal set-up failed.
    #[error("cannot set up signal handling")]
    Signals(#[source] nix::Error),
}

/// The kernel command line of the test host. `tsc_khz` is the build machine's TSC
/// frequency, if known: under TCG the test host's TSC is the build machine's, and
/// without it the test host cannot calibrate its TSC (no HPET, and the PIT method fails
/// under emulation), falls back to 4 ms jiffies, and every time measured inside is that
/// coarse. A test host whose kernel oopses cannot be trusted any further (`oops=panic`):
/// it panics, resets, and QEMU (`-no-reboot`) ends, so the run fails at once instead
/// of at its timeout.
pub fn kernel_cmdline(init: &Path, verbose: bool, tsc_khz: Option<u64>) -> String {
    let tsc = tsc_khz.map_or(String::new(), |khz| {
        format!(" tsc_early_khz={khz} tsc=reliable")
    });
    format!(
        "console=ttyS0 reboot=t panic=-1 oops=panic {}{tsc} root={ROOT_TAG} rootfstype=9p \
         rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro init={}",
        if verbose {
            "loglevel=7"
        } else {
            "quiet loglevel=3"
        },
        init.display()
    )
}

/// The TSC frequency of this machine in kHz, from `/proc/cpuinfo`, when its TSC is
/// constant (`constant_tsc`): the only case where the test host can use it.
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    let first_cpu = cpuinfo.split("\n\n").next()?;
    let flags = first_cpu.lines().find_map(|l| l.strip_prefix("flags"))?;
    if !flags.split_whitespace().any(|f| f == "constant_tsc") {
        return None;
    }
    let mhz: f64 = first_cpu
        .lines()
        .find_map(|l| l.strip_prefix("cpu MHz"))?
        .trim_start_matches([' ', '\t', ':'])
        .trim()
        .parse()
        .ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

/// EPYC features that TCG does not emulate. QEMU drops them anyway; naming them
/// spares a warning per feature and per vCPU.
const TCG_MISSING_FEATURES: &[&str] = &[
    "rdseed",
    "sha-ni",
    "fxsr-opt",
    "misalignsse",
    "3dnowprefetch",
    "osvw",
    "topoext",
    "perfctr-core",
    "clzero",
    "xsaveerptr",
    "ibpb",
    "nrip-save",
    "xsavec",
    "xsaves",
];

/// The test host's CPU: an AMD EPYC with SVM and nested paging, less what TCG lacks.
pub fn cpu_model() -> String {
    let mut model = String::from("EPYC,+svm,+npt");
    for feature in TCG_MISSING_FEATURES {
        model.push_str(",-");
        model.push_str(feature);
    }
    model
}

/// The QEMU command line that boots the test host.
pub fn qemu_args(config: &TestbedConfig, init: &Path, job_dir: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |a: &str| args.push(a.into());
    // An AMD CPU with SVM and nested paging, emulated: the test host's KVM is real.
    push("-accel");
    push("tcg,thread=multi");
    push("-cpu");
    push(&cpu_model());
    push("-M");
    push("microvm,acpi=off,rtc=on");
    push("-smp");
    push(&config.cpus.to_string());
    push("-m");
    push(&format!("{}M", config.mem_mib));
    for a in ["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"] {
        push(a);
    }
    push("-chardev");
    push("stdio,id=console,signal=off");
    push("-serial");
    push("chardev:console");
    // This machine's root, read-only; the job directory, read-write.
    push("-fsdev");
    push("local,id=root,path=/,security_model=none,readonly=on,multidevs=remap");
    push("-device");
    push(&format!("virtio-9p-device,fsdev=root,mount_tag={ROOT_TAG}"));
    push("-fsdev");
    push(&format!(
        "local,id=job,path={},security_model=none,multidevs=remap",
        job_dir.display()
    ));
    push("-device");
    push(&format!("virtio-9p-device,fsdev=job,mount_tag={JOB_TAG}"));
    push("-kernel");
    push(&config.kernel.display().to_string());
    push("-append");
    let tsc_khz = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| host_tsc_khz(&c));
    push(&kernel_cmdline(init, config.verbose, tsc_khz));
    args
}

/// A temporary directory removed on drop.
#[derive(Debug)]
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> Result<Self, TestbedError> {
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = base.join(format!("husk-testbed-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|source| TestbedError::JobDir { dir: base, source })?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

enum Event {
    QemuExited,
    Signal(Signal),
}

/// Boots the test host, runs `job` in it, and returns how it ended.
///
/// The test host's console (the job's stdout and stderr) is copied to our stdout.
/// QEMU dies with us: it gets SIGKILL on timeout, on SIGINT/SIGTERM/SIGHUP, and,
/// through `PR_SET_PDEATHSIG`, if this process is killed outright.
pub fn run(config: &TestbedConfig, job: &Job) -> Result<Outcome, TestbedError> {
    if !config.kernel.is_file() {
        return Err(TestbedError::NoKernel(config.kernel.clone()));
    }
    let scratch = ScratchDir::new()?;
    job.write_to(&scratch.0)?;
    let init = std::env::current_exe().map_err(TestbedError::OwnPath)?;

    let mut signals = SigSet::empty();
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(sig);
    }
    signals.thread_block().map_err(TestbedError::Signals)?;

    let qemu_err = |source| TestbedError::Qemu {
        qemu: config.qemu.clone(),
        source,
    };
    let mut cmd = Command::new(&config.qemu);
    cmd.args(qemu_args(config, &init, &scratch.0))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // Runs in the child between fork and exec. PR_SET_PDEATHSIG fires when the
    // forking *thread* ends: `run` is called from the main thread, which lives until
    // the process exits.
    let in_child = || -> std::io::Result<()> {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no memory.
        if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        SigSet::all().thread_unblock()?;
        Ok(())
    };
    // SAFETY: `in_child` only makes async-signal-safe system calls (prctl,
    // sigprocmask) and allocates nothing.
    unsafe { cmd.pre_exec(in_child) };
    let mut child = cmd.spawn().map_err(qemu_err)?;

    let console = child.stdout.take().expect("stdout was piped");
    let relay = std::thread::spawn(move || relay_console(console));

    let (tx, rx) = mpsc::channel();
    let pid = Pid::from_raw(child.id() as i32);
    let waiter = {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(Event::QemuExited);
            status
        })
    };
    std::thread::spawn(move || {
        if let Ok(sig) = signals.wait() {
            let _ = tx.send(Event::Signal(sig));
        }
    });

    let outcome = match rx.recv_timeout(config.timeout) {
        Ok(Event::QemuExited) => None,
        Ok(Event::Signal(sig)) => Some(Outcome::Interrupted(sig)),
        Err(_) => Some(Outcome::TimedOut),
    };
    if outcome.is_some() {
        // QEMU may have exited in the meantime: then the kill fails harmlessly, as the
        // pid is not reaped (and so not reused) until the waiter thread returns.
        let _ = kill(pid, Signal::SIGKILL);
    }
    let status = waiter.join().expect("waiter thread").map_err(qemu_err)?;
    let _ = relay.join();
    if let Some(outcome) = outcome {
        return Ok(outcome);
    }
    if !status.success() {
        eprintln!("husk-testbed: QEMU exited with {status}");
    }
    Ok(match job::read_status(&scratch.0)? {
        Some(code) => Outcome::Exited(code),
        None => Outcome::NoStatus,
    })
}

/// Copies the serial console to stdout line by line, turning the tty's CRLF into LF.
fn relay_console(console: impl std::io::Read) {
    let mut reader = BufReader::new(console);
    let mut line = Vec::new();
    let stdout = std::io::stdout();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if line.ends_with(b"\r\n") {
                    line.truncate(line.len() - 2);
                    line.push(b'\n');
                }
                let mut out = stdout.lock();
                let _ = out.write_all(&line);
                let _ = out.flush();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TestbedConfig {
        TestbedConfig {
            kernel: "/cache/bzImage".into(),
            qemu: "qemu-system-x86_64".into(),
            mem_mib: 4096,
            cpus: 2,
            timeout: Duration::from_secs(60),
            verbose: false,
        }
    }

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn test_host_is_an_emulated_amd_cpu_with_svm() {
        let args = joined(&qemu_args(
            &config(),
            Path::new("/x/husk-testbed"),
            Path::new("/j"),
        ));
        assert!(args.contains("-accel tcg"), "{args}");
        assert!(args.contains("-cpu EPYC,+svm,+npt,"), "{args}");
        assert!(args.contains("-no-reboot"), "{args}");
        assert!(args.contains("-smp 2 -m 4096M"), "{args}");
    }

    #[test]
    fn root_is_shared_read_only_and_job_dir_read_write() {
        let args = qemu_args(
            &config(),
            Path::new("/x/husk-testbed"),
            Path::new("/tmp/job"),
        );
        let fsdevs: Vec<String> = args
            .windows(2)
            .filter(|w| w[0] == "-fsdev")
            .map(|w| w[1].to_string_lossy().into_owned())
            .collect();
        assert_eq!(fsdevs.len(), 2);
        assert!(fsdevs[0].contains("path=/,") && fsdevs[0].contains("readonly=on"));
        assert!(fsdevs[1].contains("path=/tmp/job,") && !fsdevs[1].contains("readonly"));
    }

    #[test]
    fn test_host_boots_our_init_from_the_shared_root() {
        let cmdline = kernel_cmdline(Path::new("/work/target/debug/husk-testbed"), false, None);
        assert!(cmdline.contains("root=hostroot rootfstype=9p"), "{cmdline}");
        assert!(
            cmdline.contains(" ro init=/work/target/debug/husk-testbed"),
            "{cmdline}"
        );
        assert!(
            cmdline.contains("reboot=t panic=-1 oops=panic"),
            "{cmdline}"
        );
    }

    #[test]
    fn tsc_frequency_is_passed_only_when_constant() {
        let cpuinfo = "processor\t: 0\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n\
                       cpu MHz\t\t: 2596.134\n\nprocessor\t: 1\ncpu MHz\t\t: 1.0\n";
        assert_eq!(host_tsc_khz(cpuinfo), Some(2_596_134));
        assert_eq!(host_tsc_khz("flags\t: fpu tsc\ncpu MHz\t: 2596.1\n"), None);
        assert_eq!(host_tsc_khz("flags\t: constant_tsc\n"), None);
        let cmdline = kernel_cmdline(Path::new("/i"), false, Some(2_596_134));
        assert!(
            cmdline.contains(" tsc_early_khz=2596134 tsc=reliable "),
            "{cmdline}"
        );
    }

    #[test]
    fn missing_kernel_is_named() {
        let job = Job {
            argv: vec!["true".into()],
            env: vec![],
            cwd: "/".into(),
        };
        let mut config = config();
        config.kernel = "/nonexistent/bzImage".into();
        let err = run(&config, &job).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bzImage"), "{err}");
    }
}
