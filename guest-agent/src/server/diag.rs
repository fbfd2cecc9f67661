//! Serving the throughput diagnostics.

use super::ConnError;
use husk_protocol::diag::{StreamGenerator, StreamHasher};
use husk_protocol::SinkDigest;
use std::io::{Read, Write};

/// Chunk size of raw transfers.
const CHUNK: usize = 64 << 10;

/// Reads exactly `bytes` raw bytes and digests them.
pub(super) fn sink<R: Read>(r: &mut R, bytes: u64) -> Result<SinkDigest, ConnError> {
    let mut hasher = StreamHasher::new();
    let mut buf = vec![0u8; CHUNK.min(bytes as usize).max(1)];
    let mut left = bytes;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        match r.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(ConnError::StreamTruncated {
                    expected: bytes,
                    got: bytes - left,
                })
            }
            Ok(n) => {
                hasher.update(&buf[..n]);
                left -= n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ConnError::Stream(e)),
        }
    }
    Ok(hasher.finish())
}

/// Writes `bytes` bytes of the stream for `seed`.
pub(super) fn source<W: Write>(w: &mut W, bytes: u64, seed: u64) -> Result<(), ConnError> {
    let mut generator = StreamGenerator::new(seed);
    let mut buf = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        generator.fill(&mut buf[..n]);
        w.write_all(&buf[..n]).map_err(ConnError::Stream)?;
        left -= n as u64;
    }
    w.flush().map_err(ConnError::Stream)
}
