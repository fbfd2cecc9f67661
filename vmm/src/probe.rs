//! A KVM probe: create a VM and run a tiny hand-made guest on it.
//!
//! A `/dev/kvm` that opens is not yet one that runs guests: permissions, nested
//! virtualization and paravirtual KVM flavours (PVM) all get in the way. The probe
//! runs a few real-mode instructions that compute a value and write it to an I/O port,
//! and checks what comes out. It is the first thing the smoke test and `husk check`
//! look at.

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};
use std::sync::mpsc;
use std::time::Duration;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Where the probe guest's code is loaded and starts.
const CODE_ADDR: GuestAddress = GuestAddress(0x1000);
/// Size of the probe guest's memory.
const MEM_SIZE: usize = 0x10000;
/// The port the probe guest writes to (the conventional debug port).
const PROBE_PORT: u16 = 0xe9;
/// Exits to tolerate before calling the guest runaway.
const MAX_EXITS: usize = 64;

/// Real-mode code: writes 'O', 'K' and 6*7 to port 0xe9, then halts.
const PROBE_CODE: &[u8] = &[
    0xb0, b'O', // mov al, 'O'
    0xe6, 0xe9, // out 0xe9, al
    0xb0, b'K', // mov al, 'K'
    0xe6, 0xe9, // out 0xe9, al
    0xb8, 0x06, 0x00, // mov ax, 6
    0xbb, 0x07, 0x00, // mov bx, 7
    0xf7, 0xe3, // mul bx (dx:ax = ax * bx)
    0xe6, 0xe9, // out 0xe9, al
    0xf4, // hlt
];

/// What the probe guest must write to its port.
pub const EXPECTED_OUTPUT: &[u8] = &[b'O', b'K', 42];

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `/dev/kvm` could not be opened.
    #[error("cannot open /dev/kvm")]
    Open(#[source] kvm_ioctls::Error),
    /// The KVM API version is not the stable one.
    #[error("KVM API version {0} (expected 12)")]
    ApiVersion(i32),
    /// `KVM_CREATE_VM` failed.
    #[error("cannot create a VM")]
    CreateVm(#[source] kvm_ioctls::Error),
    /// Guest memory could not be allocated or filled.
    #[error("cannot set up guest memory")]
    Memory(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// `KVM_SET_USER_MEMORY_REGION` failed.
    #[error("cannot register guest memory with KVM")]
    MemoryRegion(#[source] kvm_ioctls::Error),
    /// The vCPU could not be created or set up.
    #[error("cannot set up the vCPU")]
    Vcpu(#[source] kvm_ioctls::Error),
    /// `KVM_RUN` failed.
    #[error("KVM_RUN failed")]
    Run(#[source] kvm_ioctls::Error),
    /// The guest stopped in a way the probe code cannot.
    #[error("unexpected VM exit: {0}")]
    UnexpectedExit(String),
    /// The guest ran but computed the wrong thing.
    #[error("guest wrote {got:?} to port 0xe9, expected {expected:?}")]
    WrongOutput {
        /// What it wrote.
        got: Vec<u8>,
        /// What it should have written.
        expected: Vec<u8>,
    },
    /// The guest did not halt in time.
    #[error("guest did not finish within {0:?}")]
    Timeout(Duration),
}

/// What a successful probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Bytes the guest wrote to the probe port.
    pub output: Vec<u8>,
    /// Number of VM exits taken until the guest halted.
    pub exits: usize,
}

/// Runs the probe guest on `/dev/kvm`, giving up after `timeout`.
///
/// On timeout the vCPU thread is left behind (it holds only its own VM); callers
/// are short-lived diagnostics.
pub fn run_probe(timeout: Duration) -> Result<ProbeReport, ProbeError> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("kvm-probe".into())
        .spawn(move || {
            let _ = tx.send(probe_guest());
        })
        .map_err(|e| ProbeError::Memory(Box::new(e)))?;
    rx.recv_timeout(timeout)
        .map_err(|_| ProbeError::Timeout(timeout))?
}

fn probe_guest() -> Result<ProbeReport, ProbeError> {
    let kvm = Kvm::new().map_err(ProbeError::Open)?;
    let api = kvm.get_api_version();
    if api != 12 {
        return Err(ProbeError::ApiVersion(api));
    }
    let vm = kvm.create_vm().map_err(ProbeError::CreateVm)?;

    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)])
        .map_err(|e| ProbeError::Memory(Box::new(e)))?;
    mem.write_slice(PROBE_CODE, CODE_ADDR)
        .map_err(|e| ProbeError::Memory(Box::new(e)))?;
    for (slot, region) in mem.iter().enumerate() {
        let host_addr = mem
            .get_host_address(region.start_addr())
            .map_err(|e| ProbeError::Memory(Box::new(e)))?;
        let region = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host_addr as u64,
        };
        // SAFETY: the region is memory mapped by `mem`, which stays mapped for as long
        // as a vCPU of `vm` can run: the only vCPU is created after `mem` and dropped
        // before it, at the end of this function.
        unsafe { vm.set_user_memory_region(region) }.map_err(ProbeError::MemoryRegion)?;
    }

    let mut vcpu = vm.create_vcpu(0).map_err(ProbeError::Vcpu)?;
    let mut sregs = vcpu.get_sregs().map_err(ProbeError::Vcpu)?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs).map_err(ProbeError::Vcpu)?;
    let mut regs = vcpu.get_regs().map_err(ProbeError::Vcpu)?;
    regs.rip = CODE_ADDR.0;
    regs.rflags = 0x2;
    vcpu.set_regs(&regs).map_err(ProbeError::Vcpu)?;

    let mut output = Vec::new();
    for exits in 1..=MAX_EXITS {
        match vcpu.run().map_err(ProbeError::Run)? {
            VcpuExit::IoOut(PROBE_PORT, data) => output.extend_from_slice(data),
            VcpuExit::Hlt => {
                if output != EXPECTED_OUTPUT {
                    return Err(ProbeError::WrongOutput {
                        got: output,
                        expected: EXPECTED_OUTPUT.to_vec(),
                    });
                }
                return Ok(ProbeReport { output, exits });
            }
            other => return Err(ProbeError::UnexpectedExit(format!("{other:?}"))),
        }
    }
    Err(ProbeError::UnexpectedExit(format!(
        "no HLT after {MAX_EXITS} exits"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_guest_computes_on_local_kvm() {
        if !std::path::Path::new("/dev/kvm").exists() {
            eprintln!("skipped: no /dev/kvm on this host");
            return;
        }
        let report = run_probe(Duration::from_secs(30)).expect("probe guest runs");
        assert_eq!(report.output, EXPECTED_OUTPUT);
        // Three port writes and the halt: one exit each.
        assert_eq!(report.exits, 4);
    }
}
