//! x86-64: the guest physical memory layout and the Linux boot protocol.

pub mod cpuid;
pub mod mptable;
