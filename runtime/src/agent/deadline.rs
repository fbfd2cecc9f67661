//! Reads and writes on a stream that must finish by a deadline.

use super::transport::Transport;
use std::io::{self, Read, Write};
use std::time::Instant;

/// A stream whose every read and write is limited to the time left until `deadline`,
/// so that a whole exchange, not each system call, is bounded.
pub(super) struct Deadline<'a, S: Transport> {
    pub stream: &'a mut S,
    pub deadline: Instant,
}

impl<S: Transport> Deadline<'_, S> {
    fn left(&self) -> io::Result<std::time::Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::ErrorKind::TimedOut.into())
        } else {
            Ok(left)
        }
    }
}

impl<S: Transport> Read for Deadline<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl<S: Transport> Write for Deadline<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Whether an I/O error is a socket timeout.
pub(super) fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
