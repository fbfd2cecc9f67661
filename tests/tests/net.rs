//! husk-vmm's virtio-net device and its tap backend, end to end: a guest with a NIC on
//! a tap of the test host exchanges ICMP and bulk TCP with it, both ways, with the
//! offloads negotiated. The guest side runs busybox as a container process whose root
//! is a virtio-fs share (as the virtio-fs suite runs its checker).
//!
//! Then the runtime's side: `husk run` of a bundle that names a network namespace (a
//! veth to the test host, as engines prepare it) gets that network in its microVM,
//! and a namespace without a path gets loopback only.
//!
//! The guests need hardware KVM: those tests are ignored by a plain `cargo test` and
//! run in the testbed by `tests/run.sh`.

use husk_tests::bundle::{husk_config, spec, Bundle};
use husk_tests::guest_exec::Ran;
use husk_tests::guest_image::workspace_bin;
use husk_tests::share_guest::ShareGuest;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Guest-side work (boot excluded).
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
const HOST_IP: &str = "10.77.0.1";
const GUEST_IP: &str = "10.77.0.2";
/// Bytes moved each way in the bulk test: about 2,000 frames, every ring many times
/// over, and small enough to keep the exposure to the testbed hang (docs/testing.md,
/// about one run in 30 at 8 MiB) low.
const BULK: usize = 4 << 20;

/// A work directory whose `share/` holds busybox; removed on drop.
struct Work(PathBuf);

impl Work {
    fn new(name: &str) -> Work {
        let dir = std::env::temp_dir().join(format!("husk-net-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("share")).unwrap();
        std::fs::copy("/bin/busybox", dir.join("share/busybox"))
            .expect("/bin/busybox (Debian's busybox-static; tests/setup.sh installs it)");
        Work(dir)
    }

    fn share(&self) -> PathBuf {
        self.0.join("share")
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tap_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// A booted guest whose eth0 is configured, on the tap `tap` of the test host.
struct NetGuest {
    guest: ShareGuest,
    tap: String,
}

impl NetGuest {
    fn boot(work: &Work, tap: &str) -> NetGuest {
        assert!(
            !tap_exists(tap),
            "tap {tap} is left over from an earlier run"
        );
        let args = ["--net-tap", tap, "--net-mac", "02:68:75:73:6b:02"];
        let guest =
            ShareGuest::boot_with(&work.0, &work.share(), "auto", RUN_TIMEOUT, &args).unwrap();
        // husk-vmm created the tap when it started; the host end gets its address.
        ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", tap]);
        ip(&["link", "set", tap, "up"]);
        let mut me = NetGuest {
            guest,
            tap: tap.to_owned(),
        };
        let script = format!(
            "/busybox ip link set eth0 up && /busybox ip addr add {GUEST_IP}/24 dev eth0 && \
             /busybox ip -o link show eth0"
        );
        let ran = me.sh(&script);
        assert!(ran.stdout.contains("02:68:75:73:6b:02"), "{ran:?}");
        me
    }

    /// Runs a busybox shell script in the guest.
    fn sh(&mut self, script: &str) -> Ran {
        self.try_sh(script).unwrap()
    }

    /// Runs a busybox shell script in the guest; a failure report if it does not end.
    fn try_sh(&mut self, script: &str) -> Result<Ran, String> {
        self.guest.run_argv(&["/busybox", "sh", "-c", script])
    }

    fn power_off(self) {
        let path = self.guest.stderr_path().to_owned();
        let status = self.guest.power_off().unwrap();
        let stderr = std::fs::read_to_string(path).unwrap_or_default();
        assert!(status.success(), "husk-vmm: {status}; {stderr}");
        // With HUSK_TEST_VMM_LOG=info: the device's frame counters.
        eprint!("{stderr}");
        assert!(!tap_exists(&self.tap), "the tap outlived husk-vmm");
    }
}

#[test]
#[ignore = "needs hardware KVM: run in the testbed (tests/run.sh)"]
fn the_guest_and_the_host_ping_each_other() {
    let work = Work::new("ping");
    let mut guest = NetGuest::boot(&work, "hktap-ping");
    let ran = guest.sh(&format!("/busybox ping -c 3 -W 10 {HOST_IP}"));
    assert_eq!(ran.exit_code, Some(0), "{ran:?}");
    assert!(ran.stdout.contains("3 packets received"), "{ran:?}");
    let out = Command::new("busybox")
        .args(["ping", "-c", "3", "-W", "10", GUEST_IP])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "host to guest ping: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    guest.power_off();
}

/// A pattern both sides can produce and check: `yes`'s output of a 15-byte line.
fn pattern(len: usize) -> Vec<u8> {
    b"husk-net-bulk\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

#[test]
#[ignore = "needs hardware KVM: run in the testbed (tests/run.sh)"]
fn bulk_tcp_arrives_intact_both_ways() {
    let work = Work::new("bulk");
    let mut guest = NetGuest::boot(&work, "hktap-bulk");
    let data = pattern(BULK);
    let expect = format!("{:x}", Sha256::digest(&data));

    // Host to guest: the guest hashes what it receives.
    let listener = TcpListener::bind((HOST_IP, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let sender = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let start = Instant::now();
        conn.write_all(&data).unwrap();
        start.elapsed()
    });
    let ran = guest.sh(&format!(
        "/busybox nc {HOST_IP} {port} | /busybox sha256sum"
    ));
    let took = sender.join().unwrap();
    assert_eq!(ran.exit_code, Some(0), "{ran:?}");
    assert!(ran.stdout.starts_with(&expect), "{ran:?}, want {expect}");
    eprintln!("host to guest: {} MiB in {took:?}", BULK >> 20);

    // Guest to host: the host checks every byte. What it has so far is counted, for
    // the report of a transfer that stops.
    let listener = TcpListener::bind((HOST_IP, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&received);
    let receiver = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let start = Instant::now();
        let mut got = vec![0u8; BULK];
        let mut at = 0;
        while at < BULK {
            match conn.read(&mut got[at..]).unwrap() {
                0 => break,
                n => at += n,
            }
            count.store(at, Ordering::Relaxed);
        }
        // Closing tells the guest's nc to stop.
        (got[..at] == pattern(BULK)[..], start.elapsed())
    });
    let ran = guest
        .try_sh(&format!(
            "/busybox yes husk-net-bulk | /busybox head -c {BULK} | /busybox nc {HOST_IP} {port}"
        ))
        .unwrap_or_else(|e| {
            let at = received.load(Ordering::Relaxed);
            panic!("guest to host, the host had {at} of {BULK} bytes: {e}")
        });
    let (intact, took) = receiver.join().unwrap();
    assert!(intact, "the guest's bytes arrived changed or short");
    assert_eq!(ran.exit_code, Some(0), "{ran:?}");
    eprintln!("guest to host: {} MiB in {took:?}", BULK >> 20);
    guest.power_off();
}

/// A network namespace `ns` with `eth0` (10.78.0.2/24, default route via .1) whose
/// peer `peer` (10.78.0.1/24) is in the test host's namespace; removed on drop.
struct EngineNetwork {
    ns: String,
    peer: String,
}

const CTR_IP: &str = "10.78.0.2";
const PEER_IP: &str = "10.78.0.1";

impl EngineNetwork {
    fn new(tag: &str) -> EngineNetwork {
        let ns = format!("husk-e2e-{tag}");
        let peer = format!("hkpeer-{tag}");
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &peer,
        ]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{CTR_IP}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "route", "add", "default", "via", PEER_IP]);
        ip(&["addr", "add", &format!("{PEER_IP}/24"), "dev", &peer]);
        ip(&["link", "set", &peer, "up"]);
        EngineNetwork { ns, peer }
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.ns)
    }

    /// Nothing of husk's is left in the namespace: no tap, no ingress qdisc.
    fn assert_clean(&self) {
        let links = Command::new("ip")
            .args(["-n", &self.ns, "-o", "link"])
            .output()
            .unwrap();
        let links = String::from_utf8_lossy(&links.stdout);
        assert!(!links.contains("husk_tap0"), "{links}");
        let qdiscs = self.tc(&["qdisc", "show", "dev", "eth0"]);
        assert!(!qdiscs.contains("ingress"), "{qdiscs}");
    }

    fn tc(&self, args: &[&str]) -> String {
        let out = Command::new("tc")
            .arg("-n")
            .arg(&self.ns)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for EngineNetwork {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.peer])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A bundle `id` running `script` with these `namespaces`.
fn net_bundle(work: &Work, id: &str, script: &str, namespaces: serde_json::Value) -> Bundle {
    let bundle = Bundle::new(&work.0.join(id), &["sh", "-c", script], false);
    let mut config = spec(&["sh", "-c", script], false);
    config["linux"]["namespaces"] = namespaces;
    bundle.write_config(&config);
    bundle
}

/// `husk` with the work directory's state root and configuration.
fn husk(work: &Work) -> Command {
    let mut cmd = Command::new(workspace_bin("husk"));
    cmd.env("HUSK_CONFIG", husk_config(&work.0.join("husk.toml")))
        .arg("--root")
        .arg(work.0.join("state"))
        .stdin(std::process::Stdio::null());
    cmd
}

/// `husk run` of a bundle running `script` with these `namespaces`; gives back the
/// exit code and output, after `husk delete`.
fn husk_run(
    work: &Work,
    id: &str,
    script: &str,
    namespaces: serde_json::Value,
) -> (Option<i32>, String) {
    let bundle = net_bundle(work, id, script, namespaces);
    let husk = |args: &[&str]| husk(work).args(args).output().unwrap();
    let out = husk(&["run", "--bundle", bundle.dir.to_str().unwrap(), id]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let deleted = husk(&["delete", "--force", id]);
    assert!(
        deleted.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    (out.status.code(), text)
}

#[test]
#[ignore = "needs hardware KVM: run in the testbed (tests/run.sh)"]
fn a_container_gets_its_namespace_network_and_leaves_nothing() {
    let work = Work::new("engine");
    let net = EngineNetwork::new("a");
    let listener = TcpListener::bind((PEER_IP, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, from) = listener.accept().unwrap();
        conn.write_all(b"hello-from-the-host\n").unwrap();
        from
    });
    let namespaces = serde_json::json!([
        {"type": "mount"}, {"type": "uts"},
        {"type": "network", "path": net.path()}
    ]);
    let script = format!("ip -o addr show eth0; ip route; ip -o link show lo; nc {PEER_IP} {port}");
    let (code, out) = husk_run(&work, "netjoin", &script, namespaces);
    assert_eq!(code, Some(0), "{out}");
    let from = server.join().unwrap();
    assert_eq!(
        from.ip().to_string(),
        CTR_IP,
        "the connection came from the container's address"
    );
    assert!(out.contains(&format!("inet {CTR_IP}/24")), "{out}");
    assert!(out.contains(&format!("default via {PEER_IP}")), "{out}");
    assert!(out.contains("hello-from-the-host"), "{out}");
    assert!(out.contains("LOOPBACK,UP"), "{out}");
    // Nothing of husk's is left in the engine's namespace.
    net.assert_clean();
}

#[test]
#[ignore = "needs hardware KVM: run in the testbed (tests/run.sh)"]
fn a_new_network_namespace_has_loopback_only() {
    let work = Work::new("none");
    let namespaces = serde_json::json!([{"type": "mount"}, {"type": "network"}]);
    let (code, out) = husk_run(&work, "netnone", "ip -o link; ip -o addr", namespaces);
    assert_eq!(code, Some(0), "{out}");
    let links: Vec<&str> = out.lines().filter(|l| l.contains("link/")).collect();
    assert_eq!(links.len(), 1, "{out}");
    assert!(links[0].contains("lo:") && links[0].contains("UP"), "{out}");
    assert!(out.contains("inet 127.0.0.1/8"), "{out}");
}

#[test]
#[ignore = "needs hardware KVM: run in the testbed (tests/run.sh)"]
fn delete_after_a_killed_sandbox_leaves_the_namespace_clean() {
    let work = Work::new("crash");
    let net = EngineNetwork::new("k");
    let namespaces = serde_json::json!([
        {"type": "mount"}, {"type": "network", "path": net.path()}
    ]);
    let bundle = net_bundle(&work, "netkill", "sleep 1000", namespaces);
    // As conmon runs it: the sandbox process keeps create's stdio, so files, not pipes.
    let log = std::fs::File::create(work.0.join("create.log")).unwrap();
    let status = husk(&work)
        .args([
            "create",
            "--bundle",
            bundle.dir.to_str().unwrap(),
            "netkill",
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .unwrap();
    let log = std::fs::read_to_string(work.0.join("create.log")).unwrap_or_default();
    assert!(status.success(), "create: {log}");
    let qdiscs = net.tc(&["qdisc", "show", "dev", "eth0"]);
    assert!(qdiscs.contains("ingress"), "wired while it runs: {qdiscs}");
    let state = husk(&work).args(["state", "netkill"]).output().unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state.stdout).unwrap();
    let pid = state["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let out = husk(&work)
        .args(["delete", "--force", "netkill"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    net.assert_clean();
}
