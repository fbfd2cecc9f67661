//! The throughput diagnostics' byte stream (`stream_source`) and digest
//! (`stream_sink`).

use sha2::{Digest, Sha256};

/// The deterministic pseudo-random byte stream of `stream_source`.
///
/// xorshift64* (Vigna): the state starts at `seed` (a seed of 0 is replaced by
/// `0x9E37_79B9_7F4A_7C15`, since xorshift's state must not be 0); each step does
/// `x ^= x >> 12; x ^= x << 25; x ^= x >> 27` and outputs
/// `x * 0x2545_F491_4F6C_DD1D` (wrapping), written as 8 little-endian bytes. The stream
/// is the concatenation of the outputs, cut at the requested length.
#[derive(Debug, Clone)]
pub struct StreamGenerator {
    state: u64,
    /// Output bytes of the current word not handed out yet: `word[8 - left..]`.
    word: [u8; 8],
    left: usize,
}

/// The stream as an endless reader (`.take(n)` for `n` bytes of it).
impl std::io::Read for StreamGenerator {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.fill(buf);
        Ok(buf.len())
    }
}

impl StreamGenerator {
    /// A generator at the start of the stream for `seed`.
    pub fn new(seed: u64) -> Self {
        StreamGenerator {
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
            word: [0; 8],
            left: 0,
        }
    }

    /// The next 64-bit output.
    fn next_word(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Fills `buf` with the next bytes of the stream.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut pos = 0;
        while pos < buf.len() {
            if self.left == 0 {
                let rest = &mut buf[pos..];
                if rest.len() >= 8 {
                    // Fast path: whole words straight into the buffer.
                    let whole = rest.len() / 8 * 8;
                    for chunk in rest[..whole].chunks_exact_mut(8) {
                        chunk.copy_from_slice(&self.next_word().to_le_bytes());
                    }
                    pos += whole;
                    continue;
                }
                self.word = self.next_word().to_le_bytes();
                self.left = 8;
            }
            let take = self.left.min(buf.len() - pos);
            let start = 8 - self.left;
            buf[pos..pos + take].copy_from_slice(&self.word[start..start + take]);
            self.left -= take;
            pos += take;
        }
    }
}

/// SHA-256 of a byte stream, with its length: what `stream_sink` reports.
#[derive(Debug, Clone, Default)]
pub struct StreamHasher {
    hasher: Sha256,
    bytes: u64,
}

impl StreamHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.hasher.update(data);
        self.bytes += data.len() as u64;
    }

    /// The length and lowercase hex SHA-256 of everything added.
    pub fn finish(self) -> super::SinkDigest {
        let digest = self.hasher.finalize();
        let sha256 = digest.iter().map(|b| format!("{b:02x}")).collect();
        super::SinkDigest {
            bytes: self.bytes,
            sha256,
        }
    }
}
