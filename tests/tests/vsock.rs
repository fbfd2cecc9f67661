//! The host reaching the agent through husk-vmm's virtio-vsock, end to end. Needs
//! hardware KVM: ignored by a plain `cargo test`, run in the testbed by `tests/run.sh`.

use husk_protocol::console::READY_PREFIX;
use husk_protocol::diag::StreamGenerator;
use husk_protocol::AGENT_PORT;
use husk_runtime::agent::{AgentClient, ClientError, Timeouts};
use husk_tests::console::ConsoleVm;
use husk_tests::guest_image::GuestImage;
use husk_tests::vm_command::{self, Boot};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;

/// A booted guest with a vsock device, and the unix socket that reaches it.
struct VsockGuest {
    vm: ConsoleVm,
    socket: PathBuf,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn boot(name: &str, vcpus: u8) -> VsockGuest {
    let image = GuestImage::from_env();
    let dir = std::env::temp_dir().join(format!("husk-vsock-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("vsock.sock");
    let mut cmd = vm_command::husk_vmm(Boot {
        kernel: &image.kernel,
        initrd: &image.initrd,
        vcpus,
        mem_mib: 256,
        extra_cmdline: "",
    });
    cmd.arg("--vsock").arg(&socket).arg("--rng");
    let mut vm = ConsoleVm::spawn(cmd).unwrap();
    vm.wait_for_line(READY_PREFIX, BOOT_TIMEOUT).unwrap();
    VsockGuest {
        vm,
        socket,
        _dir: TempDir(dir),
    }
}

fn client(socket: &Path) -> AgentClient {
    AgentClient::connect(socket, AGENT_PORT, Timeouts::default()).expect("reach the agent")
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn host_reaches_the_agent_and_shuts_the_vm_down() {
    let mut guest = boot("health", 1);
    let mut agent = client(&guest.socket);
    assert_eq!(agent.agent_version(), husk_protocol::console::VERSION);
    let health = agent.health().unwrap();
    assert!(health.mem_total_kib > 100 * 1024, "{health:?}");

    // Several clients at once, each with its own connection.
    let socket = guest.socket.clone();
    let others: Vec<_> = (0..4)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || client(&socket).health().map(|h| h.uptime_ms))
        })
        .collect();
    for other in others {
        assert!(other.join().unwrap().unwrap() > 0);
    }

    agent.shutdown().unwrap();
    let status = guest.vm.wait_exit(EXIT_TIMEOUT).unwrap();
    assert!(status.success(), "husk-vmm ended with {status}");
    assert!(!guest.socket.exists(), "the vsock socket outlived the VM");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_port_nobody_listens_on_is_refused_by_name() {
    let guest = boot("refused", 1);
    let err = AgentClient::connect(&guest.socket, 4242, Timeouts::default()).unwrap_err();
    assert!(
        matches!(err, ClientError::ConnectRefused { port: 4242 }),
        "{err:?}"
    );
    assert!(err.to_string().contains("4242"), "{err}");
    // The agent is unaffected.
    client(&guest.socket).health().unwrap();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_hundred_mib_each_way_arrive_intact() {
    // One vCPU: with two, the testbed's nested KVM now and then leaves one halted
    // while the other spins (docs/testing.md, "The testbed hang").
    let mut guest = boot("stream", 1);
    let mut agent = client(&guest.socket);
    let bytes = 100 * MIB;

    let start = Instant::now();
    let data = StreamGenerator::new(7).take(bytes);
    let digest = agent
        .stream_sink(bytes, data)
        .unwrap_or_else(|e| panic!("host to guest: {e}\n{}", guest.vm.post_mortem()));
    let up = start.elapsed();
    assert_eq!(digest.bytes, bytes);

    let start = Instant::now();
    let got = agent
        .stream_source(bytes, 11)
        .unwrap_or_else(|e| panic!("guest to host: {e}\n{}", guest.vm.post_mortem()));
    let down = start.elapsed();
    assert_eq!(got, bytes);

    let rate = |d: Duration| bytes as f64 / MIB as f64 / d.as_secs_f64();
    eprintln!(
        "vsock: host->guest {:.1} MiB/s, guest->host {:.1} MiB/s (100 MiB each, checksums match)",
        rate(up),
        rate(down)
    );
    // The connection is usable after the transfers.
    agent.health().unwrap();
}
