//! virtio-rng, the entropy device (virtio 1.2, 5.4).
//!
//! One request queue; every buffer the driver posts is filled with random bytes from
//! the host kernel (`getrandom(2)`), up to [`MAX_BYTES_PER_CHAIN`] per buffer. No
//! feature bits besides `VIRTIO_F_VERSION_1`, no configuration space.

use std::io;
use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Bytes, GuestMemoryMmap};

use super::{ActivateError, VirtioDevice, VirtioInterrupt, INT_VRING, VIRTIO_F_VERSION_1};

/// The virtio device ID of an entropy source.
pub const TYPE_RNG: u32 = 4;
/// Maximum size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// At most this many random bytes go into one descriptor chain: a guest asking for more
/// gets a short buffer (the used length tells it), not a long stall of the event loop.
pub const MAX_BYTES_PER_CHAIN: u32 = 64 * 1024;

const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE];

/// What the device holds once the driver started it.
#[derive(Debug)]
struct Active {
    mem: GuestMemoryMmap,
    queue: Queue,
    interrupt: Arc<VirtioInterrupt>,
}

/// The virtio entropy device.
pub struct Rng {
    acked_features: u64,
    active: Option<Active>,
    /// Staging buffer for one descriptor's random bytes.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rng")
            .field("acked_features", &self.acked_features)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Default for Rng {
    fn default() -> Self {
        Self::new()
    }
}

impl Rng {
    /// A device not yet started by a driver.
    pub fn new() -> Self {
        Rng {
            acked_features: 0,
            active: None,
            buf: vec![0; MAX_BYTES_PER_CHAIN as usize],
        }
    }
}

/// Fills `buf` with random bytes from the kernel.
fn fill_random(buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a live, exclusively borrowed buffer of `rest.len()` bytes; the
        // kernel writes at most that many bytes into it and keeps no reference to it.
        let ret = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        match usize::try_from(ret) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
            Ok(n) => filled += n,
            Err(_) => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
    Ok(())
}

/// Fills the device-writable buffers of `chain` with random bytes, at most
/// [`MAX_BYTES_PER_CHAIN`] in all; returns how many were written. Read-only buffers are
/// skipped; a buffer outside guest memory ends the chain.
fn fill_chain(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    buf: &mut [u8],
) -> u32 {
    let mut written: u32 = 0;
    for desc in chain.writable() {
        if written >= MAX_BYTES_PER_CHAIN {
            break;
        }
        let want = desc.len().min(MAX_BYTES_PER_CHAIN - written);
        let Some(out) = buf.get_mut(..want as usize) else {
            break;
        };
        if out.is_empty() {
            continue;
        }
        if fill_random(out).is_err() {
            break;
        }
        // `write` stops at the first byte outside guest memory and says how far it got.
        let done = mem
            .write(out, desc.addr())
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
            .min(want);
        written += done;
        if done < want {
            break;
        }
    }
    written
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        QUEUE_SIZES
    }

    fn avail_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }

    fn ack_features(&mut self, features: u64) {
        self.acked_features = features & self.avail_features();
    }

    fn activate(
        &mut self,
        mem: GuestMemoryMmap,
        queues: Vec<Queue>,
        interrupt: Arc<VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        let count = queues.len();
        let Ok([queue]) = <[Queue; 1]>::try_from(queues) else {
            return Err(ActivateError::BadQueue {
                index: count.min(1),
                reason: format!("virtio-rng has 1 queue, got {count}"),
            });
        };
        self.active = Some(Active {
            mem,
            queue,
            interrupt,
        });
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        let Some(active) = self.active.as_mut() else {
            return;
        };
        if index != 0 {
            return;
        }
        let Active {
            mem,
            queue,
            interrupt,
        } = active;
        let mut used = false;
        // One pass over what is available now: bounded however the guest moves the
        // ring, and what it adds later comes with a new notification.
        for _ in 0..queue.size() {
            let Some(chain) = queue.pop_descriptor_chain(&*mem) else {
                break;
            };
            let head = chain.head_index();
            let len = fill_chain(mem, chain, &mut self.buf);
            // Fails for a head index past the queue (the chain is dropped: there is no
            // valid id to return it under) or a used ring out of reach.
            if queue.add_used(&*mem, head, len).is_err() {
                continue;
            }
            used = true;
        }
        if used && queue.needs_notification(&*mem).unwrap_or(true) {
            // If the irqfd cannot be signalled there is nobody to tell.
            let _ = interrupt.trigger(INT_VRING);
        }
    }

    fn reset(&mut self) {
        self.active = None;
        self.acked_features = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::bus::BusDevice;
    use crate::devices::virtio::mmio::MmioTransport;
    use crate::devices::virtio::status;
    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{GuestAddress, GuestMemoryMmap};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    const MEM_SIZE: usize = 0x20_0000;
    const BUF: u64 = 0x10_0000;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    const NEXT: u16 = VRING_DESC_F_NEXT as u16;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap()
    }

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
    }

    fn interrupt() -> Arc<VirtioInterrupt> {
        Arc::new(VirtioInterrupt::new(EventFd::new(EFD_NONBLOCK).unwrap()))
    }

    /// An Rng started on the queue `vq` describes.
    fn started(
        mem: &GuestMemoryMmap,
        vq: &MockSplitQueue<GuestMemoryMmap>,
    ) -> (Rng, Arc<VirtioInterrupt>) {
        let mut rng = Rng::new();
        let irq = interrupt();
        rng.activate(mem.clone(), vec![vq.create_queue().unwrap()], irq.clone())
            .unwrap();
        (rng, irq)
    }

    /// (id, len) of used ring entry `i`.
    fn used(vq: &MockSplitQueue<GuestMemoryMmap>, i: usize) -> (u32, u32) {
        let elem = vq.used().ring().ref_at(i).unwrap().load();
        (elem.id(), elem.len())
    }

    fn read_buf(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
        let mut data = vec![0u8; len];
        mem.read_slice(&mut data, GuestAddress(addr)).unwrap();
        data
    }

    #[test]
    fn rng_identity() {
        let mut rng = Rng::default();
        assert_eq!(rng.device_type(), 4);
        assert_eq!(rng.queue_max_sizes(), &[256]);
        assert_eq!(rng.avail_features(), VIRTIO_F_VERSION_1);
        let mut data = [0xffu8; 8];
        rng.read_config(0, &mut data);
        assert_eq!(data, [0; 8]);
        rng.write_config(0, &[1, 2, 3]);
        rng.ack_features(VIRTIO_F_VERSION_1 | 1);
        assert_eq!(rng.acked_features, VIRTIO_F_VERSION_1);
    }

    #[test]
    fn rng_fills_a_writable_buffer() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(&[desc(BUF, 64, WRITE, 0)], 0).unwrap();
        let (mut rng, irq) = started(&mem, &vq);
        rng.process_queue(0);
        assert_eq!(vq.used().idx().load(), 1);
        assert_eq!(used(&vq, 0), (0, 64));
        assert!(read_buf(&mem, BUF, 64).iter().any(|&b| b != 0));
        assert!(
            read_buf(&mem, BUF + 64, 64).iter().all(|&b| b == 0),
            "no overrun"
        );
        assert_eq!(irq.status(), INT_VRING);
        assert_eq!(irq.eventfd().read().unwrap(), 1);
    }

    #[test]
    fn rng_gives_nothing_to_a_read_only_buffer() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(&[desc(BUF, 64, 0, 0)], 0).unwrap();
        let (mut rng, irq) = started(&mem, &vq);
        rng.process_queue(0);
        assert_eq!(vq.used().idx().load(), 1);
        assert_eq!(used(&vq, 0), (0, 0));
        assert!(read_buf(&mem, BUF, 64).iter().all(|&b| b == 0));
        assert_eq!(irq.status(), INT_VRING, "completed all the same");
    }

    #[test]
    fn rng_fills_only_the_writable_part_of_a_chain() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let chain = [
            desc(BUF, 16, NEXT, 1),
            desc(BUF + 0x100, 32, WRITE | NEXT, 2),
            desc(BUF + 0x200, 32, WRITE, 0),
        ];
        // Two chains: the three descriptors above, then one more.
        vq.add_desc_chains(&chain, 0).unwrap();
        vq.add_desc_chains(&[desc(BUF + 0x300, 8, WRITE, 0)], 3)
            .unwrap();
        let (mut rng, _irq) = started(&mem, &vq);
        rng.process_queue(0);
        assert_eq!(vq.used().idx().load(), 2);
        assert_eq!(used(&vq, 0), (0, 64));
        assert_eq!(used(&vq, 1), (3, 8));
        assert!(read_buf(&mem, BUF, 16).iter().all(|&b| b == 0));
        assert!(read_buf(&mem, BUF + 0x100, 32).iter().any(|&b| b != 0));
        assert!(read_buf(&mem, BUF + 0x200, 32).iter().any(|&b| b != 0));
    }

    #[test]
    fn rng_bounds_the_bytes_per_chain() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let chain = [
            desc(BUF, 0x18000, WRITE | NEXT, 1),
            desc(BUF + 0x18000, 0x100, WRITE, 0),
        ];
        vq.add_desc_chains(&chain, 0).unwrap();
        let (mut rng, _irq) = started(&mem, &vq);
        rng.process_queue(0);
        assert_eq!(used(&vq, 0), (0, MAX_BYTES_PER_CHAIN));
        let past = BUF + u64::from(MAX_BYTES_PER_CHAIN);
        assert!(read_buf(&mem, past, 0x8100).iter().all(|&b| b == 0));
    }

    #[test]
    fn rng_survives_buffers_outside_guest_memory() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let end = MEM_SIZE as u64;
        vq.add_desc_chains(&[desc(end + 0x1000, 64, WRITE, 0)], 0)
            .unwrap();
        // Straddles the end of memory: only what fits is written and reported.
        vq.add_desc_chains(&[desc(end - 16, 64, WRITE, 0)], 1)
            .unwrap();
        vq.add_desc_chains(&[desc(u64::MAX - 8, 64, WRITE, 0)], 2)
            .unwrap();
        // A head index past the descriptor table, then a good chain again.
        vq.add_desc_chains(&[desc(BUF, 8, WRITE, 0)], 3).unwrap();
        let avail = vq.avail_addr().0;
        mem.write_obj(0xffffu16, GuestAddress(avail + 4 + 3 * 2))
            .unwrap();
        mem.write_obj(3u16, GuestAddress(avail + 4 + 4 * 2))
            .unwrap();
        mem.write_obj(5u16, GuestAddress(avail + 2)).unwrap();
        let (mut rng, irq) = started(&mem, &vq);
        rng.process_queue(0);
        assert_eq!(vq.used().idx().load(), 4, "the bogus head is dropped");
        assert_eq!(used(&vq, 0), (0, 0));
        assert_eq!(used(&vq, 1), (1, 16));
        assert_eq!(used(&vq, 2), (2, 0));
        assert_eq!(used(&vq, 3), (3, 8));
        assert_eq!(irq.status(), INT_VRING);
    }

    #[test]
    fn rng_ignores_a_bogus_avail_index() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        let (mut rng, irq) = started(&mem, &vq);
        // More available entries than the queue has: refused, nothing consumed.
        mem.write_obj(100u16, GuestAddress(vq.avail_addr().0 + 2))
            .unwrap();
        rng.process_queue(0);
        assert_eq!(vq.used().idx().load(), 0);
        assert_eq!(irq.status(), 0);
    }

    #[test]
    fn rng_does_nothing_before_activation_or_after_reset() {
        let mem = memory();
        let vq = MockSplitQueue::new(&mem, 16);
        vq.add_desc_chains(&[desc(BUF, 64, WRITE, 0)], 0).unwrap();
        let mut rng = Rng::new();
        rng.process_queue(0);
        let (mut rng2, irq) = started(&mem, &vq);
        rng2.process_queue(1);
        rng2.process_queue(usize::MAX);
        rng2.reset();
        rng2.process_queue(0);
        assert_eq!(vq.used().idx().load(), 0);
        assert_eq!(irq.status(), 0);
    }

    #[test]
    fn rng_refuses_a_wrong_number_of_queues() {
        let mem = memory();
        let mut rng = Rng::new();
        assert!(rng.activate(mem.clone(), Vec::new(), interrupt()).is_err());
        let two = vec![Queue::new(16).unwrap(), Queue::new(16).unwrap()];
        assert!(rng.activate(mem, two, interrupt()).is_err());
    }

    #[test]
    fn rng_serves_a_driver_through_the_mmio_transport() {
        let mem = memory();
        let vq = MockSplitQueue::create(&mem, GuestAddress(0x1000), 16);
        vq.add_desc_chains(&[desc(BUF, 32, WRITE, 0)], 0).unwrap();
        let irq = interrupt();
        let mut t = MmioTransport::new(mem.clone(), Box::new(Rng::new()), irq.clone()).unwrap();
        let mut w = |offset: u64, value: u32| t.write(offset, &value.to_le_bytes());
        w(0x070, status::ACKNOWLEDGE);
        w(0x070, status::ACKNOWLEDGE | status::DRIVER);
        w(0x024, 1);
        w(0x020, 1); // VIRTIO_F_VERSION_1
        let negotiated = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        w(0x070, negotiated);
        w(0x030, 0);
        w(0x038, 16);
        for (low, addr) in [
            (0x080, vq.desc_table_addr()),
            (0x090, vq.avail_addr()),
            (0x0a0, vq.used_addr()),
        ] {
            w(low, addr.0 as u32);
            w(low + 4, (addr.0 >> 32) as u32);
        }
        w(0x044, 1);
        w(0x070, negotiated | status::DRIVER_OK);
        w(0x050, 0);
        assert!(t.is_activated());
        assert_eq!(t.queue_evts()[0].read().unwrap(), 1);
        t.process_queue(0);
        assert_eq!(used(&vq, 0), (0, 32));
        assert!(read_buf(&mem, BUF, 32).iter().any(|&b| b != 0));
        let mut isr = [0u8; 4];
        t.read(0x060, &mut isr);
        assert_eq!(u32::from_le_bytes(isr), INT_VRING);
    }
}
