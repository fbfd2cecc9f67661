//! A scratch ext4 file system on a loop device, for suites that need what the test
//! host's own overlay-on-tmpfs lacks (`user.*` extended attributes above all).
//! Unmounted and its image removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted scratch ext4.
#[derive(Debug)]
pub struct ScratchFs {
    image: PathBuf,
    mount_point: PathBuf,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl ScratchFs {
    /// Formats a `size_mib` MiB ext4 image at `image` and mounts it at `mount_point`
    /// (both created; the image is sparse).
    pub fn new(image: &Path, mount_point: &Path, size_mib: u64) -> Result<ScratchFs, String> {
        let file = std::fs::File::create(image).map_err(|e| format!("{}: {e}", image.display()))?;
        file.set_len(size_mib << 20)
            .map_err(|e| format!("{}: {e}", image.display()))?;
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image))?;
        std::fs::create_dir_all(mount_point)
            .map_err(|e| format!("{}: {e}", mount_point.display()))?;
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(mount_point))?;
        Ok(ScratchFs {
            image: image.to_owned(),
            mount_point: mount_point.to_owned(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mount_point
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        // The loop device goes with the mount (mount -o loop sets autoclear).
        if let Err(e) = run(Command::new("umount").arg(&self.mount_point)) {
            eprintln!("scratch fs: {e}");
        }
        let _ = std::fs::remove_dir(&self.mount_point);
        let _ = std::fs::remove_file(&self.image);
    }
}
