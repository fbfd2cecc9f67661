//! virtio devices and their MMIO transport.
//!
//! A device implements [`VirtioDevice`]; [`mmio::MmioTransport`] puts it on the MMIO
//! bus with the virtio-mmio (version 2) register layout. Queue notifications reach the
//! device through one eventfd per queue (registered with KVM as an ioeventfd on the
//! QueueNotify register, so they cost no VM exit); interrupts leave through
//! [`VirtioInterrupt`], an eventfd registered with KVM as an irqfd.

pub mod fs;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod vsock;

use std::borrow::Cow;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Interrupt status bit: the device used buffers in a queue.
pub const INT_VRING: u32 = 1;
/// Interrupt status bit: the device's configuration changed.
pub const INT_CONFIG: u32 = 2;

/// Device status bits (virtio 1.2, 2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: the device may be used.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// `VIRTIO_F_VERSION_1`: every husk device is a modern (non-legacy) device.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// The interrupt line of one virtio device: the status register the guest reads and
/// acknowledges, and the eventfd that raises the guest interrupt (an irqfd).
#[derive(Debug)]
pub struct VirtioInterrupt {
    status: AtomicU32,
    /// Bits reported pending whatever the driver acknowledges (see
    /// [`VirtioInterrupt::keep_pending`]).
    sticky: AtomicU32,
    evt: EventFd,
}

impl VirtioInterrupt {
    /// A line that signals `evt`.
    pub fn new(evt: EventFd) -> Self {
        VirtioInterrupt {
            status: AtomicU32::new(0),
            sticky: AtomicU32::new(0),
            evt,
        }
    }

    /// Sets `bit` (`INT_VRING` or `INT_CONFIG`) and raises the interrupt.
    pub fn trigger(&self, bit: u32) -> std::io::Result<()> {
        self.status.fetch_or(bit, Ordering::SeqCst);
        self.evt.write(1)
    }

    /// The InterruptStatus register.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst) | self.sticky.load(Ordering::SeqCst)
    }

    /// Reports `bits` pending on every read of the status register, until called
    /// again with other bits. For devices whose backend signals the eventfd itself
    /// (vhost-user): the VMM never learns when the backend used a buffer, so the
    /// driver must check its used rings on every interrupt (it does so cheaply).
    pub fn keep_pending(&self, bits: u32) {
        self.sticky.store(bits, Ordering::SeqCst);
    }

    /// InterruptACK: clears the acknowledged bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// The eventfd behind the line (to register as an irqfd).
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver set up a queue the device cannot use.
    #[error("queue {index} is not usable: {reason}")]
    BadQueue {
        /// Queue index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A resource of the device could not be set up.
    #[error("device set-up failed")]
    Io(#[source] std::io::Error),
}

/// Copies `config[offset..]` into `data` and zeros the rest: a guest's read of a
/// configuration space, which may start or run past its end.
pub fn read_config_space(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Some(src) = usize::try_from(offset).ok().and_then(|at| config.get(at..)) else {
        return;
    };
    let n = src.len().min(data.len());
    data[..n].copy_from_slice(&src[..n]);
}

/// A virtio device behind a transport.
///
/// Everything here is reachable by the guest: implementations validate what they read
/// from guest memory and never panic on it.
pub trait VirtioDevice: Send {
    /// The virtio device ID (4 for entropy, 19 for vsock, ...).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the number of queues is the slice's length.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits the device offers (including `VIRTIO_F_VERSION_1`).
    fn avail_features(&self) -> u64;
    /// Records the features the driver accepted (a subset of the offered ones).
    fn ack_features(&mut self, features: u64);
    /// The device-specific configuration space (`struct virtio_<device>_config`, in
    /// the guest's byte order), as [`VirtioDevice::read_config`] serves it by
    /// default. Empty: the device has none.
    fn config_space(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&[])
    }
    /// Reads the device-specific configuration space at `offset` (the guest's
    /// access): by default from [`VirtioDevice::config_space`], zeros out of range.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_space(&self.config_space(), offset, data);
    }
    /// Writes the device-specific configuration space; by default the write is
    /// dropped (a read-only configuration, as every husk device's is to a modern
    /// driver).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts the device once the driver set DRIVER_OK: it gets the guest memory, all its
    /// queues in index order (`queues[i]` is queue `i`; a queue the driver did not set up
    /// has `ready() == false`, a ready one was checked against guest memory) and its
    /// interrupt. The device serves the queues from the VMM's event loop through
    /// [`VirtioDevice::process_queue`].
    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<virtio_queue::Queue>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<(), ActivateError>;
    /// The driver notified queue `index` (its eventfd fired): process what is available.
    fn process_queue(&mut self, index: usize);
    /// The driver reset the device: drop the queues and go back to the initial state.
    fn reset(&mut self);
    /// A descriptor the VMM's event loop watches for the device's backend (sockets and
    /// the like), typically an epoll descriptor of the device's own, registered once at
    /// build time. `None`: the device is driven by its queues alone.
    fn backend_fd(&self) -> Option<RawFd> {
        None
    }
    /// The backend descriptor is readable: serve the backend. Called whether or not
    /// the device is activated; a device that is not must not touch its queues.
    fn process_backend(&mut self) {}
    /// Why the device's backend failed for good, if it did: the VMM then ends the VM
    /// with this reason (a guest whose disk or filesystem vanished cannot go on).
    fn backend_failure(&self) -> Option<String> {
        None
    }
    /// Offers the device the eventfds its queues are notified through (KVM ioeventfds).
    /// A device that hands them to a backend outside the VMM (vhost-user) keeps
    /// copies and answers `true`; the VMM then does not poll them. Called once, when
    /// the device is put on its transport.
    fn takes_queue_eventfds(&mut self, _evts: &[EventFd]) -> std::io::Result<bool> {
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::read_config_space;

    /// The guest picks the offset and the width: a read that starts inside, runs
    /// past the end, starts past it or at an offset no `usize` holds gives the bytes
    /// there and zeros, never a panic.
    #[test]
    fn config_reads_at_any_offset_give_bytes_then_zeros() {
        let config = [1u8, 2, 3, 4];
        let read = |offset: u64, len: usize| {
            let mut data = vec![0xffu8; len];
            read_config_space(&config, offset, &mut data);
            data
        };
        assert_eq!(read(0, 4), [1, 2, 3, 4]);
        assert_eq!(read(2, 4), [3, 4, 0, 0]);
        assert_eq!(read(4, 2), [0, 0]);
        assert_eq!(read(1000, 1), [0]);
        assert_eq!(read(u64::MAX, 8), [0; 8]);
        let mut none = [0xffu8; 2];
        read_config_space(&[], 0, &mut none);
        assert_eq!(none, [0, 0]);
    }
}
