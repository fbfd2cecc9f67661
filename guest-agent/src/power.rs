//! Ending the VM.
//!
//! husk guests have neither ACPI nor a power button: the agent ends the VM with a
//! reset. The kernel is booted with `reboot=t`, so the reset is a triple fault, which
//! KVM reports to the VMM as a shutdown exit; husk's VMM and QEMU run with
//! `-no-reboot` both treat it as the end of the VM.

use nix::sys::reboot::{reboot, RebootMode};

/// Flushes filesystems and resets the machine. Never returns: if the reset call
/// itself fails, the agent exits, the kernel panics, and `panic=-1` resets it.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let err = match reboot(RebootMode::RB_AUTOBOOT) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("husk-agent: reboot(2) failed: {err}");
    std::process::exit(1)
}
