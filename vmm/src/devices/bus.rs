//! The buses a vCPU exit is dispatched on: one for port I/O, one for MMIO.
//!
//! Every emulated device sits behind [`BusDevice`]; a [`Bus`] maps address ranges to
//! devices and forwards accesses with the offset into the device's range.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// A device reachable through port I/O or MMIO.
///
/// `offset` is relative to the base address the device was inserted at. Accesses come
/// straight from the guest: implementations must accept any offset and length without
/// panicking (reads of unknown registers return zeros or all-ones, writes are dropped).
pub trait BusDevice: Send {
    /// Guest reads `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// Guest writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A device shared between the bus and whoever set it up.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Why a device could not be inserted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The range is empty or wraps around the address space.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange {
        /// Start of the range.
        base: u64,
        /// Its length.
        len: u64,
    },
    /// The range overlaps a device already there.
    #[error("bus range {base:#x}+{len:#x} overlaps a device at {other:#x}")]
    Overlap {
        /// Start of the new range.
        base: u64,
        /// Its length.
        len: u64,
        /// Start of the device in the way.
        other: u64,
    },
}

/// An address space of devices.
#[derive(Default, Clone)]
pub struct Bus {
    /// base -> (length, device)
    devices: BTreeMap<u64, (u64, SharedDevice)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<String> = self
            .devices
            .iter()
            .map(|(base, (len, _))| format!("{base:#x}+{len:#x}"))
            .collect();
        f.debug_struct("Bus").field("devices", &ranges).finish()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Places `device` at `[base, base + len)`.
    pub fn insert(&mut self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        // The only candidates for overlap: the last device starting before `end`.
        if let Some((&other, &(other_len, _))) = self.devices.range(..end).next_back() {
            if other + other_len > base {
                return Err(BusError::Overlap { base, len, other });
            }
        }
        self.devices.insert(base, (len, device));
        Ok(())
    }

    /// The device covering `addr` and the offset of `addr` in it, if the whole access
    /// of `size` bytes fits inside the device's range.
    fn resolve(&self, addr: u64, size: usize) -> Option<(&SharedDevice, u64)> {
        let (&base, (len, device)) = self.devices.range(..=addr).next_back()?;
        let offset = addr - base;
        let end = offset.checked_add(size as u64)?;
        (end <= *len).then_some((device, offset))
    }

    /// Dispatches a read; `false` if no device covers it (`data` is then untouched).
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((device, offset)) => {
                lock(device).read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Dispatches a write; `false` if no device covers it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr, data.len()) {
            Some((device, offset)) => {
                lock(device).write(offset, data);
                true
            }
            None => false,
        }
    }
}

/// Locks a mutex, recovering from poisoning: a device (or VM state) whose holder
/// panicked once keeps serving with whatever state it had, rather than taking the VMM
/// down.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records accesses and answers reads with the offset's low byte.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Recorder {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.writes.push((offset, data.to_vec()));
        }
    }

    #[test]
    fn accesses_reach_the_device_with_its_offset() {
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let mut bus = Bus::new();
        bus.insert(dev.clone(), 0x3f8, 8).unwrap();
        let mut data = [0u8; 1];
        assert!(bus.read(0x3fb, &mut data));
        assert_eq!(data, [3]);
        assert!(bus.write(0x3f8, b"x"));
        assert_eq!(dev.lock().unwrap().writes, vec![(0, vec![b'x'])]);
    }

    #[test]
    fn accesses_outside_or_straddling_a_device_are_not_dispatched() {
        let mut bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Recorder::default())), 0x1000, 0x100)
            .unwrap();
        let mut data = [0xaau8; 4];
        assert!(!bus.read(0xfff, &mut data[..1]));
        assert!(!bus.read(0x1100, &mut data[..1]));
        assert!(
            !bus.read(0x10fe, &mut data),
            "4-byte read straddles the end"
        );
        assert_eq!(data, [0xaa; 4]);
        assert!(!bus.write(u64::MAX, &[1, 2]));
    }

    #[test]
    fn overlapping_and_empty_ranges_are_refused() {
        let mut bus = Bus::new();
        let dev = || Arc::new(Mutex::new(Recorder::default()));
        bus.insert(dev(), 0x1000, 0x100).unwrap();
        assert_eq!(
            bus.insert(dev(), 0x10ff, 1),
            Err(BusError::Overlap {
                base: 0x10ff,
                len: 1,
                other: 0x1000
            })
        );
        assert!(matches!(
            bus.insert(dev(), 0xf00, 0x101),
            Err(BusError::Overlap { .. })
        ));
        assert!(matches!(
            bus.insert(dev(), 0x2000, 0),
            Err(BusError::InvalidRange { .. })
        ));
        assert!(matches!(
            bus.insert(dev(), u64::MAX, 2),
            Err(BusError::InvalidRange { .. })
        ));
        bus.insert(dev(), 0x1100, 0x10).unwrap();
        bus.insert(dev(), 0xf00, 0x100).unwrap();
    }
}
