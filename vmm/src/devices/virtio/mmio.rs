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
        device: Box<dyn VirtioDevice>,
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
        Ok(MmioTransport {
            mem,
            device,
            interrupt,
            queues,
            queue_evts,
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
mod tests {
    use super::*;
    use std::sync::Mutex;
    use vm_memory::GuestAddress;

    const FEATURE_A: u64 = 1 << 3;

    /// (ready, size, desc, avail, used) of a queue the device got at activation.
    type QueueView = (bool, u16, u64, u64, u64);

    /// What a [`TestDevice`] was asked to do.
    #[derive(Debug, Default)]
    struct Calls {
        acked: Vec<u64>,
        activated: Vec<Vec<QueueView>>,
        processed: Vec<usize>,
        resets: usize,
        config_writes: Vec<(u64, Vec<u8>)>,
    }

    /// Two queues (max 16 and 8), features VERSION_1 | FEATURE_A, 8 bytes of config.
    struct TestDevice {
        calls: Arc<Mutex<Calls>>,
        fail_activate: bool,
    }

    impl VirtioDevice for TestDevice {
        fn device_type(&self) -> u32 {
            42
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn avail_features(&self) -> u64 {
            VIRTIO_F_VERSION_1 | FEATURE_A
        }
        fn ack_features(&mut self, features: u64) {
            self.calls.lock().unwrap().acked.push(features);
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = (offset as u8).wrapping_add(i as u8).wrapping_add(0xa0);
            }
        }
        fn write_config(&mut self, offset: u64, data: &[u8]) {
            self.calls
                .lock()
                .unwrap()
                .config_writes
                .push((offset, data.to_vec()));
        }
        fn activate(
            &mut self,
            _mem: GuestMemoryMmap,
            queues: Vec<Queue>,
            _interrupt: Arc<VirtioInterrupt>,
        ) -> Result<(), ActivateError> {
            if self.fail_activate {
                return Err(ActivateError::Io(io::Error::other("no")));
            }
            let queues = queues
                .iter()
                .map(|q| {
                    (
                        q.ready(),
                        q.size(),
                        q.desc_table(),
                        q.avail_ring(),
                        q.used_ring(),
                    )
                })
                .collect();
            self.calls.lock().unwrap().activated.push(queues);
            Ok(())
        }
        fn process_queue(&mut self, index: usize) {
            self.calls.lock().unwrap().processed.push(index);
        }
        fn reset(&mut self) {
            self.calls.lock().unwrap().resets += 1;
        }
    }

    struct Fixture {
        t: MmioTransport,
        calls: Arc<Mutex<Calls>>,
        interrupt: Arc<VirtioInterrupt>,
    }

    fn fixture_with(fail_activate: bool) -> Fixture {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let calls = Arc::new(Mutex::new(Calls::default()));
        let device = TestDevice {
            calls: calls.clone(),
            fail_activate,
        };
        let interrupt = Arc::new(VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        let t = MmioTransport::new(mem, Box::new(device), interrupt.clone()).unwrap();
        Fixture {
            t,
            calls,
            interrupt,
        }
    }

    fn fixture() -> Fixture {
        fixture_with(false)
    }

    fn read32(t: &mut MmioTransport, offset: u64) -> u32 {
        let mut data = [0xffu8; 4];
        t.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    fn write32(t: &mut MmioTransport, offset: u64, value: u32) {
        t.write(offset, &value.to_le_bytes());
    }

    fn write_driver_features(t: &mut MmioTransport, features: u64) {
        write32(t, reg::DRIVER_FEATURES_SEL, 0);
        write32(t, reg::DRIVER_FEATURES, features as u32);
        write32(t, reg::DRIVER_FEATURES_SEL, 1);
        write32(t, reg::DRIVER_FEATURES, (features >> 32) as u32);
    }

    /// ACKNOWLEDGE, DRIVER, `features`, FEATURES_OK; returns the status read back.
    fn negotiate(t: &mut MmioTransport, features: u64) -> u32 {
        write32(t, reg::STATUS, status::ACKNOWLEDGE);
        write32(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        write_driver_features(t, features);
        let s = read32(t, reg::STATUS);
        write32(t, reg::STATUS, s | status::FEATURES_OK);
        read32(t, reg::STATUS)
    }

    const NEGOTIATED: u32 = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;

    fn setup_queue(t: &mut MmioTransport, index: u32, size: u32, base: u64) {
        write32(t, reg::QUEUE_SEL, index);
        write32(t, reg::QUEUE_NUM, size);
        for (low, addr) in [
            (reg::QUEUE_DESC_LOW, base),
            (reg::QUEUE_DRIVER_LOW, base + 0x1000),
            (reg::QUEUE_DEVICE_LOW, base + 0x2000),
        ] {
            write32(t, low, addr as u32);
            write32(t, low + 4, (addr >> 32) as u32);
        }
        write32(t, reg::QUEUE_READY, 1);
    }

    fn driver_ok(t: &mut MmioTransport) {
        let s = read32(t, reg::STATUS);
        write32(t, reg::STATUS, s | status::DRIVER_OK);
    }

    #[test]
    fn identification_registers() {
        let Fixture { mut t, .. } = fixture();
        assert_eq!(read32(&mut t, reg::MAGIC_VALUE), 0x7472_6976);
        assert_eq!(read32(&mut t, reg::VERSION), 2);
        assert_eq!(read32(&mut t, reg::DEVICE_ID), 42);
        assert_eq!(read32(&mut t, reg::VENDOR_ID), VENDOR_ID);
        assert_eq!(read32(&mut t, reg::STATUS), 0);
        assert_eq!(read32(&mut t, reg::CONFIG_GENERATION), 0);
        assert_eq!(MmioTransport::MMIO_LEN, 0x1000);
    }

    #[test]
    fn device_features_are_selected_by_half() {
        let Fixture { mut t, .. } = fixture();
        assert_eq!(read32(&mut t, reg::DEVICE_FEATURES), FEATURE_A as u32);
        write32(&mut t, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(
            read32(&mut t, reg::DEVICE_FEATURES),
            1,
            "VERSION_1 is bit 32"
        );
        write32(&mut t, reg::DEVICE_FEATURES_SEL, 2);
        assert_eq!(read32(&mut t, reg::DEVICE_FEATURES), 0);
        write32(&mut t, reg::DEVICE_FEATURES_SEL, u32::MAX);
        assert_eq!(read32(&mut t, reg::DEVICE_FEATURES), 0);
    }

    #[test]
    fn features_ok_accepts_offered_features_and_locks_them() {
        let Fixture { mut t, calls, .. } = fixture();
        assert_eq!(
            negotiate(&mut t, VIRTIO_F_VERSION_1 | FEATURE_A),
            NEGOTIATED
        );
        // DriverFeatures is frozen once FEATURES_OK is set.
        write_driver_features(&mut t, VIRTIO_F_VERSION_1);
        write32(&mut t, reg::STATUS, NEGOTIATED);
        assert_eq!(
            calls.lock().unwrap().acked,
            vec![VIRTIO_F_VERSION_1 | FEATURE_A]
        );
    }

    #[test]
    fn driver_features_need_driver_status() {
        let Fixture { mut t, calls, .. } = fixture();
        write_driver_features(&mut t, VIRTIO_F_VERSION_1);
        write32(&mut t, reg::STATUS, status::ACKNOWLEDGE);
        write32(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        write32(&mut t, reg::STATUS, NEGOTIATED);
        assert_eq!(
            read32(&mut t, reg::STATUS),
            status::ACKNOWLEDGE | status::DRIVER
        );
        assert!(calls.lock().unwrap().acked.is_empty());
    }

    #[test]
    fn features_ok_refused_for_unoffered_features() {
        let Fixture { mut t, calls, .. } = fixture();
        let s = negotiate(&mut t, VIRTIO_F_VERSION_1 | FEATURE_A | (1 << 5));
        assert_eq!(s, status::ACKNOWLEDGE | status::DRIVER);
        let s = negotiate(&mut t, VIRTIO_F_VERSION_1 | (1 << 40));
        assert_eq!(s, status::ACKNOWLEDGE | status::DRIVER);
        assert!(calls.lock().unwrap().acked.is_empty());
        // The driver may retry with an acceptable set.
        assert_eq!(negotiate(&mut t, VIRTIO_F_VERSION_1), NEGOTIATED);
        assert_eq!(calls.lock().unwrap().acked, vec![VIRTIO_F_VERSION_1]);
    }

    #[test]
    fn features_ok_refused_without_version_1() {
        let Fixture { mut t, calls, .. } = fixture();
        assert_eq!(
            negotiate(&mut t, FEATURE_A),
            status::ACKNOWLEDGE | status::DRIVER
        );
        assert!(calls.lock().unwrap().acked.is_empty());
    }

    #[test]
    fn status_bits_follow_the_spec_order() {
        let Fixture { mut t, calls, .. } = fixture();
        write32(&mut t, reg::STATUS, status::DRIVER);
        assert_eq!(read32(&mut t, reg::STATUS), 0, "DRIVER before ACKNOWLEDGE");
        write32(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER_OK);
        assert_eq!(
            read32(&mut t, reg::STATUS),
            status::ACKNOWLEDGE,
            "DRIVER_OK too early"
        );
        write32(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        write_driver_features(&mut t, VIRTIO_F_VERSION_1);
        write32(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
        );
        assert_eq!(
            read32(&mut t, reg::STATUS),
            status::ACKNOWLEDGE | status::DRIVER,
            "DRIVER_OK without FEATURES_OK"
        );
        // Several bits in one write are taken in order.
        write32(&mut t, reg::STATUS, NEGOTIATED | status::DRIVER_OK);
        assert_eq!(read32(&mut t, reg::STATUS), NEGOTIATED | status::DRIVER_OK);
        assert!(t.is_activated());
        // Bits are not cleared but by a reset; DEVICE_NEEDS_RESET is the device's.
        write32(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DEVICE_NEEDS_RESET,
        );
        assert_eq!(read32(&mut t, reg::STATUS), NEGOTIATED | status::DRIVER_OK);
        assert_eq!(calls.lock().unwrap().activated.len(), 1);
    }

    #[test]
    fn failed_stops_the_status_machine() {
        let Fixture { mut t, calls, .. } = fixture();
        write32(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        write_driver_features(&mut t, VIRTIO_F_VERSION_1);
        write32(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FAILED,
        );
        let failed = status::ACKNOWLEDGE | status::DRIVER | status::FAILED;
        assert_eq!(read32(&mut t, reg::STATUS), failed);
        write32(
            &mut t,
            reg::STATUS,
            failed | status::FEATURES_OK | status::DRIVER_OK,
        );
        assert_eq!(read32(&mut t, reg::STATUS), failed);
        assert!(!t.is_activated());
        assert!(calls.lock().unwrap().acked.is_empty());
    }

    #[test]
    fn queue_num_max_follows_queue_sel() {
        let Fixture { mut t, .. } = fixture();
        assert_eq!(read32(&mut t, reg::QUEUE_NUM_MAX), 16);
        write32(&mut t, reg::QUEUE_SEL, 1);
        assert_eq!(read32(&mut t, reg::QUEUE_NUM_MAX), 8);
        write32(&mut t, reg::QUEUE_SEL, 2);
        assert_eq!(read32(&mut t, reg::QUEUE_NUM_MAX), 0, "no such queue");
        assert_eq!(read32(&mut t, reg::QUEUE_READY), 0);
        write32(&mut t, reg::QUEUE_SEL, u32::MAX);
        assert_eq!(read32(&mut t, reg::QUEUE_NUM_MAX), 0);
    }

    #[test]
    fn queue_num_must_be_a_power_of_two_within_max() {
        let Fixture { mut t, calls, .. } = fixture();
        negotiate(&mut t, VIRTIO_F_VERSION_1);
        write32(&mut t, reg::QUEUE_SEL, 0);
        write32(&mut t, reg::QUEUE_NUM, 4);
        for bad in [0, 3, 6, 32, 1 << 16, u32::MAX] {
            write32(&mut t, reg::QUEUE_NUM, bad);
        }
        write32(&mut t, reg::QUEUE_SEL, 1);
        write32(&mut t, reg::QUEUE_NUM, 16);
        // Writes to a queue that does not exist go nowhere.
        write32(&mut t, reg::QUEUE_SEL, 7);
        write32(&mut t, reg::QUEUE_NUM, 2);
        write32(&mut t, reg::QUEUE_READY, 1);
        driver_ok(&mut t);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.activated[0][0].1, 4);
        assert_eq!(
            calls.activated[0][1].1, 8,
            "16 > max: the size stays at max"
        );
    }

    #[test]
    fn queue_config_needs_features_ok() {
        let Fixture { mut t, calls, .. } = fixture();
        write32(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        setup_queue(&mut t, 0, 4, 0x4000);
        assert_eq!(read32(&mut t, reg::QUEUE_READY), 0);
        write_driver_features(&mut t, VIRTIO_F_VERSION_1);
        write32(&mut t, reg::STATUS, NEGOTIATED);
        driver_ok(&mut t);
        let calls = calls.lock().unwrap();
        let q0 = calls.activated[0][0];
        assert!(!q0.0, "the early QueueReady write was dropped");
        assert_eq!(q0.1, 16, "the early QueueNum write was dropped");
        assert_ne!(q0.2, 0x4000);
    }

    #[test]
    fn queue_config_is_ignored_once_ready_or_after_driver_ok() {
        let Fixture { mut t, calls, .. } = fixture();
        negotiate(&mut t, VIRTIO_F_VERSION_1);
        setup_queue(&mut t, 0, 4, 0x4000);
        assert_eq!(read32(&mut t, reg::QUEUE_READY), 1);
        // Ready: size and addresses are frozen.
        write32(&mut t, reg::QUEUE_NUM, 8);
        write32(&mut t, reg::QUEUE_DESC_LOW, 0x8000);
        driver_ok(&mut t);
        // After DRIVER_OK nothing changes, not even QueueReady.
        write32(&mut t, reg::QUEUE_READY, 0);
        write32(&mut t, reg::QUEUE_SEL, 1);
        setup_queue(&mut t, 1, 2, 0x8000);
        write32(&mut t, reg::QUEUE_SEL, 0);
        assert_eq!(read32(&mut t, reg::QUEUE_READY), 1);
        write32(&mut t, reg::QUEUE_SEL, 1);
        assert_eq!(read32(&mut t, reg::QUEUE_READY), 0);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.activated.len(), 1);
        assert_eq!(calls.activated[0][0], (true, 4, 0x4000, 0x5000, 0x6000));
        assert!(!calls.activated[0][1].0);
    }

    #[test]
    fn queue_ready_can_be_withdrawn_before_driver_ok() {
        let Fixture { mut t, calls, .. } = fixture();
        negotiate(&mut t, VIRTIO_F_VERSION_1);
        setup_queue(&mut t, 0, 4, 0x4000);
        write32(&mut t, reg::QUEUE_READY, 0);
        assert_eq!(read32(&mut t, reg::QUEUE_READY), 0);
        write32(&mut t, reg::QUEUE_NUM, 2);
        write32(&mut t, reg::QUEUE_READY, 1);
        driver_ok(&mut t);
        assert_eq!(
            calls.lock().unwrap().activated[0][0],
            (true, 2, 0x4000, 0x5000, 0x6000)
        );
    }

    #[test]
    fn activation_passes_the_queues_to_the_device() {
        let Fixture { mut t, calls, .. } = fixture();
        negotiate(&mut t, VIRTIO_F_VERSION_1 | FEATURE_A);
        setup_queue(&mut t, 1, 8, 0x8000);
        assert!(!t.is_activated());
        driver_ok(&mut t);
        assert!(t.is_activated());
        assert_eq!(t.device_status(), NEGOTIATED | status::DRIVER_OK);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.activated.len(), 1);
        let queues = &calls.activated[0];
        assert_eq!(queues.len(), 2, "every queue, in index order");
        assert!(!queues[0].0, "queue 0 was not set up");
        assert_eq!(queues[1], (true, 8, 0x8000, 0x9000, 0xa000));
    }

    #[test]
    fn activation_refuses_rings_outside_guest_memory() {
        let Fixture {
            mut t,
            calls,
            interrupt,
        } = fixture();
        negotiate(&mut t, VIRTIO_F_VERSION_1);
        setup_queue(&mut t, 0, 16, 0xf000);
        driver_ok(&mut t);
        assert!(!t.is_activated());
        assert!(calls.lock().unwrap().activated.is_empty());
        let s = read32(&mut t, reg::STATUS);
        assert_eq!(
            s,
            NEGOTIATED | status::DRIVER_OK | status::DEVICE_NEEDS_RESET
        );
        assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), INT_CONFIG);
        assert_eq!(interrupt.eventfd().read().unwrap(), 1);
        // No queue traffic reaches a device that did not start.
        t.process_queue(0);
        assert!(calls.lock().unwrap().processed.is_empty());
        // A reset gives the driver a fresh start.
        write32(&mut t, reg::STATUS, 0);
        negotiate(&mut t, VIRTIO_F_VERSION_1);
        setup_queue(&mut t, 0, 16, 0x4000);
        driver_ok(&mut t);
        assert!(t.is_activated());
    }

    #[test]
    fn device_activation_failure_asks_for_a_reset() {
        let Fixture {
            mut t, interrupt, ..
        } = fixture_with(true);
        negotiate(&mut t, VIRTIO_F_VERSION_1);
        setup_queue(&mut t, 0, 16, 0x4000);
        driver_ok(&mut t);
        assert!(!t.is_activated());
        assert_ne!(read32(&mut t, reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
        assert_eq!(interrupt.status(), INT_CONFIG);
    }

    #[test]
    fn process_queue_reaches_the_device_only_once_activated() {
        let Fixture { mut t, calls, .. } = fixture();
        t.process_queue(0);
        negotiate(&mut t, VIRTIO_F_VERSION_1);
        setup_queue(&mut t, 0, 16, 0x4000);
        driver_ok(&mut t);
        t.queue_evts()[0].write(1).unwrap();
        t.process_queue(0);
        t.process_queue(1);
        t.process_queue(2);
        t.process_queue(usize::MAX);
        assert_eq!(calls.lock().unwrap().processed, vec![0, 1]);
        assert!(
            t.queue_evts()[0].read().is_err(),
            "the notification was consumed"
        );
    }

    #[test]
    fn queue_notify_write_signals_the_queue_eventfd() {
        let Fixture { mut t, .. } = fixture();
        assert_eq!(t.queue_evts().len(), 2);
        assert!(t.queue_evts()[1].read().is_err(), "nothing pending yet");
        write32(&mut t, reg::QUEUE_NOTIFY, 1);
        assert_eq!(t.queue_evts()[1].read().unwrap(), 1);
        assert!(t.queue_evts()[0].read().is_err());
        write32(&mut t, reg::QUEUE_NOTIFY, 2);
        write32(&mut t, reg::QUEUE_NOTIFY, u32::MAX);
        assert!(t.queue_evts().iter().all(|e| e.read().is_err()));
    }

    #[test]
    fn interrupt_status_and_ack() {
        let Fixture {
            mut t, interrupt, ..
        } = fixture();
        interrupt
            .trigger(crate::devices::virtio::INT_VRING)
            .unwrap();
        interrupt.trigger(INT_CONFIG).unwrap();
        assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), 3);
        write32(&mut t, reg::INTERRUPT_ACK, 1);
        assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), INT_CONFIG);
        write32(&mut t, reg::INTERRUPT_STATUS, 0);
        assert_eq!(
            read32(&mut t, reg::INTERRUPT_STATUS),
            INT_CONFIG,
            "read-only"
        );
        write32(&mut t, reg::INTERRUPT_ACK, INT_CONFIG);
        assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), 0);
    }

    #[test]
    fn reset_returns_to_the_initial_state() {
        let Fixture {
            mut t,
            calls,
            interrupt,
        } = fixture();
        negotiate(&mut t, VIRTIO_F_VERSION_1 | FEATURE_A);
        setup_queue(&mut t, 0, 4, 0x4000);
        driver_ok(&mut t);
        interrupt
            .trigger(crate::devices::virtio::INT_VRING)
            .unwrap();
        write32(&mut t, reg::QUEUE_NOTIFY, 0);
        write32(&mut t, reg::STATUS, 0);
        assert_eq!(read32(&mut t, reg::STATUS), 0);
        assert!(!t.is_activated());
        assert_eq!(calls.lock().unwrap().resets, 1);
        assert_eq!(read32(&mut t, reg::INTERRUPT_STATUS), 0);
        assert!(
            t.queue_evts()[0].read().is_err(),
            "stale notification dropped"
        );
        write32(&mut t, reg::QUEUE_SEL, 0);
        assert_eq!(read32(&mut t, reg::QUEUE_READY), 0);
        t.process_queue(0);
        assert!(calls.lock().unwrap().processed.is_empty());
        // Features were cleared: FEATURES_OK needs a fresh DriverFeatures write.
        write32(&mut t, reg::STATUS, status::ACKNOWLEDGE);
        write32(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        write32(&mut t, reg::STATUS, NEGOTIATED);
        assert_eq!(
            read32(&mut t, reg::STATUS),
            status::ACKNOWLEDGE | status::DRIVER
        );
        // Queues are back to their defaults.
        write_driver_features(&mut t, VIRTIO_F_VERSION_1);
        write32(&mut t, reg::STATUS, NEGOTIATED);
        write32(&mut t, reg::QUEUE_SEL, 0);
        write32(&mut t, reg::QUEUE_READY, 1);
        driver_ok(&mut t);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.activated.len(), 2);
        assert_eq!(calls.activated[1][0].1, 16, "size back to max");
        assert_ne!(
            calls.activated[1][0].2, 0x4000,
            "addresses back to defaults"
        );
    }

    #[test]
    fn odd_sizes_and_offsets_read_zeros_and_never_panic() {
        let Fixture { mut t, .. } = fixture();
        // Misaligned or non 32-bit accesses to registers read as zeros...
        for (offset, len) in [(0, 1), (0, 2), (0, 8), (1, 4), (2, 4), (0x70, 3), (0xfe, 4)] {
            let mut data = vec![0xffu8; len];
            t.read(offset, &mut data);
            assert!(data.iter().all(|&b| b == 0), "{offset:#x}+{len}");
        }
        // ...and writes of that kind are dropped.
        t.write(reg::STATUS, &[status::ACKNOWLEDGE as u8]);
        t.write(reg::STATUS + 1, &status::ACKNOWLEDGE.to_le_bytes());
        t.write(reg::STATUS, &u64::from(status::ACKNOWLEDGE).to_le_bytes());
        assert_eq!(read32(&mut t, reg::STATUS), 0);
        // Reserved and write-only registers read as zeros.
        for offset in [0x018, 0x020, 0x038, 0x050, 0x064, 0x080, 0x0c0, 0x0f8] {
            assert_eq!(read32(&mut t, offset), 0, "{offset:#x}");
        }
        // Shared memory regions read as absent.
        assert_eq!(read32(&mut t, reg::SHM_LEN_LOW), u32::MAX);
        assert_eq!(read32(&mut t, reg::SHM_LEN_HIGH), u32::MAX);
        // Nothing panics, whatever the guest does.
        let offsets = (0..0x110).chain([0xffc, 0xfff, 0x1000, u64::MAX - 3, u64::MAX]);
        for offset in offsets {
            for len in 0..=9 {
                let mut data = vec![0u8; len];
                t.read(offset, &mut data);
                t.write(offset, &vec![0xffu8; len]);
                t.write(offset, &vec![0x01u8; len]);
            }
        }
        let mut data = [0u8; 4];
        t.read(u64::MAX - 1, &mut data);
        assert_eq!(data, [0; 4]);
    }

    #[test]
    fn config_space_is_forwarded_to_the_device() {
        let Fixture { mut t, calls, .. } = fixture();
        let mut data = [0u8; 3];
        t.read(0x102, &mut data);
        assert_eq!(data, [0xa2, 0xa3, 0xa4]);
        let mut byte = [0u8; 1];
        t.read(0x100, &mut byte);
        assert_eq!(byte, [0xa0]);
        t.write(0x104, &[1, 2]);
        // Past the end of the window: dropped, reads zero.
        t.write(0xffe, &[1, 2, 3, 4]);
        let mut data = [0xffu8; 4];
        t.read(0xffe, &mut data);
        assert_eq!(data, [0; 4]);
        assert_eq!(calls.lock().unwrap().config_writes, vec![(4, vec![1, 2])]);
    }

    #[test]
    fn invalid_queue_max_size_is_refused() {
        struct Bad;
        impl VirtioDevice for Bad {
            fn device_type(&self) -> u32 {
                1
            }
            fn queue_max_sizes(&self) -> &[u16] {
                &[3]
            }
            fn avail_features(&self) -> u64 {
                VIRTIO_F_VERSION_1
            }
            fn ack_features(&mut self, _: u64) {}
            fn read_config(&self, _: u64, data: &mut [u8]) {
                data.fill(0);
            }
            fn write_config(&mut self, _: u64, _: &[u8]) {}
            fn activate(
                &mut self,
                _: GuestMemoryMmap,
                _: Vec<Queue>,
                _: Arc<VirtioInterrupt>,
            ) -> Result<(), ActivateError> {
                Ok(())
            }
            fn process_queue(&mut self, _: usize) {}
            fn reset(&mut self) {}
        }
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        let interrupt = Arc::new(VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()));
        let err = MmioTransport::new(mem, Box::new(Bad), interrupt).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
