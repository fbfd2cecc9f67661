//! Stdio streams: dedicated connections carrying one process stream's raw bytes.
//!
//! A stdio connection starts with the same `CONNECT` and vsock port as a request
//! connection, but its first frame is a [`StreamHello`] instead of a `Hello`; every
//! byte after that frame is the stream's data, once the agent has accepted it with a
//! [`StreamHelloReply`].

use super::AgentError;
use serde::{Deserialize, Serialize};

/// Which of a process's streams a connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdioStream {
    /// Host to guest: the process's standard input.
    Stdin,
    /// Guest to host: standard output.
    Stdout,
    /// Guest to host: standard error.
    Stderr,
    /// Both ways: the process's terminal.
    Pty,
}

/// The first frame of a stdio connection.
///
/// JSON: `{"stream_hello":{"version":1,"container_id":"c1","exec_id":null,"stream":"stdout"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamHelloFrame {
    /// The only variant; the wrapper tells it apart from a request connection's `Hello`.
    StreamHello(StreamHello),
}

/// Which process stream a stdio connection carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHello {
    /// The protocol version the client speaks.
    pub version: u32,
    /// The container's ID.
    pub container_id: String,
    /// The exec'd process, or `null` for the container's own process.
    pub exec_id: Option<String>,
    /// The stream.
    pub stream: StdioStream,
}

/// The agent's answer to a [`StreamHello`]. After `Refused` the agent closes the
/// connection; after `Ok` the connection carries the stream's raw bytes.
///
/// JSON: `{"type":"ok"}` or `{"type":"refused","code":"not_found","message":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamHelloReply {
    /// The stream is attached; raw bytes follow.
    Ok,
    /// The stream cannot be attached.
    Refused(AgentError),
}
