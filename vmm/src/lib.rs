//! husk's virtual machine monitor.
//!
//! Organised after Firecracker: `vstate/` for KVM state (VM, vCPUs, memory) and
//! `devices/` for emulated devices behind a bus. This first version holds the KVM
//! probe that tells whether a host's `/dev/kvm` runs guests at all.

pub mod probe;
