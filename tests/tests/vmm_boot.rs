//! husk's own VMM booting the guest image, end to end. Needs hardware KVM: ignored by
//! a plain `cargo test`, run inside the testbed by `tests/run.sh`.

use husk_protocol::console::{POWEROFF_PREFIX, READY_PREFIX};
use husk_tests::console::ConsoleVm;
use husk_tests::guest_image::GuestImage;
use husk_tests::vm_command::{self, Boot};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
fn husk_vmm(kernel: &Path, initrd: &Path, vcpus: u8, mem_mib: u32, extra: &str) -> Command {
    vm_command::husk_vmm(Boot {
        kernel,
        initrd,
        vcpus,
        mem_mib,
        extra_cmdline: extra,
    })
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn husk_vmm_boots_the_bzimage_and_powers_off_on_request() {
    let image = GuestImage::from_env();
    let mut vm = ConsoleVm::spawn(husk_vmm(&image.kernel, &image.initrd, 1, 256, "")).unwrap();
    let ready = vm.wait_for_line(READY_PREFIX, BOOT_TIMEOUT).unwrap();
    eprintln!("{ready} (husk-vmm start to readiness: {:?})", vm.elapsed());
    assert!(ready.contains(" 1 cpus,"), "{ready}");

    vm.send_line("poweroff").unwrap();
    let bye = vm.wait_for_line(POWEROFF_PREFIX, EXIT_TIMEOUT).unwrap();
    assert!(bye.contains("requested on the console"), "{bye}");
    let status = vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert!(status.success(), "husk-vmm ended with {status}");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn husk_vmm_boots_the_elf_vmlinux_with_two_vcpus() {
    let image = GuestImage::from_env();
    let cmd = husk_vmm(
        &image.vmlinux,
        &image.initrd,
        2,
        512,
        "husk.poweroff_after=1",
    );
    let mut vm = ConsoleVm::spawn(cmd).unwrap();
    let ready = vm.wait_for_line(READY_PREFIX, BOOT_TIMEOUT).unwrap();
    assert!(ready.contains(" 2 cpus,"), "{ready}");
    let mib: u64 = ready
        .split(", ")
        .find_map(|part| part.strip_suffix(" MiB"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no memory size in {ready:?}"));
    assert!(
        (400..=512).contains(&mib),
        "guest sees {mib} MiB of 512: {ready}"
    );
    vm.wait_for_line(POWEROFF_PREFIX, EXIT_TIMEOUT).unwrap();
    let status = vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert!(status.success(), "husk-vmm ended with {status}");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn sigterm_stops_husk_vmm_with_a_running_guest() {
    let image = GuestImage::from_env();
    let mut vm = ConsoleVm::spawn(husk_vmm(&image.kernel, &image.initrd, 2, 256, "")).unwrap();
    vm.wait_for_line(READY_PREFIX, BOOT_TIMEOUT).unwrap();
    let pid = nix::unistd::Pid::from_raw(vm.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert_eq!(
        status.code(),
        Some(128 + 15),
        "husk-vmm ended with {status}"
    );
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn guest_sees_the_virtio_rng_device() {
    let image = GuestImage::from_env();
    let mut cmd = husk_vmm(
        &image.kernel,
        &image.initrd,
        1,
        256,
        "husk.poweroff_after=1",
    );
    cmd.arg("--rng");
    let mut vm = ConsoleVm::spawn(cmd).unwrap();
    let devices = vm
        .wait_for_line("husk-agent: virtio devices:", BOOT_TIMEOUT)
        .unwrap();
    assert!(devices.contains("entropy"), "{devices}");
    let status = vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert!(status.success(), "husk-vmm ended with {status}");
}
