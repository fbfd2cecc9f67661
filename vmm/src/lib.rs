//! husk's virtual machine monitor.
//!
//! Organised after Firecracker: [`arch`] holds the x86-64 boot protocol pieces (memory
//! layout, page tables, GDT, MP table, CPUID), [`vstate`] the KVM state (VM, vCPUs,
//! guest memory) and [`devices`] the emulated devices, each behind a
//! [`devices::bus::BusDevice`]. [`probe`] tells whether a `/dev/kvm` runs guests at all.
//! [`virtiofsd`] runs the vhost-user backend of a virtio-fs share.

pub mod arch;
pub mod builder;
pub mod devices;
pub mod event_loop;
pub mod probe;
pub mod rate_limit;
pub mod virtiofsd;
pub mod vstate;
