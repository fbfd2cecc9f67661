//! What the agent client talks over: a byte stream with settable timeouts. husk's own
//! VMM gives a unix stream through its hybrid vsock socket; other VMMs (QEMU with
//! vhost-vsock, in the benchmarks) give an `AF_VSOCK` stream.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// A connected stream to the agent.
pub trait Transport: Read + Write + Send + std::fmt::Debug {
    /// Bounds each following read (`None`: block).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Bounds each following write (`None`: block).
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Transport for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
}
