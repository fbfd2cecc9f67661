//! The set-up against real network namespaces made with iproute2 (needs root; the
//! tests say so and pass where namespaces cannot be made). Frames are checked at the
//! tap's descriptor: no VM is needed to see the redirects work.

use super::*;
use husk_vmm::devices::virtio::net::tap::{NetBackend, VNET_HDR_LEN};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A named network namespace, deleted on drop.
struct Ns(String);

impl Ns {
    fn new(tag: &str) -> Option<Ns> {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "husk-t{}-{tag}{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("skipped: cannot make network namespaces here (root and iproute2)");
            return None;
        }
        Some(Ns(name))
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.0)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.0];
        all.extend_from_slice(args);
        run(&all)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Two namespaces joined by a veth: `eth0` (10.99.0.2/24, default route via .1) in
/// the container's, `peer0` (10.99.0.1/24) in the other.
fn wired() -> Option<(Ns, Ns)> {
    let ctr = Ns::new("c")?;
    let peer = Ns::new("p")?;
    run(&[
        "ip", "link", "add", "eth0", "netns", &ctr.0, "mtu", "1400", "type", "veth", "peer",
        "name", "peer0", "netns", &peer.0,
    ]);
    ctr.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"]);
    ctr.ip(&["link", "set", "eth0", "up"]);
    ctr.ip(&["route", "add", "default", "via", "10.99.0.1"]);
    ctr.ip(&[
        "route",
        "add",
        "192.168.7.0/24",
        "via",
        "10.99.0.1",
        "metric",
        "50",
    ]);
    peer.ip(&["addr", "add", "10.99.0.1/24", "dev", "peer0"]);
    peer.ip(&["link", "set", "peer0", "up"]);
    Some((ctr, peer))
}

#[test]
fn the_mode_comes_from_the_spec() {
    let spec = |ns: serde_json::Value| serde_json::json!({"linux": {"namespaces": ns}});
    assert_eq!(
        NetworkMode::from_spec(&serde_json::json!({})),
        NetworkMode::LoopbackOnly
    );
    assert_eq!(
        NetworkMode::from_spec(&spec(serde_json::json!([{"type": "network"}]))),
        NetworkMode::LoopbackOnly
    );
    assert_eq!(
        NetworkMode::from_spec(&spec(serde_json::json!([
            {"type": "pid"},
            {"type": "network", "path": "/run/netns/x"}
        ]))),
        NetworkMode::Join("/run/netns/x".into())
    );
}

#[test]
fn a_namespace_with_loopback_only_attaches_nothing() {
    let Some(ns) = Ns::new("lo") else { return };
    let dir = tempfile::tempdir().unwrap();
    assert!(attach(&ns.path(), dir.path()).unwrap().is_none());
    assert!(!dir.path().join(RECORD).exists());
}

#[test]
fn two_interfaces_are_refused_by_name() {
    let Some(ns) = Ns::new("two") else { return };
    ns.ip(&["link", "add", "a0", "type", "veth", "peer", "name", "b0"]);
    let dir = tempfile::tempdir().unwrap();
    let err = attach(&ns.path(), dir.path()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("a0") && text.contains("b0"), "{text}");
    ns.ip(&["link", "show", "a0"]);
    assert!(!ns.ip(&["link"]).contains(TAP_NAME), "no tap left behind");
}

#[test]
fn a_missing_namespace_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = attach(Path::new("/run/netns/husk-no-such-ns"), dir.path()).unwrap_err();
    assert!(err.to_string().contains("husk-no-such-ns"), "{err}");
}

/// Reads frames from the tap until one matches, within a few seconds.
fn frame_on_tap(tap: &Tap, want: impl Fn(&[u8]) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = vec![0u8; 65_600];
    while Instant::now() < deadline {
        match tap.recv(&mut buf) {
            Ok(n) if n > VNET_HDR_LEN && want(&buf[VNET_HDR_LEN..n]) => return true,
            Ok(_) => {}
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn the_veth_is_read_wired_to_the_tap_and_undone() {
    let Some((ctr, peer)) = wired() else { return };
    let dir = tempfile::tempdir().unwrap();
    let attached = attach(&ctr.path(), dir.path()).unwrap().unwrap();

    // What the guest will get: the veth's MAC, MTU, address and routes.
    let veth_mac = ctr.ip(&["-br", "link", "show", "eth0"]);
    let iface = &attached.config.interfaces[0];
    assert!(veth_mac.contains(&iface.mac), "{veth_mac} vs {iface:?}");
    assert_eq!(attached.mac.to_string(), iface.mac);
    assert_eq!((iface.name.as_str(), iface.mtu), ("eth0", 1400));
    let addrs: Vec<String> = iface.addresses.iter().map(|a| a.to_string()).collect();
    assert_eq!(addrs, ["10.99.0.2/24"]);
    let routes: Vec<String> = attached
        .config
        .routes
        .iter()
        .map(|r| {
            format!(
                "{:?} {:?} {:?}",
                r.destination.map(|d| d.to_string()),
                r.gateway,
                r.metric
            )
        })
        .collect();
    assert!(
        routes.contains(&"None Some(10.99.0.1) None".to_owned()),
        "{routes:?}"
    );
    assert!(
        routes.contains(&"Some(\"192.168.7.0/24\") Some(10.99.0.1) Some(50)".to_owned()),
        "{routes:?}"
    );

    // The tap is up with the veth's MTU; both have an ingress redirect.
    let tap_line = ctr.ip(&["-d", "link", "show", TAP_NAME]);
    assert!(
        tap_line.contains("mtu 1400") && tap_line.contains("UP"),
        "{tap_line}"
    );
    for dev in ["eth0", TAP_NAME] {
        let filters = run(&["tc", "-n", &ctr.0, "filter", "show", "dev", dev, "ingress"]);
        assert!(filters.contains("mirred"), "{dev}: {filters}");
    }

    // Frames sent to the container's address arrive at the tap (the peer's ARP).
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &peer.0,
            "busybox",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "10.99.0.2",
        ])
        .output();
    assert!(
        frame_on_tap(&attached.tap, |f| f.len() >= 14
            && f[12..14] == [0x08, 0x06]),
        "no ARP frame reached the tap"
    );
    // And frames written to the tap leave by the veth.
    let before = peer.ip(&["-s", "-j", "link", "show", "peer0"]);
    let mut frame = vec![0u8; VNET_HDR_LEN];
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&attached.mac.0);
    frame.extend_from_slice(&[0x88, 0xb5]); // a local experimental ethertype
    frame.extend_from_slice(&[0u8; 46]);
    attached.tap.send(&frame).unwrap();
    let rx_packets = |json: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        v[0]["stats64"]["rx"]["packets"].as_u64().unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while rx_packets(&peer.ip(&["-s", "-j", "link", "show", "peer0"])) <= rx_packets(&before) {
        assert!(
            Instant::now() < deadline,
            "the frame written to the tap never left"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Teardown: the tap goes with its descriptor, the veth's qdisc with detach.
    drop(attached);
    assert!(
        !ctr.ip(&["link"]).contains(TAP_NAME),
        "the tap outlived its descriptor"
    );
    detach(dir.path()).unwrap();
    let qdiscs = run(&["tc", "-n", &ctr.0, "qdisc", "show", "dev", "eth0"]);
    assert!(!qdiscs.contains("ingress"), "{qdiscs}");
    assert!(!dir.path().join(RECORD).exists());
    // A second detach (delete after teardown) has nothing to do.
    detach(dir.path()).unwrap();
}
