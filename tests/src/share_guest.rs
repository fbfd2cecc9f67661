//! A guest booted by husk-vmm with a host directory as its virtio-fs share `rootfs`,
//! and `husk-checker` run in it as container processes whose root is that share.
//! Shared by the virtio-fs suite and benchmark.

use crate::console::{ConsoleVm, POST_MORTEM_LINES};
use crate::guest_exec::{self, Ran};
use crate::guest_image::GuestImage;
use crate::vm_command::{self, Boot};
use husk_protocol::console::READY_PREFIX;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

/// How long the guest may take to boot in the testbed.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long it may take to power off.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Where the agent mounts the share (`husk.share=rootfs`).
pub const GUEST_ROOTFS: &str = "/run/husk/shares/rootfs";

/// The static checker (`HUSK_CHECKER`, set by tests/run.sh and tests/bench.sh).
pub fn checker() -> Result<PathBuf, String> {
    std::env::var_os("HUSK_CHECKER")
        .map(PathBuf::from)
        .ok_or_else(|| "HUSK_CHECKER is not set: run through tests/run.sh".to_owned())
}

/// The virtiofsd binary (`HUSK_VIRTIOFSD`, set by tests/run.sh and tests/bench.sh).
pub fn virtiofsd() -> Result<PathBuf, String> {
    std::env::var_os("HUSK_VIRTIOFSD")
        .map(PathBuf::from)
        .ok_or_else(|| "HUSK_VIRTIOFSD is not set: run through tests/run.sh".to_owned())
}

/// The booted guest.
#[derive(Debug)]
pub struct ShareGuest {
    /// Its console.
    pub vm: ConsoleVm,
    vsock: PathBuf,
    stderr: PathBuf,
    runs: u32,
    timeout: Duration,
}

impl ShareGuest {
    /// Copies the checker into `share` and boots a guest (1 vCPU, 512 MiB) sharing
    /// it with virtiofsd's cache policy `cache`; sockets and husk-vmm's stderr go to
    /// `work`. Each checker run may take up to `timeout`.
    pub fn boot(
        work: &Path,
        share: &Path,
        cache: &str,
        timeout: Duration,
    ) -> Result<ShareGuest, String> {
        Self::boot_with(work, share, cache, timeout, &[])
    }

    /// [`ShareGuest::boot`], with more husk-vmm arguments (devices).
    pub fn boot_with(
        work: &Path,
        share: &Path,
        cache: &str,
        timeout: Duration,
        vmm_args: &[&str],
    ) -> Result<ShareGuest, String> {
        std::fs::copy(checker()?, share.join("husk-checker"))
            .map_err(|e| format!("copy the checker into {}: {e}", share.display()))?;
        let image = GuestImage::from_env();
        let vsock = work.join("vsock.sock");
        let stderr = work.join("husk-vmm.stderr");
        let mut cmd = vm_command::husk_vmm(Boot {
            kernel: &image.kernel,
            initrd: &image.initrd,
            // One vCPU: the testbed's nested KVM now and then leaves a halted vCPU
            // asleep while another spins waiting for it (docs/testing.md); these
            // tests need no SMP.
            vcpus: 1,
            mem_mib: 512,
            extra_cmdline: "husk.share=rootfs",
        });
        cmd.arg("--vsock").arg(&vsock);
        cmd.arg("--share")
            .arg(share)
            .arg("--virtiofsd")
            .arg(virtiofsd()?);
        cmd.arg("--virtiofsd-socket")
            .arg(work.join("virtiofsd.sock"));
        cmd.args(["--virtiofsd-cache", cache]);
        cmd.args(vmm_args);
        if let Ok(level) = std::env::var("HUSK_TEST_VMM_LOG") {
            cmd.args(["--log-level", &level]);
        }
        let log = std::fs::File::create(&stderr).map_err(|e| e.to_string())?;
        cmd.stderr(log);
        let mut vm = ConsoleVm::spawn(cmd).map_err(|e| format!("start husk-vmm: {e}"))?;
        vm.wait_for_line(READY_PREFIX, BOOT_TIMEOUT)?;
        if !vm
            .transcript
            .iter()
            .any(|l| l.contains("share \"rootfs\" mounted"))
        {
            return Err(format!(
                "the agent did not mount the share:\n{}",
                vm.transcript.join("\n")
            ));
        }
        Ok(ShareGuest {
            vm,
            vsock,
            stderr,
            runs: 0,
            timeout,
        })
    }

    /// Runs the checker in the guest with `args`.
    pub fn run(&mut self, args: &[&str]) -> Result<Ran, String> {
        let mut argv = vec!["/husk-checker"];
        argv.extend_from_slice(args);
        self.run_argv(&argv)
    }

    /// Runs `argv` (a program of the share, by its path there) in the guest.
    pub fn run_argv(&mut self, argv: &[&str]) -> Result<Ran, String> {
        self.runs += 1;
        let id = format!("check-{}", self.runs);
        guest_exec::run(&self.vsock, &id, GUEST_ROOTFS, argv, self.timeout)
            .map_err(|e| format!("{argv:?}: {e}\n{}", self.post_mortem()))
    }

    /// What a failure report needs: [`ConsoleVm::post_mortem`] and the end of
    /// husk-vmm's stderr.
    pub fn post_mortem(&mut self) -> String {
        // First: the VMM's report adds register lines to its stderr.
        let vm = self.vm.post_mortem();
        let stderr = self.vmm_stderr();
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = &lines[lines.len().saturating_sub(POST_MORTEM_LINES)..];
        format!(
            "{vm}\n--- husk-vmm stderr (last lines):\n{}",
            tail.join("\n")
        )
    }

    /// Runs the checker and gives back its stdout, trimmed; an error unless it exits 0.
    pub fn check(&mut self, args: &[&str]) -> Result<String, String> {
        let ran = self.run(args)?;
        if ran.exit_code != Some(0) {
            return Err(format!("checker {args:?}: {ran:?}"));
        }
        Ok(ran.stdout.trim_end().to_owned())
    }

    /// Powers the guest off from its console and gives back husk-vmm's status.
    pub fn power_off(mut self) -> Result<ExitStatus, String> {
        self.vm.send_line("poweroff")?;
        self.vm.wait_exit(EXIT_TIMEOUT)
    }

    /// Where husk-vmm's stderr goes.
    pub fn stderr_path(&self) -> &Path {
        &self.stderr
    }

    /// What husk-vmm wrote on stderr so far.
    pub fn vmm_stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// The value of `key=` among the words of a checker's output line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}
