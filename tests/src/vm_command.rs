//! The command lines that boot the guest image, shared by the end-to-end suites and the
//! benchmarks: husk-vmm, and QEMU's microvm machine as the reference.

use crate::guest_image::workspace_bin;
use std::path::Path;
use std::process::Command;

/// The kernel command line husk guests boot with.
pub const GUEST_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";

/// How to boot: kernel, initramfs, size, extra command-line words.
#[derive(Debug, Clone, Copy)]
pub struct Boot<'a> {
    /// Kernel (bzImage or vmlinux).
    pub kernel: &'a Path,
    /// Initramfs.
    pub initrd: &'a Path,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory, MiB.
    pub mem_mib: u32,
    /// Words appended to [`GUEST_CMDLINE`].
    pub extra_cmdline: &'a str,
}

impl Boot<'_> {
    fn cmdline(&self) -> String {
        format!("{GUEST_CMDLINE} {}", self.extra_cmdline)
            .trim_end()
            .to_owned()
    }
}

/// husk-vmm booting `boot`, console on stdio.
pub fn husk_vmm(boot: Boot<'_>) -> Command {
    let mut cmd = Command::new(workspace_bin("husk-vmm"));
    cmd.arg("--kernel")
        .arg(boot.kernel)
        .arg("--initrd")
        .arg(boot.initrd);
    cmd.args([
        "--vcpus",
        &boot.vcpus.to_string(),
        "--mem",
        &boot.mem_mib.to_string(),
    ]);
    cmd.args(["--cmdline", &boot.cmdline()]);
    cmd
}

/// QEMU's microvm machine on KVM booting `boot`, console on stdio. Guest RAM is a memfd
/// (as husk's), so guest pages count as shared memory in both VMMs' accounting.
pub fn qemu_microvm(boot: Boot<'_>) -> Command {
    let mem = boot.mem_mib;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-enable-kvm",
        "-cpu",
        "host",
        "-smp",
        &boot.vcpus.to_string(),
    ])
    .args(["-m", &format!("{mem}M")])
    .args([
        "-object",
        &format!("memory-backend-memfd,id=ram,size={mem}M"),
    ])
    .args(["-M", "microvm,acpi=off,memory-backend=ram"])
    .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
    .args([
        "-chardev",
        "stdio,id=con,signal=off",
        "-serial",
        "chardev:con",
    ])
    .arg("-kernel")
    .arg(boot.kernel)
    .arg("-initrd")
    .arg(boot.initrd)
    .args(["-append", &boot.cmdline()]);
    cmd
}
