//! The pid and network namespaces, and namespaces joined by path.

use super::*;
use husk_protocol::netlink::Netlink;
use nix::sched::{setns, CloneFlags};

/// The links of the network namespace of `pid`: (name, up) each, listed on a
/// thread of its own that enters the namespace.
fn links_of(pid: u32) -> Vec<(String, bool)> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).unwrap();
    std::thread::spawn(move || {
        setns(&ns, CloneFlags::CLONE_NEWNET).unwrap();
        let mut nl = Netlink::open().unwrap();
        let links = nl.links().unwrap();
        links.into_iter().map(|l| (l.name, l.up)).collect()
    })
    .join()
    .unwrap()
}

#[test]
fn the_first_process_is_pid_1_of_a_new_pid_namespace_and_exec_enters_it() {
    let ctx = agent();
    let rootfs = Rootfs::new(true);
    let mut client = Client::new(&ctx);
    let mut spec = spec(&["sh", "-c", "echo $$ > /tmp/pid; exec sleep 1000"]);
    spec["linux"] = json!({"namespaces": [{"type": "pid"}, {"type": "mount"}]});
    let pid = client.create("pidns", spec, rootfs.path()).unwrap();
    // The agent sees the guest-root PID.
    assert!(pid > 1);
    client.start("pidns").unwrap();
    let pid_file = rootfs.0.join("tmp/pid");
    let deadline = Instant::now() + PATIENCE;
    while std::fs::read_to_string(&pid_file).map_or(true, |s| !s.ends_with('\n')) {
        assert!(Instant::now() < deadline, "the container wrote no /tmp/pid");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), "1\n");
    let ours = std::fs::metadata("/proc/self/ns/pid").unwrap();
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/pid")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(ours.ino(), theirs.ino());

    // An exec'd process is in the container's pid namespace: it sees the first
    // process as PID 1 (its /proc is the container's).
    let script = "echo $$; tr '\\0' ' ' < /proc/1/cmdline; echo";
    let exec_pid = client
        .exec("pidns", "e1", json!({"args": ["sh", "-c", script]}))
        .unwrap();
    let stdout = stream(&ctx, "pidns", Some("e1"), StdioStream::Stdout).unwrap();
    let out = read_all(stdout);
    assert_eq!(client.wait("pidns", Some("e1")).unwrap(), exited(0));
    let mut lines = out.lines();
    let inner: u32 = lines.next().unwrap().parse().unwrap();
    assert!(inner > 1 && inner != exec_pid, "{out}");
    assert_eq!(lines.next(), Some("sleep 1000 "), "{out}");
    assert!(gone(exec_pid));

    // When PID 1 of the namespace dies, the kernel kills the rest; every waiter
    // hears of it.
    let long = client
        .exec("pidns", "e2", json!({"args": ["sleep", "1000"]}))
        .unwrap();
    client.signal("pidns", None, 9).unwrap();
    assert_eq!(client.wait("pidns", None).unwrap(), killed(9));
    assert_eq!(client.wait("pidns", Some("e2")).unwrap(), killed(9));
    assert!(gone(pid) && gone(long));
}

#[test]
fn a_new_network_namespace_without_interfaces_has_lo_up_only() {
    let ctx = agent();
    let rootfs = Rootfs::new(true);
    let mut client = Client::new(&ctx);
    let mut own = spec(&["sleep", "1000"]);
    own["linux"] = json!({"namespaces": [{"type": "network"}]});
    let pid = client.create("netns", own, rootfs.path()).unwrap();
    assert_eq!(links_of(pid), [("lo".to_owned(), true)]);
    client.start("netns").unwrap();
    // An exec'd process joins it.
    let exec_pid = client
        .exec(
            "netns",
            "e1",
            json!({"args": ["cat", "/proc/self/net/dev"]}),
        )
        .unwrap();
    let stdout = stream(&ctx, "netns", Some("e1"), StdioStream::Stdout).unwrap();
    let out = read_all(stdout);
    assert_eq!(client.wait("netns", Some("e1")).unwrap(), exited(0));
    let names: Vec<&str> = out
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "{out}");
    assert!(gone(exec_pid));
    // Without a `network` entry a container stays in the agent's namespace.
    let mut plain = spec(&["sleep", "1000"]);
    plain["linux"] = json!({"namespaces": [{"type": "mount"}]});
    let plain_pid = client.create("shared-net", plain, rootfs.path()).unwrap();
    assert_eq!(links_of(plain_pid), links_of(std::process::id()));
    client.signal("netns", None, 9).unwrap();
    client.signal("shared-net", None, 9).unwrap();
    assert_eq!(client.wait("netns", None).unwrap(), killed(9));
}

#[test]
fn a_container_joins_another_ones_namespaces_by_path() {
    let ctx = agent();
    let rootfs = Rootfs::new(true);
    let mut client = Client::new(&ctx);
    let mut pause = spec(&["sleep", "1000"]);
    pause["hostname"] = json!("podbox");
    pause["linux"] = json!({"namespaces": [
        {"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}
    ]});
    let pause_pid = client.create("pause", pause, rootfs.path()).unwrap();
    client.start("pause").unwrap();
    let ns = |kind: &str| format!("/proc/{pause_pid}/ns/{kind}");
    let mut app = spec(&["sh", "-c", "hostname; echo $$; cat /proc/1/cmdline"]);
    app["linux"] = json!({"namespaces": [
        {"type": "pid", "path": ns("pid")}, {"type": "network", "path": ns("net")},
        {"type": "ipc", "path": ns("ipc")}, {"type": "uts", "path": ns("uts")}
    ]});
    let app_pid = client.create("app", app, rootfs.path()).unwrap();
    for kind in ["pid", "net", "ipc", "uts"] {
        let link = |pid| std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
        assert_eq!(link(app_pid), link(pause_pid), "{kind}");
    }
    let stdout = stream(&ctx, "app", None, StdioStream::Stdout).unwrap();
    client.start("app").unwrap();
    let out = read_all(stdout);
    assert_eq!(client.wait("app", None).unwrap(), exited(0));
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("podbox"), "{out}");
    let inner: u32 = lines.next().unwrap().parse().unwrap();
    assert!(inner > 1, "{out}");
    // PID 1 of the shared pid namespace is the pause container's process.
    assert_eq!(lines.next(), Some("sleep\u{0}1000\u{0}"), "{out}");

    // A path of the wrong type, or one that is not there, is named; nothing starts.
    for (kind, path, want) in [
        (
            "ipc",
            ns("uts"),
            "is a uts namespace (a ipc namespace expected)",
        ),
        (
            "uts",
            "/proc/0/ns/uts".to_owned(),
            "cannot open the uts namespace",
        ),
        ("network", "/marker".to_owned(), "cannot open"),
    ] {
        let mut bad = spec(&["true"]);
        bad["linux"] = json!({"namespaces": [{"type": kind, "path": path}]});
        let err = client.create("bad", bad, rootfs.path()).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{err:?}");
        assert!(err.message.contains(want), "{want}: {}", err.message);
    }
    client.signal("pause", None, 9).unwrap();
    assert_eq!(client.wait("pause", None).unwrap(), killed(9));
}
