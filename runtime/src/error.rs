//! The errors of the OCI runtime's library: one enum, one clear message each.
//!
//! Every message names the thing that is wrong (the container, the file and position,
//! the annotation) so that podman or containerd, which show the runtime's last error
//! line, show the real cause.

use std::path::PathBuf;

/// Everything a `husk` command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// No container of that id in the store.
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    /// A container of that id exists already.
    #[error("container \"{0}\" already exists")]
    AlreadyExists(String),
    /// The id does not follow runc's rule (`^[\w+-\.]+$`, not `.` or `..`).
    #[error("invalid container id {0:?}: ids are 1 to 1024 characters of A-Z a-z 0-9 _ + , - . and not \".\" or \"..\"")]
    InvalidId(String),
    /// The command does not apply to a container in this state.
    #[error("{0}")]
    InvalidState(String),
    /// `config.json` is not valid JSON or not a valid OCI spec.
    #[error("malformed {path}: {source}")]
    MalformedConfig {
        /// The file.
        path: PathBuf,
        /// serde's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The bundle or its spec is unusable (a missing rootfs, no process, ...).
    #[error("invalid bundle {bundle}: {message}")]
    InvalidBundle {
        /// The bundle directory.
        bundle: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A command-line argument is wrong (signal name, user, ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// An annotation has a value husk cannot use.
    #[error("annotation {name}={value:?}: {message}")]
    InvalidAnnotation {
        /// The annotation's key.
        name: String,
        /// Its value.
        value: String,
        /// Why it is refused.
        message: String,
    },
    /// The configuration file cannot be read or parsed.
    #[error("configuration {path}: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A state file in the store is unreadable.
    #[error("corrupt state {path}: {source}")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file-system or system-call operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What husk was doing, with the path.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The feature is recognised but not available in this version of husk.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// The sandbox part that would carry this out is not written yet.
    #[error("not implemented yet: {0}")]
    NotImplemented(String),
    /// An OCI hook is invalid or failed (create and start phases).
    #[error("hook: {0}")]
    Hook(#[from] crate::hooks::HookError),
    /// The sandbox process or the VM failed.
    #[error("sandbox: {0}")]
    Sandbox(String),
}

impl RuntimeError {
    /// An [`RuntimeError::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<nix::Error> for RuntimeError {
    fn from(e: nix::Error) -> Self {
        RuntimeError::io("system call", std::io::Error::from(e))
    }
}

/// The library's result type.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
