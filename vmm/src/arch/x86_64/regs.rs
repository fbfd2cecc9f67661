//! The vCPU state Linux expects at its 64-bit entry point: long mode with paging on an
//! identity map, flat segments, `rsi` pointing at the zero page.

use super::gdt::{self, BOOT_GDT};
use super::layout::{
    BOOT_GDT_START, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START, PDPTE_START, PML4_START,
    ZERO_PAGE_START,
};
use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, kvm_sregs, Msrs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Why a vCPU could not be put in its boot state.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// Boot tables could not be written to guest memory.
    #[error("cannot write the boot {0} to guest memory")]
    Memory(&'static str, #[source] vm_memory::GuestMemoryError),
    /// A register ioctl failed.
    #[error("cannot set the vCPU's {0}")]
    Kvm(&'static str, #[source] kvm_ioctls::Error),
    /// KVM accepted only some of the boot MSRs.
    #[error("KVM set {set} of {wanted} boot MSRs")]
    PartialMsrs {
        /// How many it set.
        set: usize,
        /// How many there were.
        wanted: usize,
    },
}

/// Writes the boot GDT, IDT and identity-mapped page tables (first GiB, 2 MiB pages).
pub fn write_boot_tables(mem: &GuestMemoryMmap) -> Result<(), RegsError> {
    for (i, entry) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(BOOT_GDT_START + 8 * i as u64))
            .map_err(|e| RegsError::Memory("GDT", e))?;
    }
    mem.write_obj(0u64, GuestAddress(BOOT_IDT_START))
        .map_err(|e| RegsError::Memory("IDT", e))?;
    let table = |e| RegsError::Memory("page tables", e);
    mem.write_obj(PDPTE_START | 0x3, GuestAddress(PML4_START))
        .map_err(table)?;
    mem.write_obj(PDE_START | 0x3, GuestAddress(PDPTE_START))
        .map_err(table)?;
    for i in 0..512u64 {
        // Present, writable, 2 MiB page.
        mem.write_obj((i << 21) | 0x83, GuestAddress(PDE_START + i * 8))
            .map_err(table)?;
    }
    Ok(())
}

/// The special registers for the 64-bit entry, starting from the vCPU's current ones.
pub fn boot_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let seg = |i: u16| gdt::kvm_segment(BOOT_GDT[i as usize], i);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&BOOT_GDT) - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = seg(gdt::CODE_INDEX);
    let data = seg(gdt::DATA_INDEX);
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.tr = seg(gdt::TSS_INDEX);
    sregs.cr0 |= X86_CR0_PE | X86_CR0_PG;
    sregs.cr3 = PML4_START;
    sregs.cr4 |= X86_CR4_PAE;
    sregs.efer |= EFER_LME | EFER_LMA;
    sregs
}

/// The general registers for the 64-bit entry at `entry`.
pub fn boot_regs(entry: u64) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    }
}

/// MSRs with the values Linux expects from firmware.
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    const MSR_IA32_TSC: u32 = 0x10;
    const MSR_IA32_SYSENTER_CS: u32 = 0x174;
    const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
    const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
    const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
    const MSR_MTRR_DEF_TYPE: u32 = 0x2ff;
    const MSR_STAR: u32 = 0xc000_0081;
    const MSR_LSTAR: u32 = 0xc000_0082;
    const MSR_CSTAR: u32 = 0xc000_0083;
    const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
    const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
    const MISC_ENABLE_FAST_STRING: u64 = 1;
    const MTRR_ENABLE: u64 = 1 << 11;
    const MTRR_TYPE_WRBACK: u64 = 6;
    let entry = |index, data| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    };
    vec![
        entry(MSR_IA32_SYSENTER_CS, 0),
        entry(MSR_IA32_SYSENTER_ESP, 0),
        entry(MSR_IA32_SYSENTER_EIP, 0),
        entry(MSR_STAR, 0),
        entry(MSR_CSTAR, 0),
        entry(MSR_KERNEL_GS_BASE, 0),
        entry(MSR_SYSCALL_MASK, 0),
        entry(MSR_LSTAR, 0),
        entry(MSR_IA32_TSC, 0),
        entry(MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
        entry(MSR_MTRR_DEF_TYPE, MTRR_ENABLE | MTRR_TYPE_WRBACK),
    ]
}

/// Local APIC: LINT0 delivers ExtINT (the PIC), LINT1 delivers NMI, as firmware leaves it.
pub fn setup_lint(vcpu: &VcpuFd) -> Result<(), RegsError> {
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const MODE_EXTINT: u32 = 0x7;
    const MODE_NMI: u32 = 0x4;
    let mut lapic = vcpu.get_lapic().map_err(|e| RegsError::Kvm("LAPIC", e))?;
    for (reg, mode) in [(APIC_LVT0, MODE_EXTINT), (APIC_LVT1, MODE_NMI)] {
        let bytes: [u8; 4] = std::array::from_fn(|i| lapic.regs[reg + i] as u8);
        let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            lapic.regs[reg + i] = b as _;
        }
    }
    vcpu.set_lapic(&lapic)
        .map_err(|e| RegsError::Kvm("LAPIC", e))
}

/// Puts `vcpu` in the state of Linux's 64-bit entry at `entry`.
pub fn setup_boot_vcpu(vcpu: &VcpuFd, entry: u64) -> Result<(), RegsError> {
    let msrs = boot_msrs();
    let kvm_msrs = Msrs::from_entries(&msrs).map_err(|_| RegsError::PartialMsrs {
        set: 0,
        wanted: msrs.len(),
    })?;
    let set = vcpu
        .set_msrs(&kvm_msrs)
        .map_err(|e| RegsError::Kvm("MSRs", e))?;
    if set != msrs.len() {
        return Err(RegsError::PartialMsrs {
            set,
            wanted: msrs.len(),
        });
    }
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(|e| RegsError::Kvm("FPU", e))?;
    let sregs = vcpu
        .get_sregs()
        .map_err(|e| RegsError::Kvm("special registers", e))?;
    vcpu.set_sregs(&boot_sregs(sregs))
        .map_err(|e| RegsError::Kvm("special registers", e))?;
    vcpu.set_regs(&boot_regs(entry))
        .map_err(|e| RegsError::Kvm("registers", e))?;
    setup_lint(vcpu)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    #[test]
    fn identity_map_covers_the_first_gib_with_2mib_pages() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        write_boot_tables(&mem).unwrap();
        let pml4: u64 = mem.read_obj(GuestAddress(PML4_START)).unwrap();
        assert_eq!(pml4, PDPTE_START | 3);
        let pdpte: u64 = mem.read_obj(GuestAddress(PDPTE_START)).unwrap();
        assert_eq!(pdpte, PDE_START | 3);
        let last: u64 = mem.read_obj(GuestAddress(PDE_START + 511 * 8)).unwrap();
        assert_eq!(last, (511 << 21) | 0x83);
        let gdt1: u64 = mem.read_obj(GuestAddress(BOOT_GDT_START + 8)).unwrap();
        assert_eq!(gdt1, BOOT_GDT[1]);
    }

    #[test]
    fn sregs_enter_long_mode_with_paging() {
        let s = boot_sregs(kvm_sregs::default());
        assert_eq!(s.cr0 & (X86_CR0_PE | X86_CR0_PG), X86_CR0_PE | X86_CR0_PG);
        assert_eq!(s.cr4 & X86_CR4_PAE, X86_CR4_PAE);
        assert_eq!(s.efer & (EFER_LME | EFER_LMA), EFER_LME | EFER_LMA);
        assert_eq!(s.cr3, PML4_START);
        assert_eq!((s.cs.selector, s.ds.selector, s.tr.selector), (8, 16, 24));
        assert_eq!(s.gdt.limit, 31);
    }

    #[test]
    fn regs_point_rsi_at_the_zero_page() {
        let r = boot_regs(0x100_0200);
        assert_eq!(
            (r.rip, r.rsi, r.rsp, r.rflags),
            (0x100_0200, ZERO_PAGE_START, BOOT_STACK_POINTER, 2)
        );
    }
}
