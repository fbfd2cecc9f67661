//! podman running containers in husk microVMs, end to end, with an image built here
//! from Debian's busybox-static (`podman import`). Needs hardware KVM: ignored by a
//! plain `cargo test`, run in the testbed by `tests/run.sh`.
//!
//! The world (storage, options, the husk wrapper) is `husk_tests::podman`. Most tests
//! run with `--network=none`; the network tests use podman's default bridge network
//! (CNI on Debian's podman 4.3).

use husk_tests::podman::{text, Podman, ScrubOnFailure, IMAGE};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// podman's scratch world, shared by the tests (one image import), cleaned of what a
/// failed test left.
fn podman() -> ScrubOnFailure<'static, Podman> {
    static WORLD: OnceLock<Podman> = OnceLock::new();
    ScrubOnFailure(WORLD.get_or_init(|| {
        Podman::new(&std::env::temp_dir().join(format!("husk-podman-{}", std::process::id())))
    }))
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

/// Network namespaces still holding a husk tap or an ingress qdisc.
fn network_leftovers() -> Vec<String> {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let mut left = Vec::new();
    for ns in text(&list.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
    {
        let links = Command::new("ip")
            .args(["-n", ns, "-o", "link"])
            .output()
            .unwrap();
        if text(&links.stdout).contains("husk_tap0") {
            left.push(format!("{ns}: husk_tap0"));
        }
        let qdiscs = Command::new("tc")
            .args(["-n", ns, "qdisc", "show"])
            .output()
            .unwrap();
        if text(&qdiscs.stdout).contains("ingress") {
            left.push(format!("{ns}: ingress qdisc"));
        }
    }
    left
}

/// The gateway of podman's default network (10.88.0.0/16).
const GATEWAY: &str = "10.88.0.1";

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn the_bridge_network_reaches_a_server_on_the_test_host() {
    let p = podman();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        let (mut conn, from) = listener.accept().unwrap();
        conn.write_all(b"hello-from-the-test-host\n").unwrap();
        from
    });
    let script = format!(
        "echo pid=$$; stat -L -c netns=%i /proc/self/ns/net; ip -o addr show eth0; \
         nc {GATEWAY} {port}"
    );
    let out = p.ok(&["run", "--rm", IMAGE, "sh", "-c", &script]);
    let from = server.join().unwrap();
    assert!(out.contains("hello-from-the-test-host"), "{out}");
    // PID 1 of its pid namespace, and in a network namespace of its own in the guest
    // (the kernel's initial network namespace has the same fixed inode number in the
    // guest as in this test host), holding the interface.
    use std::os::unix::fs::MetadataExt;
    let initial = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(
        out.contains("netns=") && !out.contains(&format!("netns={initial}\n")),
        "{out}"
    );
    assert!(
        out.contains(&format!("inet {}/16", from.ip())),
        "the connection came from the container's address {from}: {out}"
    );
    assert_nothing_left();
    assert_eq!(network_leftovers(), Vec::<String>::new());
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_published_port_reaches_httpd_in_the_microvm() {
    let p = podman();
    p.ok(&[
        "run",
        "-d",
        "--name=web",
        "-p",
        "8080:80",
        IMAGE,
        "sh",
        "-c",
        "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let request = |addr: &str| -> Result<String, String> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
        conn.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut got = String::new();
        conn.read_to_string(&mut got).map_err(|e| e.to_string())?;
        Ok(got)
    };
    // The VM boots after `run -d` returns; the port answers once httpd listens.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let got = loop {
        match request(&format!("{GATEWAY}:8080")) {
            Ok(got) if got.contains("hello-from-httpd") => break got,
            other => assert!(
                std::time::Instant::now() < deadline,
                "no answer on port 8080: {other:?}"
            ),
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert!(got.starts_with("HTTP/1."), "{got}");
    p.ok(&["rm", "-f", "web"]);
    assert_nothing_left();
    assert_eq!(network_leftovers(), Vec::<String>::new());
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn two_containers_on_one_network_reach_each_other() {
    let p = podman();
    p.ok(&[
        "run",
        "-d",
        "--name=peer-a",
        IMAGE,
        "sh",
        "-c",
        "while true; do echo hello-from-a | nc -l -p 7000; done",
    ]);
    let ip = p.ok(&[
        "inspect",
        "--format={{.NetworkSettings.IPAddress}}",
        "peer-a",
    ]);
    let ip = ip.trim();
    assert!(ip.starts_with("10.88."), "{ip}");
    // Both are microVMs: b's nc retries until a's VM is up and listening.
    let script = format!("for i in $(seq 60); do nc {ip} 7000 && exit 0; sleep 1; done; exit 1");
    let out = p.ok(&["run", "--rm", IMAGE, "sh", "-c", &script]);
    assert!(out.contains("hello-from-a"), "{out}");
    p.ok(&["rm", "-f", "peer-a"]);
    assert_nothing_left();
    assert_eq!(network_leftovers(), Vec::<String>::new());
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn network_none_gives_loopback_only() {
    let p = podman();
    let out = p.ok(&["run", "--rm", "--network=none", IMAGE, "ip", "-o", "link"]);
    let links: Vec<&str> = out.lines().collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(links[0].contains("lo:") && links[0].contains("UP"), "{out}");
}

/// podman's `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` and
/// `/run/.containerenv` (bind mounts of files on the host) reach the container, and a
/// tmpfs `/dev` has its devices.
#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn podmans_etc_files_reach_the_container() {
    let p = podman();
    let script = "cat /etc/hostname; echo; hostname; echo --; cat /etc/hosts; echo --; \
                  cat /etc/resolv.conf; echo --; test -f /run/.containerenv && echo containerenv; \
                  echo x > /dev/null && test -c /dev/urandom && echo devices";
    let out = p.ok(&[
        "run",
        "--rm",
        "--hostname=husk-mounts",
        IMAGE,
        "sh",
        "-c",
        script,
    ]);
    let parts: Vec<&str> = out.split("--\n").collect();
    assert_eq!(parts.len(), 4, "{out}");
    // podman writes /etc/hostname without a final newline.
    let names: Vec<&str> = parts[0].split_whitespace().collect();
    assert_eq!(names, ["husk-mounts", "husk-mounts"], "{out}");
    assert!(parts[1].contains("husk-mounts"), "/etc/hosts: {out}");
    assert!(parts[1].contains("localhost"), "/etc/hosts: {out}");
    assert!(
        parts[2].lines().any(|l| l.starts_with("nameserver ")),
        "/etc/resolv.conf: {out}"
    );
    assert_eq!(parts[3], "containerenv\ndevices\n", "{out}");
    assert_nothing_left();
    assert_eq!(network_leftovers(), Vec::<String>::new());
}
