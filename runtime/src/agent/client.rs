//! [`AgentClient`]: one request connection to the agent.

use super::deadline::Deadline;
use super::hybrid::connect_port;
use super::transport::Transport;
use super::ClientError;
use husk_protocol::diag::{StreamGenerator, StreamHasher};
use husk_protocol::{
    read_frame, write_frame, Health, Hello, HelloReply, Request, RequestBody, Response,
    ResponseBody, SinkDigest, PROTOCOL_VERSION,
};
use std::io::{self, Read};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Chunk size of raw diagnostic transfers.
const CHUNK: usize = 64 << 10;

/// How long the client waits for the guest. Both are configurable; the defaults are
/// 5 s to connect (CONNECT and handshake together) and 30 s per request.
///
/// During raw diagnostic transfers `request` bounds each read or write, so long
/// transfers that keep moving do not time out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Limit of the `CONNECT` exchange and the handshake together.
    pub connect: Duration,
    /// Limit of each request, from sending it to reading its answer.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
        }
    }
}

/// A handshaken request connection to the agent, over husk's hybrid vsock socket by
/// default or any [`Transport`]. Requests are sent one at a time.
#[derive(Debug)]
pub struct AgentClient<S: Transport = UnixStream> {
    stream: S,
    pub(super) timeouts: Timeouts,
    next_id: u64,
    agent_version: String,
    broken: bool,
}

impl AgentClient<UnixStream> {
    /// Connects to the agent listening on guest vsock `port` (normally
    /// [`husk_protocol::AGENT_PORT`]) through the sandbox's hybrid vsock socket
    /// at `uds_path`, and does the handshake.
    pub fn connect(
        uds_path: &Path,
        port: u32,
        timeouts: Timeouts,
    ) -> Result<AgentClient, ClientError> {
        let deadline = Instant::now() + timeouts.connect;
        let stream = connect_port(uds_path, port, timeouts.connect)?;
        AgentClient::handshake(stream, deadline, timeouts)
    }
}

impl<S: Transport> AgentClient<S> {
    /// Does the handshake on a stream already connected to the agent's port, by
    /// `deadline`.
    pub fn handshake(
        mut stream: S,
        deadline: Instant,
        timeouts: Timeouts,
    ) -> Result<AgentClient<S>, ClientError> {
        let during = "handshake";
        let mut io = Deadline {
            stream: &mut stream,
            deadline,
        };
        let hello = Hello::new(format!("husk-runtime {}", env!("CARGO_PKG_VERSION")));
        write_frame(&mut io, &hello)
            .map_err(|e| ClientError::from_frame(e, during, timeouts.connect))?;
        let reply: HelloReply = read_frame(&mut io)
            .map_err(|e| ClientError::from_frame(e, during, timeouts.connect))?;
        let agent_version = match reply {
            HelloReply::HelloAck(ack) if ack.version == PROTOCOL_VERSION => ack.agent_version,
            HelloReply::HelloAck(ack) => {
                return Err(ClientError::VersionMismatch {
                    detail: format!(
                        "husk speaks protocol version {PROTOCOL_VERSION}, agent {} answered \
                         with version {}",
                        ack.agent_version, ack.version
                    ),
                })
            }
            HelloReply::Refused(e) if e.code == husk_protocol::ErrorCode::VersionMismatch => {
                return Err(ClientError::VersionMismatch { detail: e.message })
            }
            HelloReply::Refused(e) => return Err(ClientError::Refused(e.from_guest())),
        };
        Ok(AgentClient {
            stream,
            timeouts,
            next_id: 1,
            agent_version,
            broken: false,
        })
    }

    /// The agent's release version, from the handshake.
    pub fn agent_version(&self) -> &str {
        &self.agent_version
    }

    /// Sends a request and waits for its answer. An error answer is
    /// [`ClientError::Agent`]; any other error makes the connection unusable.
    pub fn request(&mut self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let id = self.send(body)?;
        self.answer(id, "the answer to a request")
    }

    /// The guest's health.
    pub fn health(&mut self) -> Result<Health, ClientError> {
        match self.request(RequestBody::Health)? {
            ResponseBody::Health(health) => Ok(health),
            other => Err(self.unexpected("health", &other)),
        }
    }

    /// Asks the agent to end the VM. A connection closed instead of answered counts
    /// as done: the VM may end before the answer leaves it.
    pub fn shutdown(mut self) -> Result<(), ClientError> {
        match self.request(RequestBody::Shutdown) {
            Ok(ResponseBody::Done) | Err(ClientError::Closed { .. }) => Ok(()),
            Err(ClientError::Io { source, .. })
                if source.kind() == io::ErrorKind::ConnectionReset =>
            {
                Ok(())
            }
            Ok(other) => Err(self.unexpected("shutdown", &other)),
            Err(e) => Err(e),
        }
    }

    /// Throughput diagnostic: sends exactly `bytes` bytes read from `data` and checks
    /// the agent's SHA-256 of them against the client's; gives back the digest.
    pub fn stream_sink<R: Read>(
        &mut self,
        bytes: u64,
        mut data: R,
    ) -> Result<SinkDigest, ClientError> {
        let id = self.send(RequestBody::StreamSink { bytes })?;
        self.expect_ready(id, "stream_sink")?;
        self.broken = true;
        let during = "stream_sink data";
        self.stream
            .set_write_timeout(Some(self.timeouts.request))
            .map_err(|e| ClientError::from_io(e, during, self.timeouts.request))?;
        let mut hasher = StreamHasher::new();
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < bytes {
            let want = buf
                .len()
                .min(usize::try_from(bytes - sent).unwrap_or(usize::MAX));
            let n = match data.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(ClientError::SourceShort {
                        expected: bytes,
                        got: sent,
                    })
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(ClientError::Io {
                        during: "reading stream_sink data",
                        source: e,
                    })
                }
            };
            hasher.update(&buf[..n]);
            self.stream
                .write_all(&buf[..n])
                .map_err(|e| ClientError::from_io(e, during, self.timeouts.request))?;
            sent += n as u64;
        }
        self.broken = false;
        let ours = hasher.finish();
        match self.answer(id, "the stream_sink digest")? {
            ResponseBody::SinkDigest(theirs) if theirs == ours => Ok(theirs),
            ResponseBody::SinkDigest(theirs) => Err(ClientError::DigestMismatch { ours, theirs }),
            other => Err(self.unexpected("stream_sink digest", &other)),
        }
    }

    /// Throughput diagnostic: has the agent send `bytes` bytes of the stream for
    /// `seed`, checks every byte against [`StreamGenerator`], gives back the count.
    pub fn stream_source(&mut self, bytes: u64, seed: u64) -> Result<u64, ClientError> {
        let id = self.send(RequestBody::StreamSource { bytes, seed })?;
        self.expect_ready(id, "stream_source")?;
        self.broken = true;
        let during = "stream_source data";
        let after = self.timeouts.request;
        self.stream
            .set_read_timeout(Some(after))
            .map_err(|e| ClientError::from_io(e, during, after))?;
        let mut generator = StreamGenerator::new(seed);
        let mut got = vec![0u8; CHUNK];
        let mut expected = vec![0u8; CHUNK];
        let mut received = 0u64;
        while received < bytes {
            let want = got
                .len()
                .min(usize::try_from(bytes - received).unwrap_or(usize::MAX));
            let n = match self.stream.read(&mut got[..want]) {
                Ok(0) => return Err(ClientError::Closed { during }),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::from_io(e, during, after)),
            };
            generator.fill(&mut expected[..n]);
            if let Some(i) = (0..n).find(|&i| got[i] != expected[i]) {
                return Err(ClientError::StreamMismatch {
                    offset: received + i as u64,
                });
            }
            received += n as u64;
        }
        self.broken = false;
        Ok(received)
    }

    /// Sends a request frame; gives back its id.
    pub(super) fn send(&mut self, body: RequestBody) -> Result<u64, ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        let id = self.next_id;
        self.next_id += 1;
        let mut io = Deadline {
            stream: &mut self.stream,
            deadline: Instant::now() + self.timeouts.request,
        };
        if let Err(e) = write_frame(&mut io, &Request { id, body }) {
            self.broken = true;
            return Err(ClientError::from_frame(
                e,
                "sending a request",
                self.timeouts.request,
            ));
        }
        Ok(id)
    }

    /// Reads the answer to request `id`, within the request timeout.
    pub(super) fn answer(
        &mut self,
        id: u64,
        during: &'static str,
    ) -> Result<ResponseBody, ClientError> {
        let after = self.timeouts.request;
        self.answer_by(id, during, Some(Instant::now() + after), after)
    }

    /// Reads the answer to request `id` by `deadline` (`None`: however long it takes);
    /// `after` is the limit reported if the deadline passes.
    pub(super) fn answer_by(
        &mut self,
        id: u64,
        during: &'static str,
        deadline: Option<Instant>,
        after: Duration,
    ) -> Result<ResponseBody, ClientError> {
        let read = match deadline {
            Some(deadline) => read_frame(&mut Deadline {
                stream: &mut self.stream,
                deadline,
            }),
            None => match self.stream.set_read_timeout(None) {
                Ok(()) => read_frame(&mut self.stream),
                Err(e) => Err(husk_protocol::FrameError::Io(e)),
            },
        };
        let response: Response = match read {
            Ok(response) => response,
            Err(e) => {
                self.broken = true;
                return Err(ClientError::from_frame(e, during, after));
            }
        };
        if response.id != id {
            self.broken = true;
            return Err(ClientError::IdMismatch {
                expected: id,
                got: response.id,
            });
        }
        response
            .result
            .map_err(|e| ClientError::Agent(e.from_guest()))
    }

    /// Reads the `Ready` answer that starts a raw transfer.
    fn expect_ready(&mut self, id: u64, during: &'static str) -> Result<(), ClientError> {
        match self.answer(id, during)? {
            ResponseBody::Ready => Ok(()),
            other => Err(self.unexpected(during, &other)),
        }
    }

    /// An answer of the wrong kind; the connection is given up.
    pub(super) fn unexpected(&mut self, during: &'static str, got: &ResponseBody) -> ClientError {
        self.broken = true;
        ClientError::Unexpected {
            during,
            detail: format!("{got:?}"),
        }
    }
}
