//! podman running containers in husk microVMs, end to end, with an image built here
//! from Debian's busybox-static (`podman import`). Needs hardware KVM: ignored by a
//! plain `cargo test`, run in the testbed by `tests/run.sh`.
//!
//! podman runs with its own storage (vfs: the test host's /var is an overlay, and
//! overlay-on-overlay is not allowed), cgroupfs and file events (the test host has no
//! systemd), no network (networking is a later issue), and husk as `--runtime`
//! through a wrapper that points it at the guest image under test.

use husk_tests::bundle::husk_config;
use husk_tests::guest_image::workspace_bin;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const IMAGE: &str = "localhost/husk-busybox";

/// podman's scratch world, shared by the tests (one image import).
struct Podman {
    dir: PathBuf,
    runtime: PathBuf,
}

fn podman() -> &'static Podman {
    static WORLD: OnceLock<Podman> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("husk-podman-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = husk_config(&dir.join("husk.toml"));
        let runtime = dir.join("husk");
        std::fs::write(
            &runtime,
            format!(
                "#!/bin/sh\nHUSK_CONFIG={} exec {} \"$@\"\n",
                config.display(),
                workspace_bin("husk").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o755)).unwrap();
        let world = Podman { dir, runtime };
        // The image: busybox and its applets, nothing else.
        let rootfs = world.dir.join("image");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "dev", "sys", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        // Relative links: `busybox --install -s` would point them at this host's
        // /usr/bin/busybox, which the image does not have.
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in text(&list.stdout).lines().filter(|a| *a != "busybox") {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let tar = world.dir.join("image.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        let out = world.run(&["import", tar.to_str().unwrap(), IMAGE]);
        assert!(out.status.success(), "import: {}", text(&out.stderr));
        world
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Podman {
    fn command(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--storage-driver=vfs")
            .arg(format!("--root={}", self.dir.join("storage").display()))
            .arg(format!("--runroot={}", self.dir.join("runroot").display()))
            .arg("--cgroup-manager=cgroupfs")
            .arg("--events-backend=file")
            .arg(format!("--runtime={}", self.runtime.display()));
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
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

/// No sandbox process or virtiofsd of husk's is left.
fn assert_nothing_left() {
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = text(&cmdline).replace('\0', " ");
        assert!(
            !cmdline.contains("__sandbox"),
            "sandbox process left: {cmdline}"
        );
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        assert_ne!(comm.trim(), "virtiofsd", "virtiofsd left");
    }
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn run_rm_prints_and_exit_codes_propagate() {
    let p = podman();
    let out = p.ok(&["run", "--rm", "--network=none", IMAGE, "echo", "hi"]);
    assert_eq!(out, "hi\n");
    let out = p.run(&["run", "--rm", "--network=none", IMAGE, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn detached_exec_stop_and_rm() {
    let p = podman();
    p.ok(&[
        "run",
        "-d",
        "--name=d1",
        "--network=none",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let out = p.ok(&["exec", "d1", "echo", "inside"]);
    assert_eq!(out, "inside\n");
    let out = p.run(&["exec", "d1", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let state = p.ok(&["inspect", "--format={{.State.Status}}", "d1"]);
    assert_eq!(state.trim(), "running");
    p.ok(&["stop", "--time=5", "d1"]);
    let state = p.ok(&["inspect", "--format={{.State.Status}}", "d1"]);
    assert_eq!(state.trim(), "exited");
    p.ok(&["rm", "d1"]);
    assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn pause_and_unpause() {
    let p = podman();
    p.ok(&[
        "run",
        "-d",
        "--name=p1",
        "--network=none",
        IMAGE,
        "sleep",
        "1000",
    ]);
    p.ok(&["pause", "p1"]);
    let state = p.ok(&["inspect", "--format={{.State.Status}}", "p1"]);
    assert_eq!(state.trim(), "paused");
    p.ok(&["unpause", "p1"]);
    let state = p.ok(&["inspect", "--format={{.State.Status}}", "p1"]);
    assert_eq!(state.trim(), "running");
    p.ok(&["rm", "--force", "--time=0", "p1"]);
    assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn run_it_works_under_a_pty() {
    let p = podman();
    let podman_line = format!(
        "{} run -it --rm --network=none {IMAGE} sh -c 'stty size; echo it-works'",
        shell_words(&p.command())
    );
    let out = Command::new("script")
        .args(["-qec", &podman_line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", text(&out.stderr));
    assert!(stdout.contains("it-works"), "{stdout}");
    assert_nothing_left();
}

/// A command line for `sh -c`.
fn shell_words(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}
