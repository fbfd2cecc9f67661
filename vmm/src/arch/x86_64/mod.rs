//! x86-64: the guest physical memory layout and the Linux boot protocol.

pub mod boot;
pub mod cpuid;
pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod regs;
