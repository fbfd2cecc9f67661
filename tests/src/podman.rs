//! podman in a scratch world of its own, with an image built here from Debian's
//! busybox-static (`podman import`), and husk as a runtime through a wrapper that
//! points it at the guest image under test. Shared by the podman suite and the start
//! benchmark.
//!
//! podman runs with its own storage (vfs: the test host's /var is an overlay, and
//! overlay-on-overlay is not allowed), cgroupfs and file events (the test host has no
//! systemd), and no network (networking is a later issue).

use crate::bundle::husk_config_with_kernel;
use crate::guest_image::{workspace_bin, GuestImage};
use crate::scrub::Scrub;
pub use crate::scrub::ScrubOnFailure;
use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The image's name.
pub const IMAGE: &str = "localhost/husk-busybox";

/// podman's scratch world.
#[derive(Debug)]
pub struct Podman {
    dir: PathBuf,
    /// The wrapper that runs husk with the configuration under test.
    pub husk: PathBuf,
    runtime: PathBuf,
}

/// Lossy text of command output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Podman {
    /// Sets the world up in `dir` (emptied first) and imports the image; podman runs
    /// husk on the guest image's bzImage.
    pub fn new(dir: &Path) -> Podman {
        Podman::with_kernel(dir, &GuestImage::from_env().kernel)
    }

    /// [`Podman::new`] with another kernel of the guest image.
    pub fn with_kernel(dir: &Path, kernel: &Path) -> Podman {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let config = husk_config_with_kernel(&dir.join("husk.toml"), kernel);
        let husk = dir.join("husk");
        std::fs::write(
            &husk,
            format!(
                "#!/bin/sh\nHUSK_CONFIG={} exec {} \"$@\"\n",
                config.display(),
                workspace_bin("husk").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&husk, std::fs::Permissions::from_mode(0o755)).unwrap();
        let world = Podman {
            dir: dir.to_owned(),
            runtime: husk.clone(),
            husk,
        };
        world.import_busybox();
        world
    }

    /// The same world with another runtime (`runc`, for comparisons).
    pub fn with_runtime(&self, runtime: &Path) -> Podman {
        Podman {
            dir: self.dir.clone(),
            husk: self.husk.clone(),
            runtime: runtime.to_owned(),
        }
    }

    /// The image: busybox and its applets, nothing else.
    fn import_busybox(&self) {
        let tar = crate::busybox_image::rootfs_tar(&self.dir);
        let out = self.run(&[OsStr::new("import"), tar.as_os_str(), OsStr::new(IMAGE)]);
        assert!(out.status.success(), "import: {}", text(&out.stderr));
    }

    /// podman with this world's options and runtime.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--storage-driver=vfs")
            .arg(format!("--root={}", self.dir.join("storage").display()))
            .arg(format!("--runroot={}", self.dir.join("runroot").display()))
            .arg("--cgroup-manager=cgroupfs")
            .arg("--events-backend=file")
            .arg(format!("--runtime={}", self.runtime.display()));
        cmd
    }

    /// Runs podman with `args`, stdin from /dev/null, and collects its output.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// [`Podman::run`] that must succeed; gives stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}: {}",
            out.status,
            text(&out.stderr)
        );
        text(&out.stdout)
    }
}

/// After a failed test: removes every container it left running (`podman rm --all
/// --force`).
impl Scrub for Podman {
    fn scrub(&self) {
        let out = self.run(&["rm", "--all", "--force", "--time", "0"]);
        eprintln!(
            "scrub: podman rm --all --force: {}: {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
    }
}
