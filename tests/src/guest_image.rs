//! Where the end-to-end suites find the guest image.
//!
//! `tests/run.sh` builds it (`guest-image/build.sh`) and passes the cached paths in
//! `HUSK_GUEST_KERNEL` and `HUSK_GUEST_INITRD`.

use std::path::PathBuf;

/// The guest kernel and initramfs under test.
#[derive(Debug, Clone)]
pub struct GuestImage {
    /// The guest bzImage.
    pub kernel: PathBuf,
    /// The same kernel as an ELF `vmlinux`.
    pub vmlinux: PathBuf,
    /// The initramfs with husk-agent as `/init`.
    pub initrd: PathBuf,
}

impl GuestImage {
    /// Reads the paths from the environment; panics with directions if they are unset.
    pub fn from_env() -> GuestImage {
        let get = |name: &str| -> PathBuf {
            let path = std::env::var_os(name)
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    panic!("{name} is not set: run the end-to-end tests through tests/run.sh")
                });
            assert!(path.is_file(), "{name}={} does not exist", path.display());
            path
        };
        let kernel = get("HUSK_GUEST_KERNEL");
        GuestImage {
            vmlinux: kernel.with_file_name("vmlinux"),
            kernel,
            initrd: get("HUSK_GUEST_INITRD"),
        }
    }
}

/// A binary of this workspace, in the running executable's `target/<profile>/` (a test
/// runs from `target/<profile>/deps/`, a binary from `target/<profile>/`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let mut dir = exe.parent().expect("target directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir.parent().expect("target directory");
    }
    let bin = dir.join(name);
    assert!(
        bin.is_file(),
        "{} is not built (cargo build --workspace --bins)",
        bin.display()
    );
    bin
}
