//! The container's tree: mounts, binds, devices, masked and read-only paths, and
//! destinations that try to leave the root.

use super::*;

/// Runs `script` in a container of `spec_extra` (merged into the spec) on `rootfs`;
/// gives back its stdout and exit status.
fn run(rootfs: &Rootfs, id: &str, script: &str, extra: Value) -> (String, ExitStatus) {
    let ctx = agent();
    let mut client = Client::new(&ctx);
    let mut spec = spec(&["sh", "-c", script]);
    for (key, value) in extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    client.create(id, spec, rootfs.path()).unwrap();
    let stdout = stream(&ctx, id, None, StdioStream::Stdout).unwrap();
    client.start(id).unwrap();
    let out = read_all(stdout);
    (out, client.wait(id, None).unwrap())
}

#[test]
fn mounts_devices_masked_and_readonly_paths_are_applied() {
    let rootfs = Rootfs::new(true);
    let host = Rootfs::new(false);
    std::fs::write(host.0.join("hosts"), "10.0.0.2 box\n").unwrap();
    std::fs::create_dir(host.0.join("data")).unwrap();
    std::fs::write(host.0.join("data/inner"), "inner\n").unwrap();
    std::fs::create_dir(rootfs.0.join("secret")).unwrap();
    std::fs::write(rootfs.0.join("secret/key"), "key\n").unwrap();
    std::fs::create_dir(rootfs.0.join("frozen")).unwrap();
    let escape = std::env::temp_dir().join(format!("husk-escape-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&escape);
    // A link that climbs far above the root: resolved inside it, where its target
    // exists (a dangling link is refused with ENOENT: its target is not made).
    std::fs::create_dir_all(rootfs.0.join(escape.strip_prefix("/").unwrap())).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../..{}", escape.display()),
        rootfs.0.join("up"),
    )
    .unwrap();
    let script = "test -c /dev/null && echo devnull; echo gone > /dev/null; \
                  test -L /dev/fd && echo fd-link; \
                  cat /etc/hosts /data/inner; \
                  (echo x > /etc/hosts) 2>/dev/null || echo hosts-ro; \
                  (echo x > /data/new) 2>/dev/null || echo data-ro; \
                  echo scratch > /scratch/file && cat /scratch/file; \
                  cat /marker; ls /secret; \
                  (echo x > /frozen/f) 2>/dev/null || echo frozen-ro; \
                  (echo x > /rootfile) 2>/dev/null || echo root-ro; \
                  test -d /up/inside && echo inside";
    let extra = json!({
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/etc/hosts", "type": "bind",
             "source": host.0.join("hosts"), "options": ["rbind", "ro"]},
            {"destination": "/data/", "type": "none",
             "source": host.0.join("data"), "options": ["bind", "ro", "rprivate"]},
            {"destination": "/scratch/../scratch", "type": "tmpfs", "options": ["nodev"]},
            {"destination": "/up/inside", "type": "tmpfs"},
        ],
        "linux": {"maskedPaths": ["/marker", "/secret", "/absent"],
                  "readonlyPaths": ["/frozen", "/absent"]}
    });
    let (out, status) = run(&rootfs, "tree", script, extra);
    assert_eq!(
        out,
        "devnull\nfd-link\n10.0.0.2 box\ninner\nhosts-ro\ndata-ro\nscratch\n\
         frozen-ro\nroot-ro\ninside\n"
    );
    assert_eq!(status, exited(0));
    // The mount points were made in the root, the link's target inside it.
    assert!(rootfs.0.join("etc/hosts").is_file());
    assert!(rootfs.0.join("data").is_dir());
    assert!(!escape.exists(), "a mount point was made outside the root");
    let inside = rootfs
        .0
        .join(escape.strip_prefix("/").unwrap())
        .join("inside");
    assert!(inside.is_dir(), "{} missing", inside.display());
    // Nothing of it is left on this side.
    assert_eq!(
        std::fs::read_to_string(host.0.join("hosts")).unwrap(),
        "10.0.0.2 box\n"
    );
    assert!(!host.0.join("data/new").exists());
}

#[test]
fn a_failing_mount_is_named() {
    let rootfs = Rootfs::new(false);
    let ctx = agent();
    let mut client = Client::new(&ctx);
    let mut spec = spec(&["true"]);
    spec["mounts"] = json!([
        {"destination": "/tmp", "type": "tmpfs"},
        {"destination": "/x", "type": "no-such-fs", "source": "x"},
    ]);
    let err = client.create("bad", spec, rootfs.path()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err:?}");
    assert!(
        err.message.contains("mount 1 (no-such-fs on /x)"),
        "{}",
        err.message
    );
    let mut spec = super::spec(&["true"]);
    spec["mounts"] = json!([{"destination": "/h", "type": "bind", "source": "/no/such"}]);
    let err = client.create("bad2", spec, rootfs.path()).unwrap_err();
    assert!(
        err.message.contains("mount 0 (destination \"/h\")"),
        "{}",
        err.message
    );
    assert!(err.message.contains("/no/such"), "{}", err.message);
}

#[test]
fn exec_sees_the_tree_of_the_container() {
    let rootfs = Rootfs::new(true);
    let ctx = agent();
    let mut client = Client::new(&ctx);
    let mut spec = spec(&["sleep", "30"]);
    spec["mounts"] = json!([
        {"destination": "/dev", "type": "tmpfs", "options": ["mode=755"]},
        {"destination": "/work", "type": "tmpfs"},
    ]);
    client.create("ex", spec, rootfs.path()).unwrap();
    client.start("ex").unwrap();
    let script = "echo hi > /work/f && cat /work/f && test -c /dev/zero && echo zero";
    client
        .exec(
            "ex",
            "e1",
            json!({"args": ["sh", "-c", script], "cwd": "/"}),
        )
        .unwrap();
    let stdout = stream(&ctx, "ex", Some("e1"), StdioStream::Stdout).unwrap();
    assert_eq!(read_all(stdout), "hi\nzero\n");
    assert_eq!(client.wait("ex", Some("e1")).unwrap(), exited(0));
    client.signal("ex", None, 9).unwrap();
    assert_eq!(client.wait("ex", None).unwrap(), killed(9));
    assert!(!rootfs.0.join("work/f").exists());
}

#[test]
fn a_terminal_is_bound_onto_dev_console() {
    let rootfs = Rootfs::new(true);
    let ctx = agent();
    let mut client = Client::new(&ctx);
    let mut spec = spec(&[
        "sh",
        "-c",
        "test -c /dev/console && echo console; echo done",
    ]);
    spec["process"]["terminal"] = json!(true);
    spec["mounts"] = json!([
        {"destination": "/proc", "type": "proc"},
        {"destination": "/dev", "type": "tmpfs", "options": ["mode=755"]},
        {"destination": "/dev/pts", "type": "devpts",
         "options": ["newinstance", "ptmxmode=0666", "mode=0620"]},
    ]);
    client.create("con", spec, rootfs.path()).unwrap();
    let pty = stream(&ctx, "con", None, StdioStream::Pty).unwrap();
    client.start("con").unwrap();
    let out = read_all(pty);
    assert!(out.contains("console\r\ndone\r\n"), "{out:?}");
    assert_eq!(client.wait("con", None).unwrap(), exited(0));
}
