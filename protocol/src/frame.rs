//! Frames: a `u32` big-endian body length, then that many bytes of JSON.

use super::MAX_FRAME_LEN;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{self, Read, Write};

/// A frame that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The transport failed (this includes read and write timeouts).
    #[error("frame transport failed")]
    Io(#[source] io::Error),
    /// The length prefix (or a body to send) exceeds the limit; nothing was allocated.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced (or serialized) body length.
        len: u64,
        /// The limit, [`MAX_FRAME_LEN`].
        max: u32,
    },
    /// The body is not the JSON expected.
    #[error("frame body is not valid JSON for this message")]
    Json(#[source] serde_json::Error),
    /// The peer closed the connection cleanly, between two frames.
    #[error("the peer closed the connection")]
    Eof,
    /// The peer closed the connection in the middle of a frame.
    #[error("the peer closed the connection mid-frame ({got} of {expected} bytes of the {part})")]
    Truncated {
        /// `"length prefix"` or `"body"`.
        part: &'static str,
        /// Bytes expected for that part.
        expected: u64,
        /// Bytes received before the end.
        got: u64,
    },
}

impl FrameError {
    /// Whether this is a read or write timeout of the transport.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FrameError::Io(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// Serializes `msg` and writes it as one frame (prefix and body in one write).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, msg).map_err(FrameError::Json)?;
    let len = buf.len() - 4;
    if len > MAX_FRAME_LEN as usize {
        return Err(FrameError::TooLarge {
            len: len as u64,
            max: MAX_FRAME_LEN,
        });
    }
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    w.write_all(&buf).map_err(FrameError::Io)?;
    w.flush().map_err(FrameError::Io)
}

/// Reads one frame and deserializes its body.
pub fn read_frame<R: Read, T: DeserializeOwned>(r: &mut R) -> Result<T, FrameError> {
    let body = read_frame_bytes(r)?;
    serde_json::from_slice(&body).map_err(FrameError::Json)
}

/// Reads one frame and returns its body unparsed.
///
/// The length is checked against [`MAX_FRAME_LEN`] before anything is allocated.
pub fn read_frame_bytes<R: Read>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    match read_full(r, &mut prefix)? {
        0 => return Err(FrameError::Eof),
        4 => {}
        got => {
            return Err(FrameError::Truncated {
                part: "length prefix",
                expected: 4,
                got: got as u64,
            })
        }
    }
    let len = u32::from_be_bytes(prefix);
    if len > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: len.into(),
            max: MAX_FRAME_LEN,
        });
    }
    let mut body = vec![0u8; len as usize];
    let got = read_full(r, &mut body)?;
    if got < body.len() {
        return Err(FrameError::Truncated {
            part: "body",
            expected: len.into(),
            got: got as u64,
        });
    }
    Ok(body)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<usize, FrameError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(filled)
}
