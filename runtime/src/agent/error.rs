//! What can go wrong talking to the agent.

use husk_protocol::{AgentError, FrameError, SinkDigest};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// An agent client failure. Every variant but [`ClientError::Agent`] leaves the
/// connection unusable.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The sandbox's vsock socket does not exist.
    #[error("agent socket {} does not exist: is the sandbox running?", path.display())]
    SocketMissing {
        /// The socket path.
        path: PathBuf,
        /// The `connect(2)` error.
        #[source]
        source: io::Error,
    },
    /// The sandbox's vsock socket exists but does not take connections.
    #[error("cannot connect to agent socket {}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The `connect(2)` error.
        #[source]
        source: io::Error,
    },
    /// The VMM closed the connection after `CONNECT`: no guest listener.
    #[error("nothing listens on guest port {port} — is the agent running?")]
    ConnectRefused {
        /// The guest vsock port.
        port: u32,
    },
    /// The guest did not answer in time.
    #[error("the guest did not answer within {} s ({during})", after.as_secs_f64())]
    Timeout {
        /// What was waited for.
        during: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// Client and agent speak different protocol versions.
    #[error("protocol version mismatch: {detail}")]
    VersionMismatch {
        /// Both versions, in words.
        detail: String,
    },
    /// The agent refused the connection for another reason (e.g. too many connections).
    #[error("the agent refused the connection: {0}")]
    Refused(AgentError),
    /// The agent answered a request with an error; the connection remains usable.
    #[error("the agent answered with an error: {0}")]
    Agent(AgentError),
    /// The agent (or the VMM) closed the connection.
    #[error("the agent closed the connection ({during})")]
    Closed {
        /// What was waited for.
        during: &'static str,
    },
    /// A frame from the agent could not be read (too large, cut, not the JSON expected).
    #[error("malformed reply from the agent ({during})")]
    Malformed {
        /// What was waited for.
        during: &'static str,
        /// The framing error.
        #[source]
        source: FrameError,
    },
    /// A well-formed but unexpected reply.
    #[error("unexpected reply from the agent ({during}): {detail}")]
    Unexpected {
        /// What was waited for.
        during: &'static str,
        /// What came instead.
        detail: String,
    },
    /// The response answers another request.
    #[error("the agent answered request {got} while husk waited for request {expected}")]
    IdMismatch {
        /// The id sent.
        expected: u64,
        /// The id received.
        got: u64,
    },
    /// The transport failed.
    #[error("vsock connection failed ({during})")]
    Io {
        /// What was being done.
        during: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The data given to `stream_sink` ended before the announced length.
    #[error("stream_sink: the data ended after {got} of {expected} bytes")]
    SourceShort {
        /// Bytes announced.
        expected: u64,
        /// Bytes available.
        got: u64,
    },
    /// The agent's digest of a `stream_sink` differs from the client's.
    #[error("stream_sink: the agent read {theirs:?}, husk sent {ours:?}")]
    DigestMismatch {
        /// What was sent.
        ours: SinkDigest,
        /// What the agent received.
        theirs: SinkDigest,
    },
    /// A `stream_source` byte differs from the generator's.
    #[error("stream_source: byte {offset} differs from the expected stream")]
    StreamMismatch {
        /// The first differing byte's offset.
        offset: u64,
    },
    /// An earlier error left the connection in an unknown state.
    #[error("the connection to the agent is unusable after an earlier error")]
    Broken,
}

impl ClientError {
    /// Maps a frame error met while waiting for `during`.
    pub(super) fn from_frame(e: FrameError, during: &'static str, after: Duration) -> Self {
        match e {
            e if e.is_timeout() => ClientError::Timeout { during, after },
            FrameError::Eof => ClientError::Closed { during },
            FrameError::Io(source) => ClientError::from_io(source, during, after),
            e => ClientError::Malformed { during, source: e },
        }
    }

    /// Maps a transport error met while doing `during`.
    pub(super) fn from_io(e: io::Error, during: &'static str, after: Duration) -> Self {
        if super::deadline::is_timeout(&e) {
            ClientError::Timeout { during, after }
        } else {
            ClientError::Io { during, source: e }
        }
    }
}
