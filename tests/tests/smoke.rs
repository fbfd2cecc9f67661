//! End-to-end smoke tests. They need hardware KVM, so they are ignored by a plain
//! `cargo test` and run inside the testbed by `tests/run.sh` (`--ignored`).

use husk_protocol::console::{POWEROFF_PREFIX, READY_PREFIX};
use husk_tests::console::ConsoleVm;
use husk_tests::guest_image::GuestImage;
use husk_tests::vm_command::{self, Boot};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn kvm_is_real_and_runs_a_tiny_guest() {
    assert!(
        Path::new("/sys/module/kvm_amd").exists() || Path::new("/sys/module/kvm_intel").exists(),
        "/dev/kvm here is not backed by kvm_amd or kvm_intel"
    );
    assert!(
        !Path::new("/sys/module/kvm_pvm").exists(),
        "/dev/kvm here is PVM, which cannot boot unmodified guests"
    );
    let report = husk_vmm::probe::run_probe(Duration::from_secs(30)).expect("probe guest runs");
    assert_eq!(report.output, husk_vmm::probe::EXPECTED_OUTPUT);
}

fn qemu_microvm(image: &GuestImage, extra_cmdline: &str) -> Command {
    vm_command::qemu_microvm(Boot {
        kernel: &image.kernel,
        initrd: &image.initrd,
        vcpus: 1,
        mem_mib: 256,
        extra_cmdline,
    })
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn qemu_microvm_boots_the_guest_image_and_powers_off_on_request() {
    let image = GuestImage::from_env();
    let mut vm = ConsoleVm::spawn(qemu_microvm(&image, "")).expect("start QEMU");
    let ready = vm.wait_for_line(READY_PREFIX, BOOT_TIMEOUT).unwrap();
    eprintln!("{ready} (QEMU start to readiness: {:?})", vm.elapsed());

    vm.send_line("poweroff").unwrap();
    let bye = vm.wait_for_line(POWEROFF_PREFIX, EXIT_TIMEOUT).unwrap();
    assert!(bye.contains("requested on the console"), "{bye}");
    let status = vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert!(status.success(), "QEMU ended with {status}");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn agent_powers_off_by_itself_after_its_timeout() {
    let image = GuestImage::from_env();
    let mut vm = ConsoleVm::spawn(qemu_microvm(&image, "husk.poweroff_after=1")).expect("start");
    vm.wait_for_line(READY_PREFIX, BOOT_TIMEOUT).unwrap();
    let bye = vm.wait_for_line(POWEROFF_PREFIX, EXIT_TIMEOUT).unwrap();
    assert!(bye.contains("husk.poweroff_after=1s elapsed"), "{bye}");
    let status = vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert!(status.success(), "QEMU ended with {status}");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn agent_refuses_a_mistyped_setting_and_still_ends_the_vm() {
    let image = GuestImage::from_env();
    let mut vm = ConsoleVm::spawn(qemu_microvm(&image, "husk.powerof_after=1")).expect("start");
    let fatal = vm
        .wait_for_line("husk-agent: fatal:", BOOT_TIMEOUT)
        .unwrap();
    assert!(
        fatal.contains("unknown setting husk.powerof_after"),
        "{fatal}"
    );
    let status = vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert!(status.success(), "QEMU ended with {status}");
    assert!(
        !vm.transcript.iter().any(|l| l.starts_with(READY_PREFIX)),
        "agent announced readiness despite a bad setting"
    );
}
