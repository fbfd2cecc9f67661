//! virtio-fs through a vhost-user backend (virtiofsd).
//!
//! The VMM only does the control path: it negotiates features with the backend over
//! the vhost-user socket, shares the guest memory table (the memfd regions) and hands
//! over every ring's addresses with its kick eventfd (the KVM ioeventfd) and call
//! eventfd (the KVM irqfd). The backend then reads and writes the rings directly, so
//! FUSE requests never pass through the VMM. DAX (the shared memory window) is not
//! offered.
//!
//! The backend's socket stays in the VMM's event loop: when the backend goes away the
//! socket hangs up and the device reports a [`VirtioDevice::backend_failure`], which
//! ends the VM with a reason that names the share.

use super::{ActivateError, VirtioDevice, VirtioInterrupt, INT_VRING, VIRTIO_F_VERSION_1};
use std::borrow::Cow;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

/// virtio device ID of a file system device.
pub const TYPE_FS: u32 = 26;
/// Longest tag the configuration space holds (virtio 1.2, 5.11.4).
pub const MAX_TAG_LEN: usize = 36;
/// Size of each queue.
const QUEUE_SIZE: u16 = 1024;
/// Queues: the high-priority queue and one request queue.
const NUM_QUEUES: usize = 2;
/// Ring features the device passes through from the backend to the driver.
const RING_FEATURES: u64 = VIRTIO_F_VERSION_1
    | (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX)
    | (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC);
/// vhost-user protocol features the frontend uses when the backend has them.
const PROTOCOL_FEATURES: VhostUserProtocolFeatures =
    VhostUserProtocolFeatures::MQ.union(VhostUserProtocolFeatures::REPLY_ACK);

/// Why a virtio-fs device could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The tag is empty or longer than the configuration space allows.
    #[error("virtio-fs tag {0:?} must be 1 to 36 bytes long")]
    Tag(String),
    /// The vhost-user backend could not be reached or refused a request.
    #[error("vhost-user backend at {path}: {during}")]
    Backend {
        /// The backend's socket.
        path: String,
        /// The step that failed.
        during: &'static str,
        /// What the backend or the socket said.
        #[source]
        source: vhost::Error,
    },
    /// The backend's socket could not be reached.
    #[error("cannot connect to the vhost-user backend at {path}")]
    Connect {
        /// The backend's socket.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The backend lacks a feature virtio-fs needs.
    #[error("vhost-user backend at {path} does not offer VIRTIO_F_VERSION_1")]
    NotModern {
        /// The backend's socket.
        path: String,
    },
}

/// A virtio-fs device whose requests a vhost-user backend serves.
pub struct Fs {
    tag: String,
    config: [u8; MAX_TAG_LEN + 4],
    frontend: Frontend,
    /// A second handle on the frontend's socket, watched for hang-up.
    socket: UnixStream,
    backend_features: u64,
    protocol_features: bool,
    acked_features: u64,
    kick_evts: Vec<EventFd>,
    /// Queues handed to the backend, to stop at reset.
    started: Vec<usize>,
    interrupt: Option<Arc<VirtioInterrupt>>,
    failure: Option<String>,
}

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs")
            .field("tag", &self.tag)
            .field("acked_features", &self.acked_features)
            .field("started", &self.started)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

impl Fs {
    /// Connects to the vhost-user-fs backend listening on `socket` and negotiates the
    /// features and protocol features the device will offer the guest as `tag`.
    pub fn connect(socket: &Path, tag: &str) -> Result<Self, FsError> {
        let path = socket.display().to_string();
        let stream = UnixStream::connect(socket).map_err(|source| FsError::Connect {
            path: path.clone(),
            source,
        })?;
        Self::with_stream(stream, path, tag)
    }

    /// Like [`Fs::connect`], over a socket already connected to the backend; `path`
    /// names the backend in errors.
    pub fn with_stream(stream: UnixStream, path: String, tag: &str) -> Result<Self, FsError> {
        if tag.is_empty() || tag.len() > MAX_TAG_LEN {
            return Err(FsError::Tag(tag.to_owned()));
        }
        let fail = |during| {
            let path = path.clone();
            move |source| FsError::Backend {
                path,
                during,
                source,
            }
        };
        let watch = stream.try_clone().map_err(|source| FsError::Connect {
            path: path.clone(),
            source,
        })?;
        let mut frontend = Frontend::from_stream(stream, NUM_QUEUES as u64);
        frontend.set_owner().map_err(fail("SET_OWNER"))?;
        let backend_features = frontend.get_features().map_err(fail("GET_FEATURES"))?;
        if backend_features & VIRTIO_F_VERSION_1 == 0 {
            return Err(FsError::NotModern { path });
        }
        let protocol_features =
            backend_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        if protocol_features {
            let offered = frontend
                .get_protocol_features()
                .map_err(fail("GET_PROTOCOL_FEATURES"))?;
            frontend
                .set_protocol_features(offered & PROTOCOL_FEATURES)
                .map_err(fail("SET_PROTOCOL_FEATURES"))?;
        }
        let mut config = [0u8; MAX_TAG_LEN + 4];
        config[..tag.len()].copy_from_slice(tag.as_bytes());
        config[MAX_TAG_LEN..].copy_from_slice(&(NUM_QUEUES as u32 - 1).to_le_bytes());
        Ok(Fs {
            tag: tag.to_owned(),
            config,
            frontend,
            socket: watch,
            backend_features,
            protocol_features,
            acked_features: 0,
            kick_evts: Vec::new(),
            started: Vec::new(),
            interrupt: None,
            failure: None,
        })
    }

    /// The tag the guest mounts.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Hands the memory table and the ready queues to the backend and starts them.
    fn start_backend(
        &mut self,
        mem: &GuestMemoryMmap,
        queues: &[Queue],
        interrupt: &VirtioInterrupt,
    ) -> Result<(), vhost::Error> {
        let mut features = self.acked_features;
        if self.protocol_features {
            features |= VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits();
        }
        self.frontend.set_features(features)?;
        let regions = mem
            .iter()
            .map(VhostUserMemoryRegionInfo::from_guest_region)
            .collect::<Result<Vec<_>, _>>()?;
        self.frontend.set_mem_table(&regions)?;
        for (index, queue) in queues.iter().enumerate() {
            if !queue.ready() {
                continue;
            }
            let Some(kick) = self.kick_evts.get(index) else {
                continue;
            };
            self.frontend.set_vring_num(index, queue.size())?;
            self.frontend.set_vring_addr(
                index,
                &VringConfigData {
                    queue_max_size: queue.max_size(),
                    queue_size: queue.size(),
                    flags: 0,
                    desc_table_addr: host_addr(mem, queue.desc_table())?,
                    used_ring_addr: host_addr(mem, queue.used_ring())?,
                    avail_ring_addr: host_addr(mem, queue.avail_ring())?,
                    log_addr: None,
                },
            )?;
            self.frontend.set_vring_base(index, 0)?;
            self.frontend.set_vring_call(index, interrupt.eventfd())?;
            self.frontend.set_vring_kick(index, kick)?;
            if self.protocol_features {
                self.frontend.set_vring_enable(index, true)?;
            }
            self.started.push(index);
        }
        Ok(())
    }
}

/// vhost-user ring addresses are in the frontend's address space (the backend
/// translates them through the memory table's `userspace_addr`): the host address of
/// guest address `gpa`. The transport checked the rings against guest memory.
fn host_addr(mem: &GuestMemoryMmap, gpa: u64) -> Result<u64, vhost::Error> {
    mem.get_host_address(GuestAddress(gpa))
        .map(|ptr| ptr as u64)
        .map_err(|_| vhost::Error::InvalidGuestMemory)
}

impl VirtioDevice for Fs {
    fn device_type(&self) -> u32 {
        TYPE_FS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE; NUM_QUEUES]
    }

    fn avail_features(&self) -> u64 {
        self.backend_features & RING_FEATURES
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.avail_features();
    }

    /// `struct virtio_fs_config { u8 tag[36]; le32 num_request_queues; }`, read-only.
    fn config_space(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.config)
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        if let Some(reason) = &self.failure {
            return Err(ActivateError::Io(std::io::Error::other(reason.clone())));
        }
        self.start_backend(&mem, &queues, &interrupt).map_err(|e| {
            tracing::error!("virtio-fs {:?}: backend refused the queues: {e}", self.tag);
            ActivateError::Io(std::io::Error::other(e.to_string()))
        })?;
        interrupt.keep_pending(INT_VRING);
        self.interrupt = Some(interrupt);
        Ok(())
    }

    fn process_queue(&mut self, _index: usize) {
        // The backend takes the notifications itself (see `takes_queue_eventfds`).
    }

    fn reset(&mut self) {
        for index in std::mem::take(&mut self.started) {
            if self.protocol_features {
                let _ = self.frontend.set_vring_enable(index, false);
            }
            // GET_VRING_BASE stops the ring in the backend.
            if let Err(e) = self.frontend.get_vring_base(index) {
                tracing::warn!("virtio-fs {:?}: stopping queue {index}: {e}", self.tag);
            }
        }
        if let Some(interrupt) = self.interrupt.take() {
            interrupt.keep_pending(0);
        }
        self.acked_features = 0;
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.socket.as_raw_fd())
    }

    fn process_backend(&mut self) {
        // The backend never writes unasked (no backend-request channel is set up), and
        // replies are read synchronously under the device's lock: a readable socket
        // with nothing to peek is a hang-up, and one with bytes to peek is a backend
        // that broke the protocol (left there, they would wake the event loop
        // forever). Either ends the device.
        let mut byte = [0u8; 1];
        // SAFETY: recv into a 1-byte buffer we own, on a socket we own; non-blocking
        // peek, the result is checked.
        let n = unsafe {
            libc::recv(
                self.socket.as_raw_fd(),
                byte.as_mut_ptr().cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        let what = match n {
            0 => "went away",
            n if n > 0 => "sent bytes it was not asked for",
            _ => {
                let err = std::io::Error::last_os_error();
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) {
                    return;
                }
                "went away"
            }
        };
        if self.failure.is_none() {
            let reason = format!(
                "the virtio-fs backend (vhost-user) of share {:?} {what}",
                self.tag
            );
            tracing::error!("{reason}");
            self.failure = Some(reason);
        }
    }

    fn backend_failure(&self) -> Option<String> {
        self.failure.clone()
    }

    fn takes_queue_eventfds(&mut self, evts: &[EventFd]) -> std::io::Result<bool> {
        self.kick_evts = evts
            .iter()
            .map(EventFd::try_clone)
            .collect::<std::io::Result<_>>()?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
