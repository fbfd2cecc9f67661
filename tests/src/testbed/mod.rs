//! The testbed: an emulated AMD test host (QEMU TCG with SVM and NPT) whose kernel has
//! KVM, booted over this machine's root filesystem shared read-only over 9p.
//!
//! The same `husk-testbed` binary plays both parts: on the build machine it starts
//! QEMU and supervises it ([`host`]); inside the test host it is PID 1 ([`init`]),
//! which mounts what the shared root lacks, runs the job and reports its status.
//! A [`job`] directory, shared read-write, carries the command in and the status out.

pub mod host;
pub mod init;
pub mod job;

/// The 9p tag of the build machine's root filesystem.
pub const ROOT_TAG: &str = "hostroot";
/// The 9p tag of the job directory.
pub const JOB_TAG: &str = "husk-job";
/// Where the test host mounts the job directory.
pub const JOB_MOUNT: &str = "/run/husk-testbed/job";
