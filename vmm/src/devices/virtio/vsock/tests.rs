//! The device driven by a fake guest driver (mock split queues in guest memory) and real
//! unix sockets on the host side.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::connection::{BUF_ALLOC, CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT as CONNECT_TIMEOUT};
use super::muxer::EPHEMERAL_PORT_BASE;
use super::packet::{op, PacketHeader, HDR_SIZE, SHUTDOWN_BOTH, TYPE_STREAM};
use super::*;

const GUEST_CID: u64 = 3;
const MEM_SIZE: usize = 0x40_0000;
const RX_BUFS: u64 = 0x10_0000;
const RX_BUF_LEN: u32 = 4096;
const TX_BUFS: u64 = 0x20_0000;
const TX_SLOT: u64 = 0x1_1000;
const TX_SLOTS: u16 = 16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;

/// A unique, empty directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "husk-vsock-{}-{name}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn sock(&self) -> PathBuf {
        self.0.join("v.sock")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
}

/// The guest side: three queues in one guest memory.
struct Driver<'a> {
    mem: &'a GuestMemoryMmap,
    rx: MockSplitQueue<'a, GuestMemoryMmap>,
    tx: MockSplitQueue<'a, GuestMemoryMmap>,
    ev: MockSplitQueue<'a, GuestMemoryMmap>,
    rx_given: u16,
    rx_seen: u16,
    tx_given: u16,
    irq: Arc<VirtioInterrupt>,
}

impl<'a> Driver<'a> {
    fn new(mem: &'a GuestMemoryMmap) -> Self {
        Driver {
            mem,
            rx: MockSplitQueue::create(mem, GuestAddress(0), QUEUE_SIZE),
            tx: MockSplitQueue::create(mem, GuestAddress(0x1_0000), QUEUE_SIZE),
            ev: MockSplitQueue::create(mem, GuestAddress(0x2_0000), QUEUE_SIZE),
            rx_given: 0,
            rx_seen: 0,
            tx_given: 0,
            irq: Arc::new(VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap())),
        }
    }

    fn activate(&self, dev: &mut Vsock) {
        let queues: Vec<Queue> = vec![
            self.rx.create_queue().unwrap(),
            self.tx.create_queue().unwrap(),
            self.ev.create_queue().unwrap(),
        ];
        dev.activate(self.mem.clone(), queues, self.irq.clone())
            .unwrap();
    }

    /// Posts `n` more receive buffers of `RX_BUF_LEN` bytes and notifies the device.
    fn give_rx(&mut self, dev: &mut Vsock, n: u16) {
        for _ in 0..n {
            let i = self.rx_given;
            assert!(i < QUEUE_SIZE, "the mock ring does not wrap");
            let addr = RX_BUFS + u64::from(i) * u64::from(RX_BUF_LEN);
            self.rx
                .add_desc_chains(&[desc(addr, RX_BUF_LEN, WRITE)], i)
                .unwrap();
            self.rx_given += 1;
        }
        dev.process_queue(RXQ);
    }

    /// The packets the device put in the receive queue since the last call.
    fn rx_packets(&mut self) -> Vec<(PacketHeader, Vec<u8>)> {
        let mut out = Vec::new();
        let used = self.rx.used().idx().load();
        while self.rx_seen != used {
            let elem = self
                .rx
                .used()
                .ring()
                .ref_at(self.rx_seen as usize)
                .unwrap()
                .load();
            self.rx_seen += 1;
            let addr = RX_BUFS + u64::from(elem.id()) * u64::from(RX_BUF_LEN);
            let len = elem.len() as usize;
            assert!(len >= HDR_SIZE, "used length {len}");
            let mut buf = vec![0u8; len];
            self.mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
            let hdr = PacketHeader::from_bytes(buf[..HDR_SIZE].try_into().unwrap());
            assert_eq!(hdr.len as usize, len - HDR_SIZE);
            assert_eq!(hdr.type_, TYPE_STREAM);
            assert_eq!((hdr.src_cid, hdr.dst_cid), (HOST_CID, GUEST_CID));
            out.push((hdr, buf[HDR_SIZE..].to_vec()));
        }
        out
    }

    /// Puts raw descriptors on the transmit queue (as one chain) and notifies.
    fn send_chain(&mut self, dev: &mut Vsock, descs: &[RawDescriptor]) {
        let mut linked = descs.to_vec();
        let base = self.tx_given;
        for (i, d) in linked.iter_mut().enumerate() {
            let s = SplitDescriptor::from(*d);
            let last = i + 1 == descs.len();
            let flags = if last {
                s.flags()
            } else {
                s.flags() | virtio_bindings::bindings::virtio_ring::VRING_DESC_F_NEXT as u16
            };
            *d = RawDescriptor::from(SplitDescriptor::new(
                s.addr().0,
                s.len(),
                flags,
                base + i as u16 + 1,
            ));
        }
        self.tx.add_desc_chains(&linked, base).unwrap();
        self.tx_given += descs.len() as u16;
        dev.process_queue(TXQ);
    }

    /// Sends one packet: header and payload in two descriptors.
    fn send(&mut self, dev: &mut Vsock, hdr: PacketHeader, payload: &[u8]) {
        let slot = TX_BUFS + u64::from(self.tx_given % TX_SLOTS) * TX_SLOT;
        let hdr = PacketHeader {
            len: payload.len() as u32,
            ..hdr
        };
        self.mem
            .write_slice(&hdr.to_bytes(), GuestAddress(slot))
            .unwrap();
        self.mem
            .write_slice(payload, GuestAddress(slot + 0x100))
            .unwrap();
        if payload.is_empty() {
            self.send_chain(dev, &[desc(slot, HDR_SIZE as u32, 0)]);
        } else {
            self.send_chain(
                dev,
                &[
                    desc(slot, HDR_SIZE as u32, 0),
                    desc(slot + 0x100, payload.len() as u32, 0),
                ],
            );
        }
    }

    fn tx_used(&self) -> Vec<(u32, u32)> {
        let used = self.tx.used().idx().load();
        (0..used)
            .map(|i| {
                let e = self.tx.used().ring().ref_at(i as usize).unwrap().load();
                (e.id(), e.len())
            })
            .collect()
    }
}

/// A guest packet from (guest, `src_port`) to (host, `dst_port`).
fn guest_hdr(op: u16, src_port: u32, dst_port: u32) -> PacketHeader {
    PacketHeader {
        src_cid: GUEST_CID,
        dst_cid: HOST_CID,
        src_port,
        dst_port,
        len: 0,
        type_: TYPE_STREAM,
        op,
        flags: 0,
        buf_alloc: 8192,
        fwd_cnt: 0,
    }
}

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

fn host_stream(path: &std::path::Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    // Only a safety net against a hang: every read below has its bytes ready.
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 64 {
        s.read_exact(&mut b).unwrap();
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

fn is_closed(s: &mut UnixStream) -> bool {
    let mut b = [0u8; 16];
    // A socket closed with bytes unread resets its peer.
    match s.read(&mut b) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

/// Concatenated RW payloads; panics on other packets.
fn data_of(pkts: &[(PacketHeader, Vec<u8>)]) -> Vec<u8> {
    pkts.iter()
        .flat_map(|(h, p)| {
            assert_eq!(h.op, op::RW, "{h:?}");
            p.clone()
        })
        .collect()
}

/// Host connects with `CONNECT port`, the guest accepts: returns the stream and the
/// host port.
fn host_connect(
    dev: &mut Vsock,
    g: &mut Driver,
    path: &std::path::Path,
    port: u32,
) -> (UnixStream, u32) {
    let mut host = host_stream(path);
    host.write_all(format!("CONNECT {port}\n").as_bytes())
        .unwrap();
    dev.process_backend();
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1, "{pkts:?}");
    let req = pkts[0].0;
    assert_eq!(req.op, op::REQUEST);
    assert_eq!(req.dst_port, port);
    assert_eq!(req.buf_alloc, BUF_ALLOC);
    g.send(dev, guest_hdr(op::RESPONSE, port, req.src_port), &[]);
    assert_eq!(read_line(&mut host), format!("OK {}", req.src_port));
    (host, req.src_port)
}

#[test]
fn vsock_identity_and_config() {
    let dir = TempDir::new("identity");
    let mut dev = Vsock::new(0x8765_4321, dir.sock()).unwrap();
    assert_eq!(dev.device_type(), 19);
    assert_eq!(dev.queue_max_sizes(), &[256, 256, 256]);
    assert_eq!(dev.avail_features(), VIRTIO_F_VERSION_1);
    dev.ack_features(u64::MAX);
    assert_eq!(dev.acked_features, VIRTIO_F_VERSION_1);
    let mut cfg = [0xffu8; 12];
    dev.read_config(0, &mut cfg);
    assert_eq!(&cfg[..8], &0x8765_4321u64.to_le_bytes());
    assert_eq!(&cfg[8..], &[0; 4]);
    let mut hi = [0xffu8; 4];
    dev.read_config(2, &mut hi);
    assert_eq!(hi, [0x65, 0x87, 0, 0]);
    dev.read_config(u64::MAX, &mut hi);
    assert_eq!(hi, [0; 4]);
    dev.write_config(0, &[9; 8]);
    dev.read_config(0, &mut cfg[..8]);
    assert_eq!(&cfg[..8], &0x8765_4321u64.to_le_bytes(), "read-only");
    assert!(dev.backend_fd().is_some());
    for cid in [0, 1, 2, u64::from(u32::MAX), u64::MAX] {
        let path = dir.0.join(format!("bad{cid}"));
        assert!(matches!(
            Vsock::new(cid, path),
            Err(VsockError::InvalidCid(_))
        ));
    }
}

#[test]
fn vsock_new_refuses_an_existing_path_and_cleans_up() {
    let dir = TempDir::new("path");
    let path = dir.sock();
    let dev = Vsock::new(GUEST_CID, path.clone()).unwrap();
    assert!(path.exists());
    let err = Vsock::new(GUEST_CID, path.clone()).unwrap_err();
    assert!(matches!(err, VsockError::PathExists(_)));
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    drop(dev);
    assert!(!path.exists(), "socket removed on drop");
    std::fs::write(&path, b"x").unwrap();
    assert!(Vsock::new(GUEST_CID, path.clone()).is_err());
    let missing = dir.0.join("no/such/dir/v.sock");
    let err = Vsock::new(GUEST_CID, missing).unwrap_err();
    assert!(matches!(err, VsockError::Bind { .. }));
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn vsock_host_initiated_connection_carries_data_within_credit() {
    let dir = TempDir::new("host");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);

    let mut host = host_stream(&dir.sock());
    host.write_all(b"CONNECT 1234\n").unwrap();
    dev.process_backend();
    assert!(g.rx_packets().is_empty(), "no receive buffers yet");
    g.give_rx(&mut dev, 4);
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    let req = pkts[0].0;
    assert_eq!(req.op, op::REQUEST);
    assert_eq!((req.src_port, req.dst_port), (EPHEMERAL_PORT_BASE, 1234));
    assert_eq!(g.irq.status(), INT_VRING);

    g.send(&mut dev, guest_hdr(op::RESPONSE, 1234, req.src_port), &[]);
    dev.process_backend();
    assert_eq!(read_line(&mut host), format!("OK {EPHEMERAL_PORT_BASE}"));
    assert_eq!(g.tx_used(), vec![(0, 0)]);

    // Guest to host.
    g.send(&mut dev, guest_hdr(op::RW, 1234, req.src_port), b"ping");
    let mut buf = [0u8; 4];
    host.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");

    // Host to guest: the RW carries our credit (4 bytes forwarded).
    host.write_all(b"pong").unwrap();
    dev.process_backend();
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    let (hdr, payload) = &pkts[0];
    assert_eq!((hdr.op, payload.as_slice()), (op::RW, &b"pong"[..]));
    assert_eq!((hdr.src_port, hdr.dst_port), (req.src_port, 1234));
    assert_eq!((hdr.buf_alloc, hdr.fwd_cnt), (BUF_ALLOC, 4));

    // The guest advertised 8192 bytes and has 4 of them: 8188 more, no further.
    let big: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    host.write_all(&big).unwrap();
    g.give_rx(&mut dev, 8);
    dev.process_backend();
    let first = data_of(&g.rx_packets());
    assert_eq!(first.len(), 8188);
    assert_eq!(first, big[..8188]);
    dev.process_backend();
    assert!(g.rx_packets().is_empty(), "out of credit");
    // The guest consumed it all and says so.
    let update = PacketHeader {
        fwd_cnt: 8192,
        ..guest_hdr(op::CREDIT_UPDATE, 1234, req.src_port)
    };
    g.send(&mut dev, update, &[]);
    let rest = data_of(&g.rx_packets());
    assert_eq!(rest, big[8188..]);

    // A credit request is answered with our counters.
    g.send(
        &mut dev,
        PacketHeader {
            fwd_cnt: 10_004,
            ..guest_hdr(op::CREDIT_REQUEST, 1234, req.src_port)
        },
        &[],
    );
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].0.op, op::CREDIT_UPDATE);
    assert_eq!(pkts[0].0.fwd_cnt, 4);

    // Guest RST closes the stream.
    g.send(&mut dev, guest_hdr(op::RST, 1234, req.src_port), &[]);
    assert!(is_closed(&mut host));
    assert_eq!(dev.connections(), 0);
}

#[test]
fn vsock_host_ports_are_distinct() {
    let dir = TempDir::new("ports");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 8);
    let (_a, pa) = host_connect(&mut dev, &mut g, &dir.sock(), 80);
    let (_b, pb) = host_connect(&mut dev, &mut g, &dir.sock(), 80);
    assert_eq!((pa, pb), (EPHEMERAL_PORT_BASE, EPHEMERAL_PORT_BASE + 1));
    assert_eq!(dev.connections(), 2);
}

#[test]
fn vsock_host_connect_before_activation_waits_for_the_driver() {
    let dir = TempDir::new("early");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mut host = host_stream(&dir.sock());
    host.write_all(b"CONNECT 52\n").unwrap();
    dev.process_backend();
    assert_eq!(dev.connections(), 1);
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 2);
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!((pkts[0].0.op, pkts[0].0.dst_port), (op::REQUEST, 52));
    // Nothing listens in the guest.
    g.send(&mut dev, guest_hdr(op::RST, 52, pkts[0].0.src_port), &[]);
    assert!(is_closed(&mut host));
    assert_eq!(dev.connections(), 0);
}

#[test]
fn vsock_guest_initiated_connection_carries_data() {
    let dir = TempDir::new("guest");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let listener = UnixListener::bind(format!("{}_5000", dir.sock().display())).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 16);

    g.send(&mut dev, guest_hdr(op::REQUEST, 1000, 5000), &[]);
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    let resp = pkts[0].0;
    assert_eq!(resp.op, op::RESPONSE);
    assert_eq!((resp.src_port, resp.dst_port), (5000, 1000));
    assert_eq!((resp.buf_alloc, resp.fwd_cnt), (BUF_ALLOC, 0));
    let (mut host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    g.send(&mut dev, guest_hdr(op::RW, 1000, 5000), b"hello host");
    let mut buf = [0u8; 10];
    host.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello host");

    host.write_all(b"hello guest").unwrap();
    dev.process_backend();
    let pkts = g.rx_packets();
    assert_eq!(data_of(&pkts), b"hello guest");
    assert_eq!(pkts[0].0.fwd_cnt, 10);

    // Guest shuts down both directions: the stream is closed and the guest gets RST.
    let shut = PacketHeader {
        flags: SHUTDOWN_BOTH,
        ..guest_hdr(op::SHUTDOWN, 1000, 5000)
    };
    g.send(&mut dev, shut, &[]);
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].0.op, op::RST);
    assert!(is_closed(&mut host));
    assert_eq!(dev.connections(), 0);
}

#[test]
fn vsock_guest_connect_without_listener_gets_rst() {
    let dir = TempDir::new("refused");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 4);
    g.send(&mut dev, guest_hdr(op::REQUEST, 1000, 5001), &[]);
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].0.op, op::RST);
    assert_eq!((pkts[0].0.src_port, pkts[0].0.dst_port), (5001, 1000));
    assert_eq!(dev.connections(), 0);
    // Data for a connection that does not exist: RST too; an RST is not answered.
    g.send(&mut dev, guest_hdr(op::RW, 1000, 5001), b"x");
    g.send(&mut dev, guest_hdr(op::RST, 1000, 5001), &[]);
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].0.op, op::RST);
}

#[test]
fn vsock_unix_close_shuts_the_guest_down() {
    let dir = TempDir::new("hup");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 16);

    // The guest's RST after our SHUTDOWN ends it.
    let (host, port) = host_connect(&mut dev, &mut g, &dir.sock(), 7);
    (&host).write_all(b"last words").unwrap();
    drop(host);
    dev.process_backend();
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 2, "{pkts:?}");
    assert_eq!(data_of(&pkts[..1]), b"last words");
    assert_eq!(
        (pkts[1].0.op, pkts[1].0.flags),
        (op::SHUTDOWN, SHUTDOWN_BOTH)
    );
    g.send(&mut dev, guest_hdr(op::RST, 7, port), &[]);
    assert_eq!(dev.connections(), 0);
    assert!(g.rx_packets().is_empty());

    // A guest that never answers gets an RST after the close timeout.
    let (host, port) = host_connect(&mut dev, &mut g, &dir.sock(), 8);
    drop(host);
    dev.process_backend();
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].0.op, op::SHUTDOWN);
    dev.run(Instant::now() + CLOSE_TIMEOUT + Duration::from_secs(1));
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!((pkts[0].0.op, pkts[0].0.src_port), (op::RST, port));
    assert_eq!(dev.connections(), 0);
}

#[test]
fn vsock_malformed_connect_lines_close_the_stream() {
    let dir = TempDir::new("badline");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 4);
    let long = format!("CONNECT {}", "1".repeat(40));
    for line in [
        &b"CONNECT abc\n"[..],
        b"CONNECT 99999999999\n",
        b"HELLO\n",
        b"CONNECT 1 2\n",
        long.as_bytes(),
    ] {
        let mut host = host_stream(&dir.sock());
        host.write_all(line).unwrap();
        dev.process_backend();
        assert!(
            is_closed(&mut host),
            "{:?} not refused",
            String::from_utf8_lossy(line)
        );
    }
    assert_eq!(dev.connections(), 0);
    assert!(g.rx_packets().is_empty(), "the guest heard nothing");
}

#[test]
fn vsock_a_longer_connect_timeout_lets_a_slow_guest_answer() {
    let dir = TempDir::new("slow");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    dev.set_connect_timeout(CONNECT_TIMEOUT * 5);
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 4);
    let mut host = host_stream(&dir.sock());
    host.write_all(b"CONNECT 1024\n").unwrap();
    dev.process_backend();
    let req = g.rx_packets();
    assert_eq!(req.len(), 1);
    // Past the default limit the host still waits; past the configured one it is closed.
    dev.run(Instant::now() + CONNECT_TIMEOUT * 2);
    assert_eq!(dev.connections(), 1);
    dev.run(Instant::now() + CONNECT_TIMEOUT * 5 + Duration::from_secs(1));
    assert_eq!(dev.connections(), 0);
    assert!(is_closed(&mut host));
}

#[test]
fn vsock_unanswered_handshakes_time_out() {
    let dir = TempDir::new("timeout");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 4);
    // One that never finishes its line, one whose REQUEST the guest ignores.
    let mut silent = host_stream(&dir.sock());
    silent.write_all(b"CONN").unwrap();
    let mut ignored = host_stream(&dir.sock());
    ignored.write_all(b"CONNECT 9\n").unwrap();
    dev.process_backend();
    let req = g.rx_packets();
    assert_eq!(req.len(), 1);
    assert_eq!(dev.connections(), 2);
    dev.run(Instant::now() + CONNECT_TIMEOUT / 2);
    assert_eq!(dev.connections(), 2);
    dev.run(Instant::now() + CONNECT_TIMEOUT + Duration::from_secs(1));
    assert_eq!(dev.connections(), 0);
    assert!(is_closed(&mut silent));
    assert!(is_closed(&mut ignored));
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!(
        (pkts[0].0.op, pkts[0].0.src_port),
        (op::RST, req[0].0.src_port)
    );
}

#[test]
fn vsock_drops_invalid_tx_packets() {
    let dir = TempDir::new("invalid");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let listener = UnixListener::bind(format!("{}_6000", dir.sock().display())).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 16);
    g.send(&mut dev, guest_hdr(op::REQUEST, 1000, 6000), &[]);
    assert_eq!(g.rx_packets()[0].0.op, op::RESPONSE);
    let (mut host, _) = listener.accept().unwrap();
    host.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // Too short, outside memory: dropped, nothing else happens.
    let slot = TX_BUFS + 0x8000;
    g.send_chain(&mut dev, &[desc(slot, 20, 0)]);
    g.send_chain(&mut dev, &[desc(MEM_SIZE as u64 + 0x1000, 64, 0)]);
    assert!(g.rx_packets().is_empty());
    assert_eq!(dev.connections(), 1);
    assert_eq!(dev.stats().tx_invalid, 2);
    // A header naming the connection, with a lying length: the connection is reset.
    let lying = PacketHeader {
        len: 100,
        ..guest_hdr(op::RW, 1000, 6000)
    };
    mem.write_slice(&lying.to_bytes(), GuestAddress(slot))
        .unwrap();
    g.send_chain(&mut dev, &[desc(slot, HDR_SIZE as u32 + 4, 0)]);
    let pkts = g.rx_packets();
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].0.op, op::RST);
    assert!(is_closed(&mut host));
    assert_eq!(dev.connections(), 0);
    assert_eq!(dev.stats().tx_invalid, 3);
    // Every chain was returned, with length 0.
    let used = g.tx_used();
    assert_eq!(used.len(), 4);
    assert!(used.iter().all(|&(_, len)| len == 0));
}

#[test]
fn vsock_waits_for_receive_buffers() {
    let dir = TempDir::new("stall");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let listener = UnixListener::bind(format!("{}_7000", dir.sock().display())).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 1);
    let big_credit = PacketHeader {
        buf_alloc: 1 << 20,
        ..guest_hdr(op::REQUEST, 1000, 7000)
    };
    g.send(&mut dev, big_credit, &[]);
    assert_eq!(g.rx_packets()[0].0.op, op::RESPONSE);
    let (host, _) = listener.accept().unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
    (&host).write_all(&data).unwrap();
    // No buffers: nothing moves however often the backend runs.
    for _ in 0..4 {
        dev.process_backend();
    }
    assert!(g.rx_packets().is_empty());
    let mut got = Vec::new();
    for _ in 0..100 {
        g.give_rx(&mut dev, 2);
        dev.process_backend();
        got.extend(data_of(&g.rx_packets()));
        if got.len() >= data.len() {
            break;
        }
    }
    assert_eq!(got, data);
}

#[test]
fn vsock_reset_drops_every_connection() {
    let dir = TempDir::new("reset");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mem = memory();
    let mut g = Driver::new(&mem);
    g.activate(&mut dev);
    g.give_rx(&mut dev, 4);
    let (mut host, _) = host_connect(&mut dev, &mut g, &dir.sock(), 11);
    let mut pending = host_stream(&dir.sock());
    dev.process_backend();
    assert_eq!(dev.connections(), 2);
    dev.reset();
    assert_eq!(dev.connections(), 0);
    assert!(is_closed(&mut host));
    assert!(is_closed(&mut pending));
    // Not activated any more: queues are left alone.
    let used = g.rx.used().idx().load();
    dev.process_queue(RXQ);
    dev.process_queue(TXQ);
    dev.process_backend();
    assert_eq!(g.rx.used().idx().load(), used);
    // Still listening.
    let _again = host_stream(&dir.sock());
    dev.process_backend();
    assert_eq!(dev.connections(), 1);
}

#[test]
fn vsock_refuses_a_wrong_set_of_queues() {
    let dir = TempDir::new("queues");
    let mut dev = Vsock::new(GUEST_CID, dir.sock()).unwrap();
    let mem = memory();
    let irq = Arc::new(VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
    let two = vec![Queue::new(16).unwrap(), Queue::new(16).unwrap()];
    assert!(dev.activate(mem.clone(), two, irq.clone()).is_err());
    let unready = vec![
        Queue::new(16).unwrap(),
        Queue::new(16).unwrap(),
        Queue::new(16).unwrap(),
    ];
    assert!(dev.activate(mem, unready, irq).is_err());
}
