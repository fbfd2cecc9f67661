//! The virtio-mmio transport, version 2 (virtio 1.2, 4.2.2).
//!
//! [`MmioTransport`] is a [`BusDevice`] occupying [`MMIO_LEN`] bytes of the MMIO bus. It
//! implements the register file, the status state machine (2.1, 3.1.1), feature
//! negotiation and queue set-up, and hands the device its queues once the driver sets
//! DRIVER_OK. Queue notifications go through one eventfd per queue
//! ([`MmioTransport::queue_evts`]): the VMM registers them as KVM ioeventfds on
//! `base + 0x50` (datamatch: the queue index), polls them and calls
//! [`MmioTransport::process_queue`]. A QueueNotify write that does reach the transport
//! (no ioeventfd registered) is turned into a write on the same eventfd.
//!
//! Everything here is driven by the guest: unknown registers, odd sizes and misaligned
//! accesses are ignored (reads give zeros), never a panic.

use std::io;
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{status, ActivateError, VirtioDevice, VirtioInterrupt, INT_CONFIG, VIRTIO_F_VERSION_1};
use crate::devices::bus::BusDevice;

/// Size of a virtio-mmio device's window on the MMIO bus.
pub const MMIO_LEN: u64 = 0x1000;

/// "virt", little endian.
const MAGIC_VALUE: u32 = 0x7472_6976;
/// The modern (non-legacy) register layout.
const MMIO_VERSION: u32 = 2;
/// VendorID: husk has no PCI vendor ID; the driver does not care.
const VENDOR_ID: u32 = 0;

/// Register offsets (virtio 1.2, 4.2.2, table "MMIO Device Register Layout").
mod reg {
    pub const MAGIC_VALUE: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const SHM_LEN_LOW: u64 = 0x0b0;
    pub const SHM_LEN_HIGH: u64 = 0x0b4;
    pub const SHM_BASE_LOW: u64 = 0x0b8;
    pub const SHM_BASE_HIGH: u64 = 0x0bc;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// A virtio device on the MMIO bus, with the virtio-mmio version 2 register layout.
pub struct MmioTransport {
    mem: GuestMemoryMmap,
    device: Box<dyn VirtioDevice>,
    interrupt: Arc<VirtioInterrupt>,
    /// The queues as the driver configures them through the registers. The device gets
    /// copies at activation; these stay as the register file's view.
    queues: Vec<Queue>,
    queue_evts: Vec<EventFd>,
    /// The device's backend takes the queue notifications itself (vhost-user).
    notified_elsewhere: bool,
    queue_select: u32,
    device_features_select: u32,
    driver_features_select: u32,
    driver_features: u64,
    status: u32,
    config_generation: u32,
    activated: bool,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device.device_type())
            .field("status", &self.status)
            .field("driver_features", &self.driver_features)
            .field("queues", &self.queues)
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

impl MmioTransport {
    /// Size of the transport's window on the MMIO bus.
    pub const MMIO_LEN: u64 = MMIO_LEN;

    /// Puts `device` behind a virtio-mmio register file. `mem` is the guest memory its
    /// queues live in and `interrupt` its interrupt line. Fails if an eventfd cannot be
    /// created or the device declares an invalid queue size (0, above 32768 or not a
    /// power of two).
    pub fn new(
        mem: GuestMemoryMmap,
        mut device: Box<dyn VirtioDevice>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> io::Result<Self> {
        let queues = device
            .queue_max_sizes()
            .iter()
            .enumerate()
            .map(|(index, &max)| {
                Queue::new(max).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("virtio queue {index}: invalid maximum size {max}: {e}"),
                    )
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let queue_evts = queues
            .iter()
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<io::Result<Vec<_>>>()?;
        let notified_elsewhere = device.takes_queue_eventfds(&queue_evts)?;
        Ok(MmioTransport {
            mem,
            device,
            interrupt,
            queues,
            queue_evts,
            notified_elsewhere,
            queue_select: 0,
            device_features_select: 0,
            driver_features_select: 0,
            driver_features: 0,
            status: 0,
            config_generation: 0,
            activated: false,
        })
    }

    /// One notification eventfd per queue, in queue order. The VMM registers eventfd `i`
    /// as a KVM ioeventfd on `base + 0x50` with datamatch `i` (4 bytes) and polls it.
    pub fn queue_evts(&self) -> &[EventFd] {
        &self.queue_evts
    }

    /// The notification eventfds the VMM's event loop polls: none when the device's
    /// backend takes them itself (vhost-user).
    pub fn polled_queue_evts(&self) -> &[EventFd] {
        if self.notified_elsewhere {
            &[]
        } else {
            &self.queue_evts
        }
    }

    /// Why the device's backend failed for good, if it did.
    pub fn backend_failure(&self) -> Option<String> {
        self.device.backend_failure()
    }

    /// The interrupt line of the device (to register its eventfd as an irqfd).
    pub fn interrupt(&self) -> &Arc<VirtioInterrupt> {
        &self.interrupt
    }

    /// Whether the driver set DRIVER_OK and the device started: from then on
    /// [`MmioTransport::process_queue`] reaches the device.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// The device status register as the driver sees it.
    pub fn device_status(&self) -> u32 {
        self.status
    }

    /// The device's backend descriptor, for the event loop (see
    /// [`VirtioDevice::backend_fd`]).
    pub fn backend_fd(&self) -> Option<std::os::fd::RawFd> {
        self.device.backend_fd()
    }

    /// The backend descriptor is readable: let the device serve it.
    pub fn process_backend(&mut self) {
        self.device.process_backend();
    }

    /// Queue `index` was notified: consumes the pending notifications on its eventfd and
    /// lets the device process the queue. Ignored before activation and for queues the
    /// device does not have.
    pub fn process_queue(&mut self, index: usize) {
        let Some(evt) = self.queue_evts.get(index) else {
            return;
        };
        // Non-blocking: nothing pending (the VMM may have read it already) is fine.
        let _ = evt.read();
        if self.activated {
            self.device.process_queue(index);
        }
    }

    /// The queue QueueSel points at, if it exists.
    fn selected_queue(&self) -> Option<&Queue> {
        self.queues.get(self.queue_select as usize)
    }

    /// The selected queue, if the driver may configure queues now: after FEATURES_OK,
    /// before DRIVER_OK (virtio 1.2, 3.1.1 step 7).
    fn configurable_queue(&mut self) -> Option<&mut Queue> {
        let s = self.status;
        if s & status::FEATURES_OK == 0 || s & (status::DRIVER_OK | status::FAILED) != 0 {
            return None;
        }
        self.queues.get_mut(self.queue_select as usize)
    }

    /// The selected queue, if its size and addresses may be written now: configurable
    /// and not yet marked ready.
    fn unready_queue(&mut self) -> Option<&mut Queue> {
        self.configurable_queue().filter(|q| !q.ready())
    }

    /// Whether the features the driver wrote can be accepted: offered ones only, and
    /// VIRTIO_F_VERSION_1 (husk has no legacy devices).
    fn features_acceptable(&self) -> bool {
        let offered = self.device.avail_features();
        self.driver_features & !offered == 0 && self.driver_features & VIRTIO_F_VERSION_1 != 0
    }

    fn read_register(&self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC_VALUE => MAGIC_VALUE,
            reg::VERSION => MMIO_VERSION,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => {
                let features = self.device.avail_features();
                match self.device_features_select {
                    0 => features as u32,
                    1 => (features >> 32) as u32,
                    _ => 0,
                }
            }
            reg::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| q.max_size().into()),
            reg::QUEUE_READY => self.selected_queue().map_or(0, |q| q.ready().into()),
            reg::INTERRUPT_STATUS => self.interrupt.status(),
            reg::STATUS => self.status,
            // No shared memory regions: every region reads as absent (length -1).
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::CONFIG_GENERATION => self.config_generation,
            // Write-only and reserved registers.
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_select = value,
            reg::DRIVER_FEATURES => self.write_driver_features(value),
            reg::DRIVER_FEATURES_SEL => self.driver_features_select = value,
            reg::QUEUE_SEL => self.queue_select = value,
            reg::QUEUE_NUM => {
                if let (Some(q), Ok(size)) = (self.unready_queue(), u16::try_from(value)) {
                    // Refuses (keeps the old size) anything but a power of two <= max.
                    let _ = q.try_set_size(size);
                }
            }
            reg::QUEUE_READY => {
                if let Some(q) = self.configurable_queue() {
                    q.set_ready(value != 0);
                }
            }
            reg::QUEUE_NOTIFY => {
                if let Some(evt) = self.queue_evts.get(value as usize) {
                    // Only fails if the counter would overflow: then it is readable anyway.
                    let _ = evt.write(1);
                }
            }
            reg::INTERRUPT_ACK => self.interrupt.ack(value),
            reg::STATUS => self.write_status(value),
            reg::QUEUE_DESC_LOW => {
                self.with_unready_queue(|q| q.set_desc_table_address(Some(value), None))
            }
            reg::QUEUE_DESC_HIGH => {
                self.with_unready_queue(|q| q.set_desc_table_address(None, Some(value)))
            }
            reg::QUEUE_DRIVER_LOW => {
                self.with_unready_queue(|q| q.set_avail_ring_address(Some(value), None))
            }
            reg::QUEUE_DRIVER_HIGH => {
                self.with_unready_queue(|q| q.set_avail_ring_address(None, Some(value)))
            }
            reg::QUEUE_DEVICE_LOW => {
                self.with_unready_queue(|q| q.set_used_ring_address(Some(value), None))
            }
            reg::QUEUE_DEVICE_HIGH => {
                self.with_unready_queue(|q| q.set_used_ring_address(None, Some(value)))
            }
            // Read-only and reserved registers.
            _ => {}
        }
    }

    fn with_unready_queue(&mut self, f: impl FnOnce(&mut Queue)) {
        if let Some(q) = self.unready_queue() {
            f(q);
        }
    }

    /// DriverFeatures: accepted after DRIVER and before FEATURES_OK only.
    fn write_driver_features(&mut self, value: u32) {
        let s = self.status;
        if s & status::DRIVER == 0 || s & (status::FEATURES_OK | status::FAILED) != 0 {
            return;
        }
        let value = u64::from(value);
        match self.driver_features_select {
            0 => self.driver_features = (self.driver_features & !0xffff_ffff) | value,
            1 => self.driver_features = (self.driver_features & 0xffff_ffff) | (value << 32),
            // Feature bits past 63 do not exist: the driver must write zeros there.
            _ => {}
        }
    }

    /// Status: 0 resets the device; otherwise the bits the driver adds are taken in the
    /// order of virtio 1.2, 3.1.1 and each only once its predecessors are set. Bits
    /// cannot be cleared but by a reset, DEVICE_NEEDS_RESET is the device's own, and
    /// nothing moves forward once the driver set FAILED.
    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let requested = value & !self.status;
        let mut new = self.status;
        if requested & status::FAILED != 0 {
            new |= status::FAILED;
        }
        if new & status::FAILED == 0 {
            if requested & status::ACKNOWLEDGE != 0 {
                new |= status::ACKNOWLEDGE;
            }
            if requested & status::DRIVER != 0 && new & status::ACKNOWLEDGE != 0 {
                new |= status::DRIVER;
            }
            if requested & status::FEATURES_OK != 0
                && new & status::DRIVER != 0
                && self.features_acceptable()
            {
                new |= status::FEATURES_OK;
                self.device.ack_features(self.driver_features);
            }
            if requested & status::DRIVER_OK != 0
                && new & status::FEATURES_OK != 0
                && new & status::DEVICE_NEEDS_RESET == 0
            {
                new |= status::DRIVER_OK;
                self.status = new;
                self.activate();
                return;
            }
        }
        self.status = new;
    }

    /// DRIVER_OK: checks the ready queues and starts the device. On failure the device
    /// asks for a reset (DEVICE_NEEDS_RESET and a configuration change interrupt).
    fn activate(&mut self) {
        match self.try_activate() {
            Ok(()) => self.activated = true,
            Err(_) => {
                self.status |= status::DEVICE_NEEDS_RESET;
                // If the irqfd cannot be signalled there is nobody to tell.
                let _ = self.interrupt.trigger(INT_CONFIG);
            }
        }
    }

    fn try_activate(&mut self) -> Result<(), ActivateError> {
        let mut queues = Vec::with_capacity(self.queues.len());
        for (index, q) in self.queues.iter().enumerate() {
            if q.ready() && !q.is_valid(&self.mem) {
                return Err(ActivateError::BadQueue {
                    index,
                    reason: "rings outside guest memory".to_string(),
                });
            }
            let copy = Queue::try_from(q.state()).map_err(|e| ActivateError::BadQueue {
                index,
                reason: e.to_string(),
            })?;
            queues.push(copy);
        }
        self.device
            .activate(self.mem.clone(), queues, self.interrupt.clone())
    }

    /// Back to the initial state: device reset, queues unconfigured, features and
    /// interrupt status cleared, pending notifications dropped.
    fn reset(&mut self) {
        self.device.reset();
        for q in &mut self.queues {
            q.reset();
        }
        for evt in &self.queue_evts {
            let _ = evt.read();
        }
        self.interrupt.ack(u32::MAX);
        self.queue_select = 0;
        self.device_features_select = 0;
        self.driver_features_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.activated = false;
    }

    /// Whether `[offset, offset + len)` lies in the configuration space window.
    fn config_range(offset: u64, len: usize) -> Option<u64> {
        let end = offset.checked_add(len as u64)?;
        (offset >= reg::CONFIG && end <= MMIO_LEN).then(|| offset - reg::CONFIG)
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            match Self::config_range(offset, data.len()) {
                Some(config_offset) => self.device.read_config(config_offset, data),
                None => data.fill(0),
            }
            return;
        }
        match <&mut [u8; 4]>::try_from(&mut *data) {
            Ok(out) if offset % 4 == 0 => *out = self.read_register(offset).to_le_bytes(),
            _ => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            if let Some(config_offset) = Self::config_range(offset, data.len()) {
                self.device.write_config(config_offset, data);
            }
            return;
        }
        if let Ok(bytes) = <[u8; 4]>::try_from(data) {
            if offset % 4 == 0 {
                self.write_register(offset, u32::from_le_bytes(bytes));
            }
        }
    }
}

#[cfg(test)]
mod tests;
