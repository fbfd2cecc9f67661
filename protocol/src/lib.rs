//! What husk's host and guest both speak, and the small helpers both sides need.
//!
//! The agent protocol (transport, framing, handshake and messages are described in
//! `docs/protocol.md`):
//!
//! - [`frame`]: length-prefixed JSON frames ([`write_frame`], [`read_frame`]).
//! - [`handshake`]: the first exchange on a connection ([`Hello`], [`HelloReply`]).
//! - [`messages`]: requests and responses ([`Request`], [`Response`]).
//! - [`error`]: errors the agent answers with ([`AgentError`], [`ErrorCode`]).
//! - [`stdio`]: the first frame of a stdio stream connection ([`StreamHello`]).
//! - [`network`]: the guest's network configuration, as the host sends it.
//! - [`diag`]: the throughput diagnostics' byte stream and digest.
//! - [`console`]: the lines the agent prints on the serial console that hosts wait for.
//! - [`features`]: what the agent applies, by name (`husk features`).
//!
//! Helpers both sides use: [`netlink`] (an rtnetlink client; feature `netlink`),
//! [`procfs`] (`/proc/<pid>/stat`), [`ratelimit`] (the token bucket that bounds log
//! lines), [`mac`] (MAC addresses as text) and [`error_chain()`].
//!
//! Neither side reaches into the other's internals: what both need lives here.

pub mod console;
pub mod diag;
pub mod error;
pub mod error_chain;
pub mod features;
pub mod frame;
pub mod handshake;
pub mod mac;
pub mod messages;
#[cfg(feature = "netlink")]
pub mod netlink;
pub mod network;
pub mod procfs;
pub mod ratelimit;
pub mod stdio;
pub mod text;

pub use error::{AgentError, ErrorCode};
pub use error_chain::error_chain;
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
