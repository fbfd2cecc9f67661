//! Where things live in guest physical memory and in the MMIO hole.
//!
//! ```text
//! 0x0000_0500  GDT              0x0000_9000  PML4     0x0002_0000  kernel command line
//! 0x0000_0520  IDT (empty)      0x0000_a000  PDPT     0x0009_fc00  MP table (EBDA)
//! 0x0000_7000  zero page        0x0000_b000  PD       0x0010_0000  kernel (1 MiB)
//! 0x0000_8ff0  boot stack                             ...          initramfs, top of low RAM
//! 0xc000_0000  MMIO hole: virtio-mmio devices from 0xd000_0000, IOAPIC, LAPIC, TSS
//! 0x1_0000_0000  RAM above 4 GiB, when there is more than 3 GiB
//! ```

/// The boot GDT.
pub const BOOT_GDT_START: u64 = 0x500;
/// The boot IDT (a single null entry: interrupts stay off until the kernel's own).
pub const BOOT_IDT_START: u64 = 0x520;
/// The zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page-map level 4 of the boot identity map.
pub const PML4_START: u64 = 0x9000;
/// Page-directory-pointer table of the boot identity map.
pub const PDPTE_START: u64 = 0xa000;
/// Page directory of the boot identity map (2 MiB pages over the first GiB).
pub const PDE_START: u64 = 0xb000;
/// The kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line, terminating NUL included (x86 `COMMAND_LINE_SIZE`).
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// Start of the extended BIOS data area, where the MP table goes; RAM stops here
/// in the low megabyte.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory, where the kernel is loaded.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole (RAM resumes at 4 GiB).
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole.
pub const MMIO_HOLE_END: u64 = 0x1_0000_0000;
/// First virtio-mmio device; each takes [`VIRTIO_MMIO_SIZE`] bytes.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// Size of one virtio-mmio device window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// The IOAPIC's registers.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APICs' registers.
pub const LAPIC_START: u64 = 0xfee0_0000;
/// KVM's three-page TSS area (Intel needs it for real mode emulation).
pub const KVM_TSS_START: u64 = 0xfffb_d000;
/// KVM's identity-map page, just below the TSS.
pub const KVM_IDENTITY_MAP_START: u64 = 0xfffb_c000;
/// Serial port COM1 and its IRQ.
pub const COM1_PORT: u16 = 0x3f8;
/// IRQ of COM1.
pub const COM1_IRQ: u32 = 4;
/// The i8042 keyboard controller's data and command ports.
pub const I8042_PORT: u16 = 0x60;
/// The first IRQ handed to virtio devices (IOAPIC pins 5..=23).
pub const FIRST_VIRTIO_IRQ: u32 = 5;
/// The last IRQ a device can get.
pub const LAST_IRQ: u32 = 23;
