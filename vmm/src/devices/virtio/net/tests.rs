//! The device driven by a fake guest driver (mock split queues in guest memory), with
//! a datagram socket pair standing in for the tap: both carry whole frames.

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU32, Ordering};

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};

use super::*;

const MEM_SIZE: usize = 0x40_0000;
const RX_BUFS: u64 = 0x10_0000;
const RX_BUF_LEN: u32 = 2048;
const TX_BUFS: u64 = 0x30_0000;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const MAC: MacAddr = MacAddr([0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);

/// The host side of the fake tap, with the offload flags it was given.
struct FakeTap {
    sock: UnixDatagram,
    offload: Arc<AtomicU32>,
}

impl AsRawFd for FakeTap {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

impl NetBackend for FakeTap {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.recv(buf)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        self.sock.send(frame)
    }

    fn set_offload(&self, flags: u32) -> io::Result<()> {
        self.offload.store(flags, Ordering::SeqCst);
        Ok(())
    }
}

/// A device, its driver's queues, and the far end of its tap.
struct Rig<'a> {
    dev: Net,
    mem: &'a GuestMemoryMmap,
    rx: MockSplitQueue<'a, GuestMemoryMmap>,
    tx: MockSplitQueue<'a, GuestMemoryMmap>,
    rx_given: u16,
    tx_given: u16,
    peer: UnixDatagram,
    offload: Arc<AtomicU32>,
    irq: Arc<VirtioInterrupt>,
}

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// A frame: a header with `flags` in its first byte, then `payload`.
fn frame(flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f[0] = flags;
    f.extend_from_slice(payload);
    f
}

impl<'a> Rig<'a> {
    fn new(mem: &'a GuestMemoryMmap, mtu: Option<u16>) -> Self {
        let (ours, peer) = UnixDatagram::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_nonblocking(true).unwrap();
        let offload = Arc::new(AtomicU32::new(u32::MAX));
        let tap = FakeTap {
            sock: ours,
            offload: offload.clone(),
        };
        Rig {
            dev: Net::new(Box::new(tap), MAC, mtu).unwrap(),
            mem,
            rx: MockSplitQueue::create(mem, GuestAddress(0), QUEUE_SIZE),
            tx: MockSplitQueue::create(mem, GuestAddress(0x1_0000), QUEUE_SIZE),
            rx_given: 0,
            tx_given: 0,
            peer,
            offload,
            irq: Arc::new(VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap())),
        }
    }

    /// Accepts `features` and starts the device, as a driver does.
    fn activate(&mut self, features: u64) {
        self.dev.ack_features(features);
        let queues = vec![
            self.rx.create_queue().unwrap(),
            self.tx.create_queue().unwrap(),
        ];
        self.dev
            .activate(self.mem.clone(), queues, self.irq.clone())
            .unwrap();
        self.dev.process_backend();
    }

    /// Posts `n` receive buffers of `len` bytes and notifies the device.
    fn give_rx(&mut self, n: u16, len: u32) {
        for _ in 0..n {
            let i = self.rx_given;
            let addr = RX_BUFS + u64::from(i) * 0x1_0000;
            self.rx
                .add_desc_chains(&[desc(addr, len, WRITE, 0)], i)
                .unwrap();
            self.rx_given += 1;
        }
        self.dev.process_queue(RXQ);
    }

    /// (head, used length) of receive used-ring entry `i`, and the bytes written.
    fn rx_used(&self, i: u16) -> (u32, Vec<u8>) {
        let elem = self.rx.used().ring().ref_at(i as usize).unwrap().load();
        let addr = RX_BUFS + u64::from(elem.id()) * 0x1_0000;
        let mut data = vec![0u8; elem.len() as usize];
        self.mem.read_slice(&mut data, GuestAddress(addr)).unwrap();
        (elem.id(), data)
    }

    fn rx_used_count(&self) -> u16 {
        self.rx.used().idx().load()
    }

    fn tx_used_count(&self) -> u16 {
        self.tx.used().idx().load()
    }

    /// Queues one transmit chain made of `parts` (address, length, flags) and notifies.
    fn send_chain(&mut self, parts: &[(u64, u32, u16)]) {
        let base = self.tx_given;
        let descs: Vec<RawDescriptor> = parts
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, flags))| {
                let last = i + 1 == parts.len();
                let flags = if last { flags } else { flags | NEXT };
                desc(addr, len, flags, base + i as u16 + 1)
            })
            .collect();
        self.tx.add_desc_chains(&descs, base).unwrap();
        self.tx_given += parts.len() as u16;
        self.dev.process_queue(TXQ);
    }

    /// Writes `frame` to guest memory at `addr` and sends it in chunks of `chunk`.
    fn send(&mut self, frame: &[u8], addr: u64, chunk: usize) {
        self.mem.write_slice(frame, GuestAddress(addr)).unwrap();
        let parts: Vec<(u64, u32, u16)> = frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| (addr + (i * chunk) as u64, c.len() as u32, 0))
            .collect();
        self.send_chain(&parts);
    }

    fn peer_recv(&self) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; MAX_FRAME + 16];
        match self.peer.recv(&mut buf) {
            Ok(n) => Some(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn identity_features_and_configuration() {
    let mem = memory();
    let rig = Rig::new(&mem, Some(1400));
    let dev = &rig.dev;
    assert_eq!(dev.device_type(), TYPE_NET);
    assert_eq!(dev.queue_max_sizes(), &[QUEUE_SIZE, QUEUE_SIZE]);
    let features = dev.avail_features();
    for f in [
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_GUEST_TSO4,
    ] {
        assert_ne!(features & bit(f), 0, "feature {f}");
    }
    assert_ne!(features & VIRTIO_F_VERSION_1, 0);
    let mut config = [0xffu8; 12];
    dev.read_config(0, &mut config);
    assert_eq!(config[..6], MAC.0);
    assert_eq!(u16::from_le_bytes([config[8], config[9]]), 1);
    assert_eq!(u16::from_le_bytes([config[10], config[11]]), 1400);
    // Byte-wise and out-of-range reads.
    let mut one = [0xffu8; 1];
    dev.read_config(5, &mut one);
    assert_eq!(one, [0x02]);
    let mut past = [0xffu8; 4];
    dev.read_config(10, &mut past);
    assert_eq!(past, [0x78, 0x05, 0, 0]);
    dev.read_config(u64::MAX, &mut past);
    assert_eq!(past, [0; 4]);
    // Without an MTU the feature is not offered.
    let rig = Rig::new(&mem, None);
    assert_eq!(rig.dev.avail_features() & bit(VIRTIO_NET_F_MTU), 0);
}

#[test]
fn bad_settings_are_refused() {
    let mem = memory();
    let (a, _b) = UnixDatagram::pair().unwrap();
    let tap = || {
        Box::new(FakeTap {
            sock: a.try_clone().unwrap(),
            offload: Arc::default(),
        })
    };
    let err = Net::new(tap(), MAC, Some(20)).unwrap_err();
    assert!(err.to_string().contains("MTU 20"), "{err}");
    let multicast = MacAddr([0x01, 0, 0x5e, 0, 0, 1]);
    let err = Net::new(tap(), multicast, None).unwrap_err();
    assert!(err.to_string().contains("01:00:5e:00:00:01"), "{err}");
    assert_eq!("02:42:ac:11:00:02".parse::<MacAddr>(), Ok(MAC));
    for bad in [
        "02:42:ac:11:00",
        "02:42:ac:11:00:02:03",
        "2:42:ac:11:00:02",
        "zz:42:ac:11:00:02",
    ] {
        assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
    }
    drop(mem);
}

#[test]
fn receive_offloads_follow_the_driver() {
    let mem = memory();
    let mut rig = Rig::new(&mem, None);
    let csum_tso4 = bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4);
    rig.activate(VIRTIO_F_VERSION_1 | csum_tso4);
    assert_eq!(
        rig.offload.load(Ordering::SeqCst),
        libc::TUN_F_CSUM | libc::TUN_F_TSO4
    );
    // TSO without checksum offload is meaningless: nothing is enabled.
    rig.dev.reset();
    assert_eq!(rig.offload.load(Ordering::SeqCst), 0);
    let mut rig = Rig::new(&mem, None);
    rig.activate(VIRTIO_F_VERSION_1 | bit(VIRTIO_NET_F_GUEST_TSO6));
    assert_eq!(rig.offload.load(Ordering::SeqCst), 0);
}

#[test]
fn a_transmitted_frame_reaches_the_tap_whole() {
    let mem = memory();
    let mut rig = Rig::new(&mem, None);
    rig.activate(rig.dev.avail_features());
    let payload: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
    let sent = frame(1, &payload);
    // Header and payload split over several descriptors, as drivers do.
    rig.send(&sent, TX_BUFS, 700);
    assert_eq!(rig.peer_recv().as_deref(), Some(&sent[..]));
    assert_eq!(rig.peer_recv(), None);
    assert_eq!(rig.tx_used_count(), 1);
    assert_ne!(rig.irq.status() & INT_VRING, 0);
}

#[test]
fn malformed_transmit_chains_are_dropped_and_returned() {
    let mem = memory();
    let mut rig = Rig::new(&mem, None);
    rig.activate(rig.dev.avail_features());
    // A device-writable buffer in a transmit chain.
    rig.send_chain(&[(TX_BUFS, 12, 0), (TX_BUFS + 0x100, 64, WRITE)]);
    // Shorter than the header.
    rig.send_chain(&[(TX_BUFS, 8, 0)]);
    // Outside guest memory.
    rig.send_chain(&[(TX_BUFS, 12, 0), (MEM_SIZE as u64 - 10, 64, 0)]);
    // Longer than any frame: the same buffer four times over.
    let big = 0x8000;
    rig.send_chain(&[(TX_BUFS, big, 0); 4]);
    assert_eq!(rig.peer_recv(), None, "nothing reached the tap");
    assert_eq!(
        rig.tx_used_count(),
        4,
        "every chain went back to the driver"
    );
    // The device goes on working.
    let good = frame(0, b"after the bad ones");
    rig.send(&good, TX_BUFS, 4096);
    assert_eq!(rig.peer_recv().as_deref(), Some(&good[..]));
}

#[test]
fn a_received_frame_reaches_the_guest_with_one_buffer() {
    let mem = memory();
    let mut rig = Rig::new(&mem, None);
    rig.activate(rig.dev.avail_features());
    rig.give_rx(4, RX_BUF_LEN);
    let mut sent = frame(0, b"hello guest");
    // Garbage where the tap leaves the header's num_buffers alone.
    sent[10] = 0xaa;
    sent[11] = 0xbb;
    rig.peer.send(&sent).unwrap();
    rig.dev.process_backend();
    assert_eq!(rig.rx_used_count(), 1);
    let (head, data) = rig.rx_used(0);
    assert_eq!(head, 0);
    assert_eq!(data.len(), sent.len());
    assert_eq!(&data[..10], &sent[..10]);
    assert_eq!(u16::from_le_bytes([data[10], data[11]]), 1, "num_buffers");
    assert_eq!(&data[12..], b"hello guest");
    assert_ne!(rig.irq.status() & INT_VRING, 0);
}

#[test]
fn frames_wait_for_receive_buffers_in_order() {
    let mem = memory();
    let mut rig = Rig::new(&mem, None);
    rig.activate(rig.dev.avail_features());
    for i in 0..5u8 {
        rig.peer.send(&frame(0, &[i; 60])).unwrap();
    }
    rig.dev.process_backend();
    assert_eq!(rig.rx_used_count(), 0, "no buffers yet");
    rig.give_rx(2, RX_BUF_LEN);
    assert_eq!(rig.rx_used_count(), 2);
    rig.give_rx(3, RX_BUF_LEN);
    assert_eq!(rig.rx_used_count(), 5);
    for i in 0..5u8 {
        let (_, data) = rig.rx_used(u16::from(i));
        assert_eq!(&data[12..], &[i; 60], "frame {i}");
    }
}

#[test]
fn a_frame_too_big_for_its_buffer_is_dropped_not_cut() {
    let mem = memory();
    let mut rig = Rig::new(&mem, None);
    rig.activate(rig.dev.avail_features());
    rig.give_rx(1, 64);
    rig.give_rx(1, RX_BUF_LEN);
    rig.peer.send(&frame(0, &[7; 200])).unwrap();
    rig.peer.send(&frame(0, &[8; 40])).unwrap();
    rig.dev.process_backend();
    assert_eq!(rig.rx_used_count(), 2);
    let (_, dropped) = rig.rx_used(0);
    assert!(dropped.is_empty(), "the too-small buffer comes back empty");
    let (_, data) = rig.rx_used(1);
    assert_eq!(&data[12..], &[8; 40]);
    let counters = rig.dev.counters();
    assert_eq!((counters.rx_dropped, counters.rx_frames), (1, 1));
    assert_eq!(counters.rx_bytes, 52);
}

#[test]
fn nothing_moves_before_activation_or_after_reset() {
    let mem = memory();
    let mut rig = Rig::new(&mem, None);
    rig.peer.send(&frame(0, b"early")).unwrap();
    rig.dev.process_backend();
    rig.dev.process_queue(RXQ);
    rig.dev.process_queue(TXQ);
    // Started later, the device picks up what waited in the tap.
    rig.activate(rig.dev.avail_features());
    rig.give_rx(1, RX_BUF_LEN);
    assert_eq!(rig.rx_used_count(), 1);
    assert_eq!(&rig.rx_used(0).1[12..], b"early");
    rig.dev.reset();
    rig.peer.send(&frame(0, b"late")).unwrap();
    rig.dev.process_backend();
    rig.dev.process_queue(RXQ);
    assert_eq!(rig.rx_used_count(), 1);
}

#[test]
fn activation_needs_two_queues() {
    let mem = memory();
    let mut rig = Rig::new(&mem, None);
    let queue = rig.rx.create_queue().unwrap();
    let err = rig
        .dev
        .activate(mem.clone(), vec![queue], rig.irq.clone())
        .unwrap_err();
    assert!(err.to_string().contains("2 queues"), "{err}");
}
