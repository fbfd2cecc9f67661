//! The KVM VM: in-kernel interrupt controllers and timer, guest memory registration,
//! irqfds and ioeventfds.

use crate::arch::x86_64::layout::{KVM_IDENTITY_MAP_START, KVM_TSS_START};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// Why the VM could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `/dev/kvm` could not be opened.
    #[error("cannot open /dev/kvm")]
    OpenKvm(#[source] kvm_ioctls::Error),
    /// A KVM ioctl of VM set-up failed.
    #[error("KVM refused {0}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// More vCPUs than KVM allows.
    #[error("{wanted} vCPUs requested, KVM allows at most {max}")]
    TooManyVcpus {
        /// Requested.
        wanted: usize,
        /// KVM's limit.
        max: usize,
    },
}

/// A VM with its interrupt controllers and memory in place.
#[derive(Debug)]
pub struct Vm {
    /// The KVM system handle (for CPUID queries).
    pub kvm: Kvm,
    /// The VM file descriptor.
    pub fd: VmFd,
}

impl Vm {
    /// Creates the VM: TSS and identity-map pages, in-kernel PIC/IOAPIC/LAPIC and PIT,
    /// and every region of `mem` registered.
    pub fn new(mem: &GuestMemoryMmap, vcpus: usize) -> Result<Vm, VmError> {
        let kvm = Kvm::new().map_err(VmError::OpenKvm)?;
        let max = kvm.get_max_vcpus();
        if vcpus > max {
            return Err(VmError::TooManyVcpus { wanted: vcpus, max });
        }
        let fd = kvm
            .create_vm()
            .map_err(|e| VmError::Kvm("KVM_CREATE_VM", e))?;
        fd.set_tss_address(KVM_TSS_START as usize)
            .map_err(|e| VmError::Kvm("KVM_SET_TSS_ADDR", e))?;
        fd.set_identity_map_address(KVM_IDENTITY_MAP_START)
            .map_err(|e| VmError::Kvm("KVM_SET_IDENTITY_MAP_ADDR", e))?;
        fd.create_irq_chip()
            .map_err(|e| VmError::Kvm("KVM_CREATE_IRQCHIP", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit)
            .map_err(|e| VmError::Kvm("KVM_CREATE_PIT2", e))?;
        for (slot, region) in mem.iter().enumerate() {
            let host = region.as_ptr() as u64;
            let kvm_region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host,
            };
            // SAFETY: the region is mapped by `mem`, which the caller keeps alive (the
            // VMM owns both and drops the vCPUs and this VM before the memory).
            unsafe { fd.set_user_memory_region(kvm_region) }
                .map_err(|e| VmError::Kvm("KVM_SET_USER_MEMORY_REGION", e))?;
        }
        Ok(Vm { kvm, fd })
    }
}
