//! Frames between descriptor chains and the device's staging buffers.
//!
//! Everything here reads guest-controlled descriptors: lengths are bounded by the
//! staging buffer, addresses are checked by `vm-memory`, and a chain that breaks the
//! rules (a device-writable buffer in a transmit chain, a frame larger than
//! [`MAX_FRAME`], memory the guest does not have) is refused as a whole.

use virtio_queue::DescriptorChain;
use vm_memory::{Bytes, GuestMemoryMmap};

use super::tap::VNET_HDR_LEN;

/// The largest frame with its header: a 64 KiB segmentation-offload packet, its
/// Ethernet header and a VLAN tag (as Linux's `virtio_net` sizes its big receive
/// buffers).
pub const MAX_FRAME: usize = VNET_HDR_LEN + 65_550;

/// Why a chain could not carry a frame.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A transmit chain with a device-writable buffer.
    #[error("transmit chain has a device-writable buffer")]
    WritableInTx,
    /// A transmit chain with more than [`MAX_FRAME`] bytes.
    #[error("transmit chain holds more than {MAX_FRAME} bytes")]
    TooLong,
    /// A transmit chain shorter than the virtio-net header.
    #[error("transmit chain of {0} bytes is shorter than the virtio-net header")]
    TooShort(usize),
    /// A buffer outside guest memory.
    #[error("descriptor buffer at {0:#x} is outside guest memory")]
    BadAddress(u64),
    /// The receive chain's writable buffers cannot hold the frame.
    #[error("receive chain of {room} bytes cannot hold a {frame}-byte frame")]
    NoRoom {
        /// Writable bytes in the chain.
        room: usize,
        /// Size of the frame.
        frame: usize,
    },
}

/// Gathers the frame of a transmit chain into `buf` (at least [`MAX_FRAME`] bytes);
/// returns its length, header included.
pub fn read_tx_frame(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    buf: &mut [u8],
) -> Result<usize, FrameError> {
    let limit = buf.len().min(MAX_FRAME);
    let mut len = 0;
    for desc in chain {
        if desc.is_write_only() {
            return Err(FrameError::WritableInTx);
        }
        let part = desc.len() as usize;
        let end = len + part;
        if end > limit {
            return Err(FrameError::TooLong);
        }
        mem.read_slice(&mut buf[len..end], desc.addr())
            .map_err(|_| FrameError::BadAddress(desc.addr().0))?;
        len = end;
    }
    if len < VNET_HDR_LEN {
        return Err(FrameError::TooShort(len));
    }
    Ok(len)
}

/// Scatters `frame` (header included) over the writable buffers of a receive chain;
/// returns the bytes written (the used length). The chain must hold the whole frame:
/// without mergeable receive buffers the driver sizes its buffers for the offloads it
/// accepted, so a frame that does not fit is the driver's error.
pub fn write_rx_frame(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    frame: &[u8],
) -> Result<u32, FrameError> {
    // Check the room first, so that a frame is delivered whole or not at all.
    let mut bufs = Vec::new();
    let mut room = 0usize;
    for desc in chain.writable() {
        if room >= frame.len() {
            break;
        }
        room += desc.len() as usize;
        bufs.push((desc.addr(), desc.len() as usize));
    }
    if room < frame.len() {
        return Err(FrameError::NoRoom {
            room,
            frame: frame.len(),
        });
    }
    let mut done = 0;
    for (addr, len) in bufs {
        let part = len.min(frame.len() - done);
        mem.write_slice(&frame[done..done + part], addr)
            .map_err(|_| FrameError::BadAddress(addr.0))?;
        done += part;
    }
    // At most MAX_FRAME bytes: the staging buffer's size.
    Ok(u32::try_from(done).unwrap_or(u32::MAX))
}
