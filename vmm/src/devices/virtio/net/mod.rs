//! virtio-net (virtio 1.2, 5.1) with a tap backend.
//!
//! Queues: 0 receive, 1 transmit; no control queue, one queue pair. Offered: the MAC
//! address, the MTU when one is configured, and the checksum and TCP segmentation
//! offloads both ways (`CSUM`, `HOST_TSO4/6`; `GUEST_CSUM`, `GUEST_TSO4/6`). The
//! offloads the driver accepts for receiving are passed to the tap (`TUNSETOFFLOAD`),
//! so the host kernel only hands the guest frames it can take; the header in front
//! of every frame travels as it is between tap and guest.
//!
//! Everything runs on the VMM's event-loop thread and never blocks. The device's own
//! epoll set ([`VirtioDevice::backend_fd`]) watches the tap, edge-triggered, and a
//! self-kick eventfd. Guest-controlled work is bounded per call: at most one pass over
//! each queue, after which the device kicks itself and yields to the event loop.
//! Frames wait in the tap (which drops on overflow, like a full NIC) while the guest
//! posts no receive buffers.

pub mod frame;
pub mod tap;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use husk_protocol::mac::{format_mac, parse_mac};
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6,
    VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MTU,
};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{ActivateError, VirtioDevice, VirtioInterrupt, INT_VRING, VIRTIO_F_VERSION_1};
use frame::{read_tx_frame, write_rx_frame, MAX_FRAME};
use tap::{NetBackend, VNET_HDR_LEN};

/// The virtio device ID of a network card.
pub const TYPE_NET: u32 = 1;
/// Maximum size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Receive queue index.
pub const RXQ: usize = 0;
/// Transmit queue index.
pub const TXQ: usize = 1;
/// Frames moved from the tap to the guest per call before the device yields.
const RX_FRAMES_PER_CALL: usize = QUEUE_SIZE as usize;
/// Smallest MTU the device accepts (IPv4's minimum).
pub const MIN_MTU: u16 = 68;
/// Largest MTU the device accepts: a frame and its header fit [`MAX_FRAME`].
pub const MAX_MTU: u16 = 65_535 - 14 - 4;

const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE; 2];
const TOKEN_TAP: u64 = 1;
const TOKEN_KICK: u64 = 2;

const fn bit(feature: u32) -> u64 {
    1 << feature
}

/// What the device offers besides the MAC and MTU.
const BASE_FEATURES: u64 = VIRTIO_F_VERSION_1
    | bit(VIRTIO_NET_F_CSUM)
    | bit(VIRTIO_NET_F_GUEST_CSUM)
    | bit(VIRTIO_NET_F_GUEST_TSO4)
    | bit(VIRTIO_NET_F_GUEST_TSO6)
    | bit(VIRTIO_NET_F_HOST_TSO4)
    | bit(VIRTIO_NET_F_HOST_TSO6)
    | bit(VIRTIO_NET_F_MAC);

/// Why a network device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The MTU is out of range.
    #[error("MTU {0} is out of range ({MIN_MTU} to {MAX_MTU})")]
    Mtu(u16),
    /// The MAC address is multicast (or broadcast), which no interface may have.
    #[error("MAC address {0} is a multicast address")]
    MulticastMac(MacAddr),
    /// The epoll set or eventfd could not be set up.
    #[error("cannot set up the device's event sources")]
    Events(#[source] io::Error),
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&format_mac(&self.0))
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_mac(s)
            .map(MacAddr)
            .ok_or_else(|| format!("{s:?} is not a MAC address (xx:xx:xx:xx:xx:xx)"))
    }
}

/// Frames and bytes moved, and frames dropped, each way (logged when the device goes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetCounters {
    /// Frames delivered to the guest.
    pub rx_frames: u64,
    /// Their bytes, headers included.
    pub rx_bytes: u64,
    /// Frames from the tap the guest had no fitting buffer for.
    pub rx_dropped: u64,
    /// Frames sent to the tap.
    pub tx_frames: u64,
    /// Their bytes, headers included.
    pub tx_bytes: u64,
    /// Transmit chains refused (malformed) or frames the tap refused.
    pub tx_dropped: u64,
}

/// What the device holds once the driver started it.
#[derive(Debug)]
struct Active {
    mem: GuestMemoryMmap,
    rx: Queue,
    tx: Queue,
    interrupt: Arc<VirtioInterrupt>,
}

/// The virtio network device.
pub struct Net {
    backend: Box<dyn NetBackend>,
    mac: MacAddr,
    mtu: Option<u16>,
    acked_features: u64,
    active: Option<Active>,
    epoll: Epoll,
    kick: EventFd,
    /// One frame from the tap (header first).
    rx_buf: Vec<u8>,
    /// A frame read from the tap that waits for a receive buffer: its length.
    rx_pending: Option<usize>,
    /// One frame for the tap.
    tx_buf: Vec<u8>,
    counters: NetCounters,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("backend", &self.backend.as_raw_fd())
            .field("mac", &self.mac)
            .field("mtu", &self.mtu)
            .field("acked_features", &self.acked_features)
            .field("active", &self.active)
            .field("rx_pending", &self.rx_pending)
            .finish_non_exhaustive()
    }
}

/// The `TUN_F_*` offloads matching the receive features the driver accepted.
fn tap_offloads(acked: u64) -> u32 {
    let mut flags = 0;
    if acked & bit(VIRTIO_NET_F_GUEST_CSUM) != 0 {
        flags |= libc::TUN_F_CSUM;
        if acked & bit(VIRTIO_NET_F_GUEST_TSO4) != 0 {
            flags |= libc::TUN_F_TSO4;
        }
        if acked & bit(VIRTIO_NET_F_GUEST_TSO6) != 0 {
            flags |= libc::TUN_F_TSO6;
        }
    }
    flags
}

impl Net {
    /// A device in front of `backend`, announcing `mac` and, if given, `mtu`.
    pub fn new(
        backend: Box<dyn NetBackend>,
        mac: MacAddr,
        mtu: Option<u16>,
    ) -> Result<Net, NetError> {
        if let Some(mtu) = mtu.filter(|m| !(MIN_MTU..=MAX_MTU).contains(m)) {
            return Err(NetError::Mtu(mtu));
        }
        if mac.0[0] & 1 != 0 {
            return Err(NetError::MulticastMac(mac));
        }
        let epoll = Epoll::new().map_err(NetError::Events)?;
        let kick = EventFd::new(EFD_NONBLOCK).map_err(NetError::Events)?;
        epoll
            .ctl(
                ControlOperation::Add,
                backend.as_raw_fd(),
                EpollEvent::new(EventSet::IN | EventSet::EDGE_TRIGGERED, TOKEN_TAP),
            )
            .map_err(NetError::Events)?;
        epoll
            .ctl(
                ControlOperation::Add,
                kick.as_raw_fd(),
                EpollEvent::new(EventSet::IN, TOKEN_KICK),
            )
            .map_err(NetError::Events)?;
        Ok(Net {
            backend,
            mac,
            mtu,
            acked_features: 0,
            active: None,
            epoll,
            kick,
            rx_buf: vec![0; MAX_FRAME],
            rx_pending: None,
            tx_buf: vec![0; MAX_FRAME],
            counters: NetCounters::default(),
        })
    }

    /// What the device moved so far.
    pub fn counters(&self) -> NetCounters {
        self.counters
    }

    /// Comes back through the event loop to go on with work left for later.
    fn kick_self(&self) {
        // Fails only if the counter is saturated: a kick is pending anyway.
        let _ = self.kick.write(1);
    }

    /// Moves frames from the tap into receive buffers, until the tap is empty, the
    /// guest has no buffer left, or the per-call bound is reached.
    fn process_rx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mut used = false;
        let mut frames = 0;
        loop {
            if frames == RX_FRAMES_PER_CALL {
                // Let the event loop serve the others, and come back.
                let _ = self.kick.write(1);
                break;
            }
            let len = match self.rx_pending.take() {
                Some(len) => len,
                None => match self.backend.recv(&mut self.rx_buf) {
                    Ok(len) => len,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        tracing::warn!("virtio-net: reading the tap failed: {e}");
                        break;
                    }
                },
            };
            frames += 1;
            if len < VNET_HDR_LEN {
                continue;
            }
            // `num_buffers` (last 2 bytes of the header): the tap leaves it alone, and
            // without mergeable buffers a frame always takes one chain.
            self.rx_buf[VNET_HDR_LEN - 2..VNET_HDR_LEN].copy_from_slice(&1u16.to_le_bytes());
            let Some(chain) = active.rx.pop_descriptor_chain(&active.mem) else {
                // No buffer: keep the frame for the next RX notification.
                self.rx_pending = Some(len);
                break;
            };
            let head = chain.head_index();
            let written = match write_rx_frame(&active.mem, chain, &self.rx_buf[..len]) {
                Ok(n) => {
                    self.counters.rx_frames += 1;
                    self.counters.rx_bytes += u64::from(n);
                    n
                }
                Err(e) => {
                    self.counters.rx_dropped += 1;
                    crate::warn_guest!("virtio-net: receive frame dropped: {e}");
                    0
                }
            };
            if active.rx.add_used(&active.mem, head, written).is_ok() {
                used = true;
            }
        }
        if used && active.rx.needs_notification(&active.mem).unwrap_or(true) {
            // If the irqfd cannot be signalled there is nobody to tell.
            let _ = active.interrupt.trigger(INT_VRING);
        }
    }

    /// Sends the frames of the transmit queue to the tap: one pass over the ring.
    fn process_tx(&mut self) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let mut used = false;
        let mut left_over = true;
        for _ in 0..active.tx.size() {
            let Some(chain) = active.tx.pop_descriptor_chain(&active.mem) else {
                left_over = false;
                break;
            };
            let head = chain.head_index();
            match read_tx_frame(&active.mem, chain, &mut self.tx_buf) {
                Ok(len) => match self.backend.send(&self.tx_buf[..len]) {
                    Ok(_) => {
                        self.counters.tx_frames += 1;
                        self.counters.tx_bytes += len as u64;
                    }
                    Err(e) => {
                        // The kernel checks the header (EINVAL for a bad one); a full
                        // queue drops the frame, as a NIC would.
                        self.counters.tx_dropped += 1;
                        crate::warn_guest!("virtio-net: the tap refused a frame: {e}");
                    }
                },
                Err(e) => {
                    self.counters.tx_dropped += 1;
                    crate::warn_guest!("virtio-net: transmit chain dropped: {e}");
                }
            }
            if active.tx.add_used(&active.mem, head, 0).is_ok() {
                used = true;
            }
        }
        if left_over {
            let _ = self.kick.write(1);
        }
        if used && active.tx.needs_notification(&active.mem).unwrap_or(true) {
            let _ = active.interrupt.trigger(INT_VRING);
        }
    }

    /// The configuration space: MAC, status, queue pairs, MTU.
    fn config(&self) -> [u8; 12] {
        let mut config = [0u8; 12];
        config[..6].copy_from_slice(&self.mac.0);
        config[8..10].copy_from_slice(&1u16.to_le_bytes());
        config[10..12].copy_from_slice(&self.mtu.unwrap_or(0).to_le_bytes());
        config
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        tracing::info!(counters = ?self.counters, "virtio-net: device removed");
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        let mtu = if self.mtu.is_some() {
            bit(VIRTIO_NET_F_MTU)
        } else {
            0
        };
        BASE_FEATURES | mtu
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.avail_features();
    }

    fn config_space(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.config().to_vec())
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        let count = queues.len();
        let Ok([rx, tx]) = <[Queue; 2]>::try_from(queues) else {
            return Err(ActivateError::BadQueue {
                index: count.min(2),
                reason: format!("virtio-net has 2 queues, got {count}"),
            });
        };
        self.backend
            .set_offload(tap_offloads(self.acked_features))
            .map_err(ActivateError::Io)?;
        self.active = Some(Active {
            mem,
            rx,
            tx,
            interrupt,
        });
        // Frames may have queued up in the tap before the driver was ready.
        self.kick_self();
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        match index {
            RXQ => self.process_rx(),
            TXQ => self.process_tx(),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.active = None;
        self.rx_pending = None;
        self.acked_features = 0;
        // The guest takes nothing until a driver starts the device again.
        let _ = self.backend.set_offload(0);
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn process_backend(&mut self) {
        let mut events = [EpollEvent::default(); 2];
        let n = self.epoll.wait(0, &mut events).unwrap_or(0);
        let mut kicked = false;
        for event in &events[..n] {
            if event.data() == TOKEN_KICK {
                let _ = self.kick.read();
                kicked = true;
            }
        }
        // A frame arrived (edge) or work was left over: both queues get a pass.
        self.process_rx();
        if kicked {
            self.process_tx();
        }
    }
}
