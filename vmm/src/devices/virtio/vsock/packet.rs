//! The virtio-vsock packet header (virtio 1.2, 5.10.6) and the checks every packet the
//! guest sends goes through.
//!
//! A packet is a 44-byte little-endian header followed by `len` payload bytes. On the
//! transmit queue both come from device-readable descriptors (the header may be split
//! across several); on the receive queue the device writes both into the writable
//! descriptors of one chain.

use std::io::{Read, Write};

use vm_memory::GuestMemoryMmap;

/// Size of the packet header.
pub const HDR_SIZE: usize = 44;
/// Largest payload accepted from the guest or sent to it in one packet.
pub const MAX_PAYLOAD: u32 = 64 * 1024;
/// `VIRTIO_VSOCK_TYPE_STREAM`, the only socket type the device supports.
pub const TYPE_STREAM: u16 = 1;

/// `VIRTIO_VSOCK_SHUTDOWN_F_RECEIVE`: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// `VIRTIO_VSOCK_SHUTDOWN_F_SEND`: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;
/// Both shutdown flags.
pub const SHUTDOWN_BOTH: u32 = SHUTDOWN_RCV | SHUTDOWN_SEND;

/// Packet operations (`VIRTIO_VSOCK_OP_*`).
pub mod op {
    /// Connection request.
    pub const REQUEST: u16 = 1;
    /// Connection accepted.
    pub const RESPONSE: u16 = 2;
    /// Connection reset (refused, or torn down).
    pub const RST: u16 = 3;
    /// The sender shuts down one or both directions.
    pub const SHUTDOWN: u16 = 4;
    /// Stream data.
    pub const RW: u16 = 5;
    /// The sender's credit (`buf_alloc`, `fwd_cnt`) changed.
    pub const CREDIT_UPDATE: u16 = 6;
    /// The sender asks for a credit update.
    pub const CREDIT_REQUEST: u16 = 7;
}

/// A packet header, host byte order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketHeader {
    /// Source context ID.
    pub src_cid: u64,
    /// Destination context ID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload length.
    pub len: u32,
    /// Socket type ([`TYPE_STREAM`]).
    pub type_: u16,
    /// Operation (see [`op`]).
    pub op: u16,
    /// Operation flags (shutdown flags for [`op::SHUTDOWN`]).
    pub flags: u32,
    /// The sender's receive buffer size for this connection.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer, wrapping.
    pub fwd_cnt: u32,
}

fn le_u64(b: &[u8; HDR_SIZE], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

fn le_u32(b: &[u8; HDR_SIZE], at: usize) -> u32 {
    let mut v = [0u8; 4];
    v.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(v)
}

fn le_u16(b: &[u8; HDR_SIZE], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl PacketHeader {
    /// Decodes the wire format.
    pub fn from_bytes(b: &[u8; HDR_SIZE]) -> Self {
        PacketHeader {
            src_cid: le_u64(b, 0),
            dst_cid: le_u64(b, 8),
            src_port: le_u32(b, 16),
            dst_port: le_u32(b, 20),
            len: le_u32(b, 24),
            type_: le_u16(b, 28),
            op: le_u16(b, 30),
            flags: le_u32(b, 32),
            buf_alloc: le_u32(b, 36),
            fwd_cnt: le_u32(b, 40),
        }
    }

    /// Encodes the wire format.
    pub fn to_bytes(&self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.type_.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

/// Why a packet from the guest was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// A descriptor of the chain is outside guest memory (or the chain is malformed).
    #[error("descriptor chain is not in guest memory")]
    BadChain,
    /// Fewer device-readable bytes than a header.
    #[error("{0} readable bytes, a header needs {HDR_SIZE}")]
    ShortHeader(usize),
    /// The header announces more than [`MAX_PAYLOAD`] bytes.
    #[error("payload length {0} exceeds {MAX_PAYLOAD}")]
    TooLong(u32),
    /// The header's length is not what the chain carries.
    #[error("header says {header} payload bytes, the chain has {actual}")]
    LenMismatch {
        /// `len` in the header.
        header: u32,
        /// Readable bytes after the header.
        actual: usize,
    },
    /// Not a stream packet.
    #[error("unsupported socket type {0}")]
    BadType(u16),
    /// The source is not the guest's CID.
    #[error("source CID {0} is not the guest's")]
    BadSrcCid(u64),
    /// The destination is not the host.
    #[error("destination CID {0} is not the host")]
    BadDstCid(u64),
}

/// A packet from the transmit queue whose header parsed; [`TxPacket::validate`] tells
/// whether it may be acted upon.
#[derive(Debug)]
pub struct TxPacket {
    /// The header.
    pub hdr: PacketHeader,
    /// Readable bytes after the header (the payload, if the header is honest).
    pub available: usize,
}

/// Reads the header of a transmit chain: `reader` covers the chain's device-readable
/// descriptors and is left at the start of the payload.
pub fn read_header<B: vm_memory::bitmap::BitmapSlice>(
    reader: &mut virtio_queue::Reader<'_, B>,
) -> Result<TxPacket, PacketError> {
    let readable = reader.available_bytes();
    if readable < HDR_SIZE {
        return Err(PacketError::ShortHeader(readable));
    }
    let mut raw = [0u8; HDR_SIZE];
    reader
        .read_exact(&mut raw)
        .map_err(|_| PacketError::BadChain)?;
    Ok(TxPacket {
        hdr: PacketHeader::from_bytes(&raw),
        available: reader.available_bytes(),
    })
}

impl TxPacket {
    /// Checks a guest packet: length bounded and matching the chain, stream type, from
    /// `guest_cid` to the host.
    pub fn validate(&self, guest_cid: u64) -> Result<(), PacketError> {
        let hdr = &self.hdr;
        if hdr.len > MAX_PAYLOAD {
            return Err(PacketError::TooLong(hdr.len));
        }
        if hdr.len as usize != self.available {
            return Err(PacketError::LenMismatch {
                header: hdr.len,
                actual: self.available,
            });
        }
        if hdr.type_ != TYPE_STREAM {
            return Err(PacketError::BadType(hdr.type_));
        }
        if hdr.src_cid != guest_cid {
            return Err(PacketError::BadSrcCid(hdr.src_cid));
        }
        if hdr.dst_cid != super::HOST_CID {
            return Err(PacketError::BadDstCid(hdr.dst_cid));
        }
        Ok(())
    }
}

/// Parses and validates one transmit chain; on success `payload` holds the payload.
/// The error carries the header when it could be read (to reset the connection it
/// names).
pub fn read_tx_packet(
    mem: &GuestMemoryMmap,
    chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
    guest_cid: u64,
    payload: &mut Vec<u8>,
) -> Result<PacketHeader, (Option<PacketHeader>, PacketError)> {
    let mut reader = chain
        .reader(mem)
        .map_err(|_| (None, PacketError::BadChain))?;
    let pkt = read_header(&mut reader).map_err(|e| (None, e))?;
    pkt.validate(guest_cid).map_err(|e| (Some(pkt.hdr), e))?;
    payload.clear();
    payload.resize(pkt.hdr.len as usize, 0);
    reader
        .read_exact(payload)
        .map_err(|_| (Some(pkt.hdr), PacketError::BadChain))?;
    Ok(pkt.hdr)
}

/// Writes a packet into the writable part of a receive chain; returns the bytes written
/// (the used length). The caller checked the chain has room for `HDR_SIZE +
/// payload.len()` bytes.
pub fn write_rx_packet<B: vm_memory::bitmap::BitmapSlice>(
    writer: &mut virtio_queue::Writer<'_, B>,
    hdr: &PacketHeader,
    payload: &[u8],
) -> u32 {
    let mut hdr = *hdr;
    hdr.len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    if writer.write_all(&hdr.to_bytes()).is_err() || writer.write_all(payload).is_err() {
        return u32::try_from(writer.bytes_written()).unwrap_or(0);
    }
    u32::try_from(HDR_SIZE + payload.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_bindings::bindings::virtio_ring::VRING_DESC_F_WRITE;
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};

    const GUEST_CID: u64 = 3;
    const BUF: u64 = 0x10_0000;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20_0000)]).unwrap()
    }

    fn desc(addr: u64, len: u32, flags: u16) -> RawDescriptor {
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    fn good_header(len: u32) -> PacketHeader {
        PacketHeader {
            src_cid: GUEST_CID,
            dst_cid: 2,
            src_port: 1000,
            dst_port: 5000,
            len,
            type_: TYPE_STREAM,
            op: op::RW,
            flags: 0,
            buf_alloc: 4096,
            fwd_cnt: 7,
        }
    }

    /// Builds one chain from `descs` (linked in order) and parses it.
    fn parse(
        mem: &GuestMemoryMmap,
        descs: &[RawDescriptor],
    ) -> Result<(PacketHeader, Vec<u8>), (Option<PacketHeader>, PacketError)> {
        let vq = MockSplitQueue::new(mem, 16);
        let chain = vq.build_desc_chain(descs).unwrap();
        let mut payload = Vec::new();
        read_tx_packet(mem, chain, GUEST_CID, &mut payload).map(|h| (h, payload))
    }

    #[test]
    fn header_round_trips() {
        let hdr = good_header(12);
        let bytes = hdr.to_bytes();
        assert_eq!(&bytes[0..8], &GUEST_CID.to_le_bytes());
        assert_eq!(&bytes[30..32], &op::RW.to_le_bytes());
        assert_eq!(PacketHeader::from_bytes(&bytes), hdr);
    }

    #[test]
    fn parses_a_good_packet() {
        let mem = memory();
        mem.write_slice(&good_header(5).to_bytes(), GuestAddress(BUF))
            .unwrap();
        mem.write_slice(b"hello", GuestAddress(BUF + 0x100))
            .unwrap();
        let (hdr, payload) = parse(
            &mem,
            &[desc(BUF, HDR_SIZE as u32, 0), desc(BUF + 0x100, 5, 0)],
        )
        .unwrap();
        assert_eq!(hdr, good_header(5));
        assert_eq!(payload, b"hello");
    }

    #[test]
    fn parses_a_header_split_across_descriptors() {
        let mem = memory();
        let raw = good_header(3).to_bytes();
        mem.write_slice(&raw[..10], GuestAddress(BUF)).unwrap();
        mem.write_slice(&raw[10..], GuestAddress(BUF + 0x100))
            .unwrap();
        mem.write_slice(b"abc", GuestAddress(BUF + 0x200)).unwrap();
        let (hdr, payload) = parse(
            &mem,
            &[
                desc(BUF, 10, 0),
                desc(BUF + 0x100, HDR_SIZE as u32 - 10, 0),
                desc(BUF + 0x200, 3, 0),
            ],
        )
        .unwrap();
        assert_eq!(hdr, good_header(3));
        assert_eq!(payload, b"abc");
        // Header and payload in one descriptor.
        mem.write_slice(&raw, GuestAddress(BUF)).unwrap();
        mem.write_slice(b"xyz", GuestAddress(BUF + HDR_SIZE as u64))
            .unwrap();
        let (_, payload) = parse(&mem, &[desc(BUF, HDR_SIZE as u32 + 3, 0)]).unwrap();
        assert_eq!(payload, b"xyz");
    }

    #[test]
    fn refuses_a_short_header() {
        let mem = memory();
        mem.write_slice(&good_header(0).to_bytes(), GuestAddress(BUF))
            .unwrap();
        assert_eq!(
            parse(&mem, &[desc(BUF, 43, 0)]).unwrap_err(),
            (None, PacketError::ShortHeader(43))
        );
        // Writable descriptors do not count as header bytes.
        let write = VRING_DESC_F_WRITE as u16;
        assert_eq!(
            parse(&mem, &[desc(BUF, 20, 0), desc(BUF + 20, 24, write)]).unwrap_err(),
            (None, PacketError::ShortHeader(20))
        );
    }

    #[test]
    fn refuses_bad_lengths() {
        let mem = memory();
        let too_long = good_header(MAX_PAYLOAD + 1);
        mem.write_slice(&too_long.to_bytes(), GuestAddress(BUF))
            .unwrap();
        let err = parse(
            &mem,
            &[
                desc(BUF, HDR_SIZE as u32, 0),
                desc(BUF + 0x100, MAX_PAYLOAD + 1, 0),
            ],
        )
        .unwrap_err();
        assert_eq!(err, (Some(too_long), PacketError::TooLong(MAX_PAYLOAD + 1)));
        // Says 10 bytes, carries 4; says 2, carries 4.
        for (len, actual) in [(10u32, 4usize), (2, 4)] {
            mem.write_slice(&good_header(len).to_bytes(), GuestAddress(BUF))
                .unwrap();
            let err = parse(
                &mem,
                &[desc(BUF, HDR_SIZE as u32, 0), desc(BUF + 0x100, 4, 0)],
            )
            .unwrap_err();
            assert_eq!(
                err.1,
                PacketError::LenMismatch {
                    header: len,
                    actual
                }
            );
            assert_eq!(err.0, Some(good_header(len)));
        }
    }

    #[test]
    fn refuses_wrong_cids_and_types() {
        let mem = memory();
        let cases = [
            (
                PacketHeader {
                    src_cid: 9,
                    ..good_header(0)
                },
                PacketError::BadSrcCid(9),
            ),
            (
                PacketHeader {
                    dst_cid: 1,
                    ..good_header(0)
                },
                PacketError::BadDstCid(1),
            ),
            (
                PacketHeader {
                    type_: 2,
                    ..good_header(0)
                },
                PacketError::BadType(2),
            ),
        ];
        for (hdr, want) in cases {
            mem.write_slice(&hdr.to_bytes(), GuestAddress(BUF)).unwrap();
            let err = parse(&mem, &[desc(BUF, HDR_SIZE as u32, 0)]).unwrap_err();
            assert_eq!(err, (Some(hdr), want));
        }
    }

    #[test]
    fn refuses_descriptors_outside_memory() {
        let mem = memory();
        let err = parse(&mem, &[desc(0x40_0000, HDR_SIZE as u32, 0)]).unwrap_err();
        assert_eq!(err, (None, PacketError::BadChain));
        let err = parse(&mem, &[desc(u64::MAX - 8, HDR_SIZE as u32, 0)]).unwrap_err();
        assert_eq!(err, (None, PacketError::BadChain));
    }
}
