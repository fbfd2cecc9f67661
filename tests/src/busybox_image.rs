//! The container image the engine suites (podman, containerd) run: Debian's static
//! busybox and its applets, nothing else, as a root file system tarball that the
//! engines import.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the image's root file system under `dir/image` and packs it as
/// `dir/image.tar`; gives the tarball's path.
pub fn rootfs_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("image");
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
        .expect("/bin/busybox (Debian's busybox-static; tests/setup.sh installs it)");
    // Relative links: `busybox --install -s` would point them at this host's
    // /usr/bin/busybox, which the image does not have.
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let tar = dir.join("image.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success(), "tar of {}", rootfs.display());
    tar
}
