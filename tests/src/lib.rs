//! husk's test support: the testbed that runs commands inside an emulated test host
//! with a genuine `/dev/kvm`, and helpers shared by the end-to-end suites.

pub mod bundle;
pub mod busybox_image;
pub mod conformance;
pub mod console;
pub mod containerd_daemon;
pub mod cri_client;
pub mod guest_exec;
pub mod guest_image;
pub mod host_memory;
pub mod husk_cli;
pub mod podman;
pub mod ratio_table;
pub mod scratch_fs;
pub mod scrub;
pub mod share_guest;
pub mod stats;
pub mod testbed;
pub mod vm_command;
