//! The handshake: the first frame each way on a request connection.

use super::{AgentError, ErrorCode, PROTOCOL_VERSION};
use serde::{Deserialize, Serialize};

/// The client's first frame.
///
/// JSON: `{"version":1,"client":"husk-runtime 0.1.0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub version: u32,
    /// Who the client is, for the agent's log.
    pub client: String,
}

/// The agent's acceptance of a [`Hello`].
///
/// JSON (inside [`HelloReply`]): `{"type":"hello_ack","version":1,"agent_version":"0.1.0"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    /// The protocol version the agent will speak on this connection.
    pub version: u32,
    /// The agent's release version.
    pub agent_version: String,
}

/// The agent's answer to a [`Hello`]. After `Refused` the agent closes the connection.
///
/// JSON: `{"type":"hello_ack","version":1,"agent_version":"0.1.0"}` or
/// `{"type":"refused","code":"version_mismatch","message":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum HelloReply {
    /// The agent accepts the connection.
    HelloAck(HelloAck),
    /// The agent refuses the connection.
    Refused(AgentError),
}

impl Hello {
    /// A hello for this build's [`PROTOCOL_VERSION`].
    pub fn new(client: impl Into<String>) -> Self {
        Hello {
            version: PROTOCOL_VERSION,
            client: client.into(),
        }
    }
}

/// The agent's side of the handshake: accepts a hello of a version it speaks.
///
/// This agent speaks exactly [`PROTOCOL_VERSION`]; any other version is refused with
/// [`ErrorCode::VersionMismatch`] and a message naming both versions.
pub fn answer_hello(hello: &Hello, agent_version: &str) -> HelloReply {
    if hello.version == PROTOCOL_VERSION {
        HelloReply::HelloAck(HelloAck {
            version: PROTOCOL_VERSION,
            agent_version: agent_version.to_owned(),
        })
    } else {
        HelloReply::Refused(AgentError::new(
            ErrorCode::VersionMismatch,
            format!(
                "client speaks protocol version {}, agent {agent_version} speaks version {}",
                hello.version, PROTOCOL_VERSION
            ),
        ))
    }
}
