//! Serving one connection: the handshake, then requests until the client leaves.

use super::{diag, Context};
use crate::container::relay;
use crate::procfs;
use husk_protocol::console::VERSION;
use husk_protocol::handshake::answer_hello;
use husk_protocol::{
    read_frame_bytes, write_frame, AgentError, ErrorCode, FrameError, Health, Hello, HelloReply,
    Request, RequestBody, Response, ResponseBody, StreamHello, StreamHelloFrame, StreamHelloReply,
    PROTOCOL_VERSION,
};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

/// A connection the server serves: a byte stream that can be duplicated (a terminal
/// stream is relayed both ways at once) and shut down (to send end of file).
pub trait Connection: Read + Write + Send + Sized {
    /// A second handle on the same connection.
    fn try_clone(&self) -> io::Result<Self>;
    /// Shuts down one or both directions.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;
}

impl Connection for UnixStream {
    fn try_clone(&self) -> io::Result<Self> {
        UnixStream::try_clone(self)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        UnixStream::shutdown(self, how)
    }
}

impl Connection for vsock::VsockStream {
    fn try_clone(&self) -> io::Result<Self> {
        vsock::VsockStream::try_clone(self)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        vsock::VsockStream::shutdown(self, how)
    }
}

/// Why a connection ended other than by the client closing it between requests.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Reading or writing a frame failed, or the client sent a frame too large.
    #[error("framing error")]
    Frame(#[source] FrameError),
    /// The first frame was neither a hello nor a stdio stream hello.
    #[error("the first frame is not a hello")]
    BadHello(#[source] serde_json::Error),
    /// The client speaks another protocol version.
    #[error("client {client:?} speaks protocol version {version}, the agent {PROTOCOL_VERSION}")]
    VersionMismatch {
        /// The client's name.
        client: String,
        /// The client's version.
        version: u32,
    },
    /// A request frame did not parse.
    #[error("malformed request (id {id})")]
    BadRequest {
        /// The request's id if it could be read, else 0.
        id: u64,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The client ended a `stream_sink` early.
    #[error("stream_sink: the client closed after {got} of {expected} bytes")]
    StreamTruncated {
        /// Bytes announced.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// Raw stream bytes could not be read or written.
    #[error("raw stream transfer failed")]
    Stream(#[source] std::io::Error),
    /// A stdio stream's relay failed.
    #[error("stdio relay of {stream} failed")]
    Relay {
        /// Which stream, in words.
        stream: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> Self {
        ConnError::Frame(e)
    }
}

/// Serves one connection until the client closes it (`Ok`) or it fails.
///
/// Never panics on client input: malformed frames are answered with an
/// `invalid_argument` error when possible, then the connection is closed.
pub fn handle_connection<S: Connection>(mut stream: S, ctx: &Context) -> Result<(), ConnError> {
    let first = match read_frame_bytes(&mut stream) {
        Ok(first) => first,
        Err(FrameError::Eof) => return Ok(()),
        Err(e) => return Err(refuse_frame(&mut stream, e)),
    };
    let hello: Hello = match serde_json::from_slice(&first) {
        Ok(hello) => hello,
        Err(e) => {
            if let Ok(StreamHelloFrame::StreamHello(hello)) = serde_json::from_slice(&first) {
                return serve_stream(stream, ctx, &hello);
            }
            let refused = HelloReply::Refused(AgentError::new(
                ErrorCode::InvalidArgument,
                format!("the first frame must be a hello: {e}"),
            ));
            write_frame(&mut stream, &refused)?;
            return Err(ConnError::BadHello(e));
        }
    };
    let reply = answer_hello(&hello, VERSION);
    write_frame(&mut stream, &reply)?;
    if let HelloReply::Refused(_) = reply {
        return Err(ConnError::VersionMismatch {
            client: hello.client,
            version: hello.version,
        });
    }
    loop {
        let bytes = match read_frame_bytes(&mut stream) {
            Ok(bytes) => bytes,
            Err(FrameError::Eof) => return Ok(()),
            Err(e) => return Err(refuse_frame(&mut stream, e)),
        };
        let request: Request = match serde_json::from_slice(&bytes) {
            Ok(request) => request,
            Err(source) => {
                let id = request_id(&bytes);
                let answer = Response {
                    id,
                    result: Err(AgentError::new(
                        ErrorCode::InvalidArgument,
                        format!("malformed request: {source}"),
                    )),
                };
                write_frame(&mut stream, &answer)?;
                return Err(ConnError::BadRequest { id, source });
            }
        };
        serve_request(&mut stream, ctx, request)?;
    }
}

/// Answers a frame that cannot be read with an error if the stream still takes
/// writes, and gives back the error to end the connection with.
fn refuse_frame<S: Write>(stream: &mut S, e: FrameError) -> ConnError {
    if let FrameError::TooLarge { len, max } = e {
        let answer = Response {
            id: 0,
            result: Err(AgentError::new(
                ErrorCode::InvalidArgument,
                format!("frame of {len} bytes exceeds the limit of {max} bytes"),
            )),
        };
        let _ = write_frame(stream, &answer);
    }
    ConnError::Frame(e)
}

/// The `id` of a request that does not parse as a whole, or 0.
fn request_id(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("id")?.as_u64())
        .unwrap_or(0)
}

/// Serves one request, raw diagnostic bytes included.
fn serve_request<S: Read + Write>(
    stream: &mut S,
    ctx: &Context,
    request: Request,
) -> Result<(), ConnError> {
    let id = request.id;
    let answer = |result| Response { id, result };
    match request.body {
        RequestBody::Version => write_frame(
            stream,
            &answer(Ok(ResponseBody::Version {
                protocol_version: PROTOCOL_VERSION,
                agent_version: VERSION.to_owned(),
            })),
        )?,
        RequestBody::Health => write_frame(stream, &answer(health(ctx)))?,
        RequestBody::Shutdown => {
            write_frame(stream, &answer(Ok(ResponseBody::Done)))?;
            ctx.log.log("shutdown requested by the host");
            (ctx.on_shutdown)();
        }
        RequestBody::StreamSink { bytes } => {
            write_frame(stream, &answer(Ok(ResponseBody::Ready)))?;
            let digest = diag::sink(stream, bytes)?;
            write_frame(stream, &answer(Ok(ResponseBody::SinkDigest(digest))))?;
        }
        RequestBody::StreamSource { bytes, seed } => {
            write_frame(stream, &answer(Ok(ResponseBody::Ready)))?;
            diag::source(stream, bytes, seed)?;
        }
        RequestBody::ConfigureNetwork { network } => {
            let result = crate::network::configure(&network).map(|()| ResponseBody::Done);
            if result.is_ok() {
                let names: Vec<&str> = network.interfaces.iter().map(|i| i.name.as_str()).collect();
                ctx.log
                    .log(&format!("network configured: {}", names.join(", ")));
            }
            write_frame(stream, &answer(result))?
        }
        body => {
            let name = body.name();
            let result = ctx
                .containers
                .serve(body, &ctx.proc_root)
                .unwrap_or_else(|| {
                    Err(AgentError::new(
                        ErrorCode::Internal,
                        format!("{name} is not a container request"),
                    ))
                });
            write_frame(stream, &answer(result))?
        }
    }
    Ok(())
}

/// Serves a stdio stream connection: attaches the stream, answers, relays.
fn serve_stream<S: Connection>(
    mut stream: S,
    ctx: &Context,
    hello: &StreamHello,
) -> Result<(), ConnError> {
    let attached = if hello.version == PROTOCOL_VERSION {
        ctx.containers.attach(hello)
    } else {
        Err(AgentError::new(
            ErrorCode::VersionMismatch,
            format!(
                "client speaks protocol version {}, agent {VERSION} speaks version \
                 {PROTOCOL_VERSION}",
                hello.version
            ),
        ))
    };
    let attached = match attached {
        Ok(attached) => attached,
        Err(refusal) => {
            write_frame(&mut stream, &StreamHelloReply::Refused(refusal))?;
            return Ok(());
        }
    };
    write_frame(&mut stream, &StreamHelloReply::Ok)?;
    relay::relay(stream, attached).map_err(|source| ConnError::Relay {
        stream: format!(
            "{:?} of {}{}",
            hello.stream,
            hello.container_id,
            hello
                .exec_id
                .as_deref()
                .map_or(String::new(), |e| format!("/{e}"))
        )
        .to_lowercase(),
        source,
    })
}

/// The guest's health from `/proc`.
fn health(ctx: &Context) -> Result<ResponseBody, AgentError> {
    let root = ctx.proc_root.as_path();
    let read = || -> std::io::Result<Health> {
        let meminfo = std::fs::read_to_string(root.join("meminfo"))?;
        let mem = |key| {
            procfs::parse_meminfo_kib(&meminfo, key).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("no {key} in meminfo"),
                )
            })
        };
        Ok(Health {
            uptime_ms: procfs::read_parsed(root, "uptime", procfs::parse_uptime_ms)?,
            load_avg: procfs::read_parsed(root, "loadavg", procfs::parse_loadavg)?,
            mem_total_kib: mem("MemTotal")?,
            mem_available_kib: mem("MemAvailable")?,
            connections: ctx.connections(),
        })
    };
    read().map(ResponseBody::Health).map_err(|e| {
        AgentError::new(
            ErrorCode::Internal,
            format!("cannot read guest state from {}: {e}", root.display()),
        )
    })
}
