//! Errors the agent answers with.

use serde::{Deserialize, Serialize};

/// What kind of failure an [`AgentError`] reports.
///
/// On the wire: a snake_case string, e.g. `"unsupported"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The agent knows the request but does not implement it (yet).
    Unsupported,
    /// The container or process named does not exist.
    NotFound,
    /// The request is malformed or its arguments are invalid.
    InvalidArgument,
    /// The agent failed while serving a valid request.
    Internal,
    /// Client and agent speak different protocol versions.
    VersionMismatch,
    /// The agent serves too many connections; try again later.
    Busy,
    /// The container or process named exists already (e.g. a duplicate container ID).
    AlreadyExists,
    /// The request is valid but the target is not in a state that allows it (e.g.
    /// starting a container twice, signalling a process that exited, attaching a
    /// stream twice).
    FailedPrecondition,
}

/// An error answer from the agent: a code for programs, a message for people.
///
/// JSON: `{"code":"not_found","message":"no container \"c1\""}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({code:?})")]
pub struct AgentError {
    /// The kind of failure.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl AgentError {
    /// The error as a host shows it: the guest chose the message, so its control
    /// characters are escaped and its length bounded ([`crate::text::printable`]).
    pub fn from_guest(self) -> Self {
        AgentError {
            code: self.code,
            message: crate::text::printable(&self.message, crate::text::MAX_MESSAGE_CHARS),
        }
    }

    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AgentError {
            code,
            message: message.into(),
        }
    }
}
