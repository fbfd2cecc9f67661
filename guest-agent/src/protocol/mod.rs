//! The host/guest protocol, shared by the agent and the host runtime.
//!
//! Transport, framing, handshake and messages are described in `docs/protocol.md`;
//! this module holds the types and the framing code both sides use.
//!
//! - [`frame`]: length-prefixed JSON frames ([`write_frame`], [`read_frame`]).
//! - [`handshake`]: the first exchange on a connection ([`Hello`], [`HelloReply`]).
//! - [`messages`]: requests and responses ([`Request`], [`Response`]).
//! - [`error`]: errors the agent answers with ([`AgentError`], [`ErrorCode`]).
//! - [`stdio`]: the first frame of a stdio stream connection ([`StreamHello`]).
//! - [`diag`]: the throughput diagnostics' byte stream and digest.

pub mod diag;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod messages;
pub mod network;
pub mod stdio;

pub use error::{AgentError, ErrorCode};
pub use frame::{read_frame, read_frame_bytes, write_frame, FrameError};
pub use handshake::{Hello, HelloAck, HelloReply};
pub use messages::{
    CgroupStats, ContainerStats, ExitStatus, Health, Request, RequestBody, Response, ResponseBody,
    SinkDigest,
};
pub use stdio::{StdioStream, StreamHello, StreamHelloFrame, StreamHelloReply};

/// The protocol version this build speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 2;

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 1024;

/// The largest frame body either side accepts or sends, in bytes (4 MiB).
pub const MAX_FRAME_LEN: u32 = 4 << 20;

#[cfg(test)]
mod tests;
