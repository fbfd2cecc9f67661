//! Stdio stream connections: a process's stdin, stdout, stderr or terminal as a raw
//! byte stream.

use super::deadline::Deadline;
use super::hybrid::connect_port;
use super::transport::Transport;
use super::ClientError;
use husk_protocol::{
    read_frame, write_frame, ErrorCode, StdioStream, StreamHello, StreamHelloFrame,
    StreamHelloReply, PROTOCOL_VERSION,
};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Which process stream to attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamTarget<'a> {
    /// The container.
    pub container_id: &'a str,
    /// The exec'd process, or `None` for the container's own.
    pub exec_id: Option<&'a str>,
    /// The stream.
    pub stream: StdioStream,
}

/// Opens a stdio stream through the sandbox's hybrid vsock socket at `uds_path` to
/// the agent's `port`, within `timeout` (`CONNECT` and stream hello together).
///
/// The stream given back has no timeouts: stdout and stderr are read until end of
/// file (all output, then the agent shuts the connection down); stdin is written and
/// then shut down for writing (`shutdown(Write)`) to send end of file; a `pty` stream
/// goes both ways and ends when the terminal has no process left.
pub fn open_stream(
    uds_path: &Path,
    port: u32,
    target: StreamTarget<'_>,
    timeout: Duration,
) -> Result<UnixStream, ClientError> {
    let deadline = Instant::now() + timeout;
    let stream = connect_port(uds_path, port, timeout)?;
    stream_hello(stream, target, deadline, timeout)
}

/// Does the stream hello on a stream already connected to the agent's port, by
/// `deadline` (`timeout` is reported if it passes); clears the stream's timeouts.
pub fn stream_hello<S: Transport>(
    mut stream: S,
    target: StreamTarget<'_>,
    deadline: Instant,
    timeout: Duration,
) -> Result<S, ClientError> {
    let during = "stream hello";
    let mut io = Deadline {
        stream: &mut stream,
        deadline,
    };
    let hello = StreamHelloFrame::StreamHello(StreamHello {
        version: PROTOCOL_VERSION,
        container_id: target.container_id.to_owned(),
        exec_id: target.exec_id.map(str::to_owned),
        stream: target.stream,
    });
    write_frame(&mut io, &hello).map_err(|e| ClientError::from_frame(e, during, timeout))?;
    let reply: StreamHelloReply =
        read_frame(&mut io).map_err(|e| ClientError::from_frame(e, during, timeout))?;
    match reply {
        StreamHelloReply::Ok => {}
        StreamHelloReply::Refused(e) if e.code == ErrorCode::VersionMismatch => {
            return Err(ClientError::VersionMismatch { detail: e.message })
        }
        StreamHelloReply::Refused(e) => return Err(ClientError::Refused(e.from_guest())),
    }
    let clear = |e| ClientError::from_io(e, during, timeout);
    stream.set_read_timeout(None).map_err(clear)?;
    stream.set_write_timeout(None).map_err(clear)?;
    Ok(stream)
}
