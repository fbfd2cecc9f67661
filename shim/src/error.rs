//! The shim's errors, and how each reaches containerd: a ttrpc status whose code
//! containerd maps to its own error kinds (not found, already exists, failed
//! precondition, not implemented, ...) and a message naming the problem.

use containerd_shim::protos::ttrpc::{self, Code};
use husk_runtime::error::{ErrorKind, RuntimeError};
use std::path::PathBuf;

/// Everything a Task API call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// containerd asked about a task this shim does not hold.
    #[error("task \"{0}\" does not exist in this shim")]
    NoSuchTask(String),
    /// containerd asked about an exec'd process the task does not have.
    #[error("exec process \"{exec_id}\" of task \"{id}\" does not exist")]
    NoSuchExec {
        /// The task.
        id: String,
        /// The exec id containerd named.
        exec_id: String,
    },
    /// The task exists already.
    #[error("task \"{0}\" already exists")]
    TaskExists(String),
    /// A Task API method husk does not implement yet.
    #[error("husk does not support {0} yet")]
    Unsupported(&'static str),
    /// The request cannot be served in the task's state.
    #[error("{0}")]
    Precondition(String),
    /// The process has exited already (containerd treats this as "not found").
    #[error("process of task \"{0}\" already finished")]
    Finished(String),
    /// A stdio path containerd gave cannot be used.
    #[error("stdio {path:?}: {message}")]
    Stdio {
        /// The path (or URI).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A rootfs mount failed.
    #[error("cannot mount {what} on {}: {source}", target.display())]
    Mount {
        /// Which mount (type and source).
        what: String,
        /// Where.
        target: PathBuf,
        /// The system call's error.
        #[source]
        source: nix::Error,
    },
    /// The rootfs could not be unmounted.
    #[error("cannot unmount {}: {source}", target.display())]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The system call's error.
        #[source]
        source: nix::Error,
    },
    /// The runtime library failed (state store, bundle, sandbox).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A request's value is out of range.
    #[error("{0}")]
    InvalidArgument(String),
    /// An Exec request's process spec is not a JSON OCI process.
    #[error("the exec's process spec is not valid JSON: {0}")]
    BadExecSpec(String),
    /// Something inside the shim failed (a thread could not start, ...).
    #[error("{0}")]
    Internal(String),
    /// The sandbox did not exit in time after it was killed.
    #[error("the sandbox process {pid} of task \"{id}\" did not exit within {secs} s")]
    ExitTimeout {
        /// The task.
        id: String,
        /// The sandbox process.
        pid: u32,
        /// How long the shim waited.
        secs: u64,
    },
}

impl ShimError {
    /// The ttrpc status code containerd sees for this error.
    pub fn code(&self) -> Code {
        match self {
            ShimError::NoSuchTask(_) | ShimError::NoSuchExec { .. } | ShimError::Finished(_) => {
                Code::NOT_FOUND
            }
            ShimError::TaskExists(_) => Code::ALREADY_EXISTS,
            ShimError::Unsupported(_) => Code::UNIMPLEMENTED,
            ShimError::Precondition(_) => Code::FAILED_PRECONDITION,
            ShimError::Stdio { .. } | ShimError::BadExecSpec(_) | ShimError::InvalidArgument(_) => {
                Code::INVALID_ARGUMENT
            }
            ShimError::Mount { .. }
            | ShimError::Unmount { .. }
            | ShimError::Internal(_)
            | ShimError::ExitTimeout { .. } => Code::INTERNAL,
            ShimError::Runtime(e) => runtime_code(e),
        }
    }
}

/// The ttrpc code of a runtime library error: its [`ErrorKind`], the same
/// classification the `husk` CLI reports by.
fn runtime_code(e: &RuntimeError) -> Code {
    match e.kind() {
        ErrorKind::NotFound => Code::NOT_FOUND,
        ErrorKind::AlreadyExists => Code::ALREADY_EXISTS,
        ErrorKind::InvalidArgument => Code::INVALID_ARGUMENT,
        ErrorKind::InvalidState => Code::FAILED_PRECONDITION,
        ErrorKind::NotSupported => Code::UNIMPLEMENTED,
        ErrorKind::Internal => Code::INTERNAL,
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(e: ShimError) -> Self {
        let message = husk_protocol::error_chain(&e);
        tracing::warn!("answering with an error: {message}");
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), message))
    }
}

/// The result of the shim's operations.
pub type Result<T, E = ShimError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: ShimError) -> (Code, String) {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn unsupported_methods_are_unimplemented_and_say_so() {
        let (code, msg) = status(ShimError::Unsupported("Pause"));
        assert_eq!(code, Code::UNIMPLEMENTED);
        assert_eq!(msg, "husk does not support Pause yet");
    }

    #[test]
    fn runtime_errors_keep_their_kind() {
        let cases = [
            (RuntimeError::NotFound("c".into()), Code::NOT_FOUND),
            (
                RuntimeError::AlreadyExists("c".into()),
                Code::ALREADY_EXISTS,
            ),
            (
                RuntimeError::InvalidId("a/b".into()),
                Code::INVALID_ARGUMENT,
            ),
            (
                RuntimeError::InvalidState("it has stopped".into()),
                Code::FAILED_PRECONDITION,
            ),
            (RuntimeError::SandboxReport("boom".into()), Code::INTERNAL),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let (got, msg) = status(ShimError::Runtime(e));
            assert_eq!(got, code, "{text}");
            assert_eq!(msg, text);
        }
    }

    #[test]
    fn finished_processes_read_as_not_found() {
        let (code, msg) = status(ShimError::Finished("c1".into()));
        assert_eq!(code, Code::NOT_FOUND);
        assert!(msg.contains("c1"), "{msg}");
    }

    /// Every verb's agent failure reaches containerd by the agent's own answer, the
    /// same kind the CLI reports (`husk_runtime::error::ErrorKind`).
    #[test]
    fn agent_failures_keep_the_agents_kind_for_every_verb() {
        use husk_protocol::{AgentError, ErrorCode};
        use husk_runtime::agent::ClientError;
        let refusal = |code| ClientError::Agent(AgentError::new(code, "no"));
        for action in [
            "start",
            "kill",
            "pause",
            "resume",
            "update",
            "list the processes of",
        ] {
            let cases = [
                (
                    refusal(ErrorCode::FailedPrecondition),
                    Code::FAILED_PRECONDITION,
                ),
                (refusal(ErrorCode::InvalidArgument), Code::INVALID_ARGUMENT),
                (refusal(ErrorCode::Unsupported), Code::UNIMPLEMENTED),
                (refusal(ErrorCode::NotFound), Code::NOT_FOUND),
                (refusal(ErrorCode::Internal), Code::INTERNAL),
                (ClientError::ConnectRefused { port: 1024 }, Code::INTERNAL),
            ];
            for (cause, code) in cases {
                let e = RuntimeError::agent(action, "c1", cause);
                let (got, msg) = status(ShimError::Runtime(e));
                assert_eq!(got, code, "{action}: {msg}");
                assert!(
                    msg.starts_with(&format!("cannot {action} container \"c1\": ")),
                    "{msg}"
                );
            }
        }
    }
}
