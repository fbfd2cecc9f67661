//! Tests of the parent module.
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
