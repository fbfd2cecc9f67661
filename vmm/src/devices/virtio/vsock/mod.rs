//! virtio-vsock (virtio 1.2, 5.10) with a "hybrid vsock" unix-socket backend, after
//! Firecracker's design.
//!
//! The guest talks AF_VSOCK stream sockets; the host end of every connection is a unix
//! stream:
//!
//! - Host-initiated: a host process connects to the unix socket at `uds_path` and writes
//!   `CONNECT <port>\n`. The device sends the guest a REQUEST from (CID 2, an ephemeral
//!   host port from [`muxer::EPHEMERAL_PORT_BASE`] up) to (guest CID, `port`); on the
//!   guest's RESPONSE it writes `OK <host port>\n` to the stream and bytes flow. An RST
//!   (nothing listening), a malformed line (anything but `CONNECT <decimal u32>\n`,
//!   at most [`connection::MAX_CONNECT_LINE`] bytes) or no answer within the connect
//!   timeout ([`connection::DEFAULT_CONNECT_TIMEOUT`], or
//!   [`Vsock::set_connect_timeout`]) closes the stream; a timeout is logged.
//! - Guest-initiated: a REQUEST to (CID 2, port `P`) connects a unix stream to
//!   `<uds_path>_<P>`; RESPONSE if that works, RST otherwise.
//! - Teardown: guest RST closes the stream; guest SHUTDOWN shuts the stream's write side
//!   once the buffered data is out, and with both flags the device closes the stream and
//!   answers RST. End of file on the stream: SHUTDOWN (both flags) to the guest, then
//!   the connection goes on the guest's RST, or after [`connection::CLOSE_TIMEOUT`]
//!   with an RST. A stream error (the host end vanished) resets the connection.
//!
//! Queues: 0 receive, 1 transmit, 2 event. The event queue is never used: its buffers
//! stay with the device (the only event, TRANSPORT_RESET, is for live migration,
//! which husk does not do). Everything runs on the VMM's event-loop thread and never
//! blocks: unix streams are non-blocking and served from the device's own epoll set
//! ([`VirtioDevice::backend_fd`]).

pub mod connection;
pub mod muxer;
pub mod packet;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;

use super::{ActivateError, VirtioDevice, VirtioInterrupt, INT_VRING, VIRTIO_F_VERSION_1};
use muxer::Muxer;
use packet::{read_tx_packet, write_rx_packet, HDR_SIZE};

/// The host's context ID.
pub const HOST_CID: u64 = 2;
/// The virtio device ID of a socket device.
pub const TYPE_VSOCK: u32 = 19;
/// Maximum size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Receive queue index.
pub const RXQ: usize = 0;
/// Transmit queue index.
pub const TXQ: usize = 1;
/// Event queue index.
pub const EVQ: usize = 2;
/// Rounds of "serve the streams, fill the receive queue" per call before the device
/// yields to the event loop (and kicks itself to come back).
const MAX_ROUNDS: usize = 32;

const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE; 3];

/// Why a vsock device could not be created.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// The guest CID is reserved (0, 1, 2, or above `u32::MAX - 1`).
    #[error("vsock guest CID {0} is reserved (use 3 to 4294967294)")]
    InvalidCid(u64),
    /// Something already exists at the socket path.
    #[error("vsock socket path {} already exists", .0.display())]
    PathExists(PathBuf),
    /// The listener could not be bound.
    #[error("cannot listen on vsock socket {}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// What bind/listen said.
        #[source]
        source: io::Error,
    },
    /// The epoll set, timer or eventfd could not be set up.
    #[error("cannot set up the vsock event descriptors")]
    Events(#[source] io::Error),
}

/// Counters of what the device dropped or refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VsockStats {
    /// Transmit chains dropped as malformed or invalid.
    pub tx_invalid: u64,
    /// RSTs queued for the guest.
    pub rst_sent: u64,
    /// Control packets dropped because too many were waiting.
    pub control_dropped: u64,
    /// Connections refused (limits, or nothing listening on the host).
    pub refused: u64,
    /// `accept` failures on the listener.
    pub accept_errors: u64,
}

/// What the device holds once the driver started it.
#[derive(Debug)]
struct Active {
    mem: GuestMemoryMmap,
    rxq: Queue,
    txq: Queue,
    interrupt: Arc<VirtioInterrupt>,
}

/// The virtio socket device.
#[derive(Debug)]
pub struct Vsock {
    guest_cid: u64,
    uds_path: PathBuf,
    acked_features: u64,
    muxer: Muxer,
    active: Option<Active>,
    /// One transmit payload.
    payload: Vec<u8>,
}

impl Vsock {
    /// A device for a guest with context ID `guest_cid`, listening for host connections
    /// on a new unix socket at `uds_path` (removed again when the device is dropped).
    /// Fails if the path exists.
    pub fn new(guest_cid: u64, uds_path: PathBuf) -> Result<Vsock, VsockError> {
        if guest_cid <= HOST_CID || guest_cid >= u64::from(u32::MAX) {
            return Err(VsockError::InvalidCid(guest_cid));
        }
        if uds_path.symlink_metadata().is_ok() {
            return Err(VsockError::PathExists(uds_path));
        }
        let listener = UnixListener::bind(&uds_path).map_err(|source| VsockError::Bind {
            path: uds_path.clone(),
            source,
        })?;
        let set_up = listener
            .set_nonblocking(true)
            .and_then(|()| Muxer::new(guest_cid, uds_path.clone(), listener));
        let muxer = match set_up {
            Ok(muxer) => muxer,
            Err(e) => {
                let _ = std::fs::remove_file(&uds_path);
                return Err(VsockError::Events(e));
            }
        };
        Ok(Vsock {
            guest_cid,
            uds_path,
            acked_features: 0,
            muxer,
            active: None,
            payload: Vec::new(),
        })
    }

    /// How long a host connection may take from `accept` to the guest's RESPONSE
    /// (the CONNECT line included) before the device closes it. A host whose guest can
    /// be slow to answer (nested or emulated virtualization, an overloaded host) wants
    /// more than [`connection::DEFAULT_CONNECT_TIMEOUT`]; it applies to connections
    /// accepted from now on.
    pub fn set_connect_timeout(&mut self, timeout: Duration) {
        self.muxer.connect_timeout = timeout;
    }

    /// The guest's context ID.
    pub fn guest_cid(&self) -> u64 {
        self.guest_cid
    }

    /// The unix socket host processes connect to.
    pub fn uds_path(&self) -> &Path {
        &self.uds_path
    }

    /// What the device dropped or refused so far.
    pub fn stats(&self) -> VsockStats {
        self.muxer.stats
    }

    /// Connections in the table, in any state.
    pub fn connections(&self) -> usize {
        self.muxer.connections()
    }

    /// Moves everything that can move: stream I/O, deadlines, receive buffers.
    fn run(&mut self, now: Instant) {
        for round in 0..MAX_ROUNDS {
            self.muxer.sweep(now);
            let Some(active) = self.active.as_mut() else {
                break;
            };
            if !fill_rx(active, &mut self.muxer, now) {
                break;
            }
            if round == MAX_ROUNDS - 1 {
                self.muxer.kick();
            }
        }
        self.muxer.rearm_timer(now);
    }

    fn process_tx(&mut self, now: Instant) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        let Active {
            mem,
            txq,
            interrupt,
            ..
        } = active;
        let mut used = false;
        for _ in 0..txq.size() {
            let Some(chain) = txq.pop_descriptor_chain(&*mem) else {
                break;
            };
            let head = chain.head_index();
            match read_tx_packet(mem, chain, self.guest_cid, &mut self.payload) {
                Ok(hdr) => self.muxer.handle_tx(&hdr, &self.payload, now),
                Err((hdr, _)) => {
                    self.muxer.stats.tx_invalid += 1;
                    if let Some(hdr) = hdr {
                        self.muxer.reject(&hdr);
                    }
                }
            }
            // The device writes nothing into transmit buffers.
            if txq.add_used(&*mem, head, 0).is_ok() {
                used = true;
            }
        }
        if used && txq.needs_notification(&*mem).unwrap_or(true) {
            let _ = interrupt.trigger(INT_VRING);
        }
    }
}

/// Fills receive buffers while packets wait; returns whether a buffer was used.
fn fill_rx(active: &mut Active, muxer: &mut Muxer, now: Instant) -> bool {
    let Active {
        mem,
        rxq,
        interrupt,
        ..
    } = active;
    let mut used = false;
    for _ in 0..rxq.size() {
        if !muxer.has_rx() {
            break;
        }
        let Some(chain) = rxq.pop_descriptor_chain(&*mem) else {
            break;
        };
        let head = chain.head_index();
        let len = match chain.writer(mem) {
            Ok(mut writer) if writer.available_bytes() >= HDR_SIZE => {
                let room = writer.available_bytes() - HDR_SIZE;
                let mut len = 0;
                muxer.produce_rx(room, now, &mut |hdr, payload| {
                    len = write_rx_packet(&mut writer, hdr, payload);
                });
                len
            }
            // Too small for a header, or not in guest memory: returned unused, and the
            // packet waits for the next buffer.
            _ => 0,
        };
        if rxq.add_used(&*mem, head, len).is_ok() {
            used = true;
        }
    }
    if used && rxq.needs_notification(&*mem).unwrap_or(true) {
        let _ = interrupt.trigger(INT_VRING);
    }
    used
}

impl Drop for Vsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        // Stream sockets only: with no VIRTIO_VSOCK_F_SEQPACKET, stream is implied.
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.avail_features();
    }

    /// `struct virtio_vsock_config { le64 guest_cid; }`, read-only.
    fn config_space(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.guest_cid.to_le_bytes().to_vec())
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        let count = queues.len();
        let Ok([rxq, txq, _evq]) = <[Queue; 3]>::try_from(queues) else {
            return Err(ActivateError::BadQueue {
                index: count.min(3),
                reason: format!("virtio-vsock has 3 queues, got {count}"),
            });
        };
        for (index, queue) in [(RXQ, &rxq), (TXQ, &txq)] {
            if !queue.ready() {
                return Err(ActivateError::BadQueue {
                    index,
                    reason: "not set up".into(),
                });
            }
        }
        self.active = Some(Active {
            mem,
            rxq,
            txq,
            interrupt,
        });
        // Host connections accepted before the driver came get their REQUESTs now.
        self.run(Instant::now());
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        if self.active.is_none() {
            return;
        }
        let now = Instant::now();
        match index {
            TXQ => self.process_tx(now),
            // New receive buffers: `run` fills them. Event-queue buffers stay unused.
            RXQ | EVQ => {}
            _ => return,
        }
        self.run(now);
    }

    fn reset(&mut self) {
        self.muxer.reset();
        self.active = None;
        self.acked_features = 0;
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.muxer.epoll_fd())
    }

    fn process_backend(&mut self) {
        let now = Instant::now();
        self.muxer.process_events(now);
        self.run(now);
    }
}
