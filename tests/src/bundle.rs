//! OCI bundles for the runtime suites: a root file system of Debian's static
//! busybox (`/bin/busybox` and its applets as symlinks) and a `config.json`, plus the
//! husk configuration file that points the runtime at the guest image under test.

use crate::guest_image::GuestImage;
use std::path::{Path, PathBuf};

/// Applets linked in the root file system.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "true", "false", "sleep", "env", "id", "hostname", "pwd", "read",
    "stty", "tty", "ps", "kill", "wc", "head", "tr", "ip", "ping", "nc", "wget",
];

/// A bundle directory: `config.json` and `rootfs/`.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle directory.
    pub dir: PathBuf,
}

impl Bundle {
    /// Creates `dir/rootfs` with busybox and a `config.json` running `args`.
    pub fn new(dir: &Path, args: &[&str], terminal: bool) -> Bundle {
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("/bin/busybox (Debian's busybox-static; tests/setup.sh installs it)");
        for applet in APPLETS {
            let link = rootfs.join("bin").join(applet);
            let _ = std::os::unix::fs::symlink("busybox", link);
        }
        let bundle = Bundle {
            dir: dir.to_owned(),
        };
        bundle.write_config(&spec(args, terminal));
        bundle
    }

    /// Writes `config.json`.
    pub fn write_config(&self, config: &serde_json::Value) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(config).unwrap(),
        )
        .unwrap();
    }
}

/// A minimal runtime spec running `args` in `rootfs`.
pub fn spec(args: &[&str], terminal: bool) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": terminal,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/bin", "TERM=xterm"],
            "cwd": "/"
        },
        "root": { "path": "rootfs" },
        "hostname": "husk-test",
        "linux": { "namespaces": [ { "type": "mount" }, { "type": "uts" } ] }
    })
}

/// Writes a husk configuration file for the guest image under test (its bzImage) at
/// `path`, and returns it (pass it as `HUSK_CONFIG`).
pub fn husk_config(path: &Path) -> PathBuf {
    husk_config_with_kernel(path, &GuestImage::from_env().kernel)
}

/// [`husk_config`] with another kernel of the guest image (its ELF `vmlinux`, the
/// installed default, for instance).
pub fn husk_config_with_kernel(path: &Path, kernel: &Path) -> PathBuf {
    let image = GuestImage::from_env();
    let virtiofsd = std::env::var("HUSK_VIRTIOFSD")
        .expect("HUSK_VIRTIOFSD is not set: run through tests/run.sh");
    let text = format!(
        "kernel = {:?}\ninitramfs = {:?}\nvirtiofsd = {:?}\nvcpus = 1\nmemory_mib = 256\n\
         boot_timeout_secs = 120\n",
        kernel.display().to_string(),
        image.initrd.display().to_string(),
        virtiofsd
    );
    std::fs::write(path, text).unwrap();
    path.to_owned()
}
