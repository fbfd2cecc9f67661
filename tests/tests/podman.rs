//! podman running containers in husk microVMs, end to end, with an image built here
//! from Debian's busybox-static (`podman import`). Needs hardware KVM: ignored by a
//! plain `cargo test`, run in the testbed by `tests/run.sh`.
//!
//! The world (storage, options, the husk wrapper) is `husk_tests::podman`.

use husk_tests::podman::{text, Podman, IMAGE};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// podman's scratch world, shared by the tests (one image import).
fn podman() -> &'static Podman {
    static WORLD: OnceLock<Podman> = OnceLock::new();
    WORLD.get_or_init(|| {
        Podman::new(&std::env::temp_dir().join(format!("husk-podman-{}", std::process::id())))
    })
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
