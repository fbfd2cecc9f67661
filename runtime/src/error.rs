//! The errors of the OCI runtime's library: one enum, one clear message each.
//!
//! Every message names the thing that is wrong (the container, the file and position,
//! the annotation) so that podman or containerd, which show the runtime's last error
//! line, show the real cause.

use crate::agent::ClientError;
use crate::sandbox::SandboxError;
use husk_protocol::ErrorCode;
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
    #[error("malformed {path}")]
    MalformedConfig {
        /// The file.
        path: PathBuf,
        /// serde's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The bundle or its spec is unusable (a missing rootfs, no process, ...).
    #[error("invalid bundle {bundle}")]
    InvalidBundle {
        /// The bundle directory.
        bundle: PathBuf,
        /// What is wrong.
        #[source]
        source: BundleError,
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
    /// The state root exists but is not husk's alone.
    #[error("state root {root} {problem}")]
    UnsafeRoot {
        /// The `--root` directory.
        root: PathBuf,
        /// What is wrong with it.
        problem: RootProblem,
    },
    /// A state file in the store is unreadable.
    #[error("corrupt state {path}")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file-system or system-call operation failed.
    #[error("{context}")]
    Io {
        /// What husk was doing, with the path.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Something husk hands another process could not be encoded.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// The feature is recognised but not available in this version of husk.
    #[error("not supported yet: {0}")]
    NotSupported(String),
    /// An OCI hook is invalid or failed (create and start phases).
    #[error("hook")]
    Hook(#[from] crate::hooks::error::HookError),
    /// The agent in the container's VM could not be reached, or refused or failed
    /// the request.
    #[error("cannot {action} container \"{container}\"")]
    Agent {
        /// What was asked (`start`, `kill`, ...).
        action: &'static str,
        /// The container.
        container: String,
        /// The client's error, with the guest's last words when it did not answer.
        #[source]
        source: Box<AgentFailure>,
    },
    /// The sandbox (its process, the VM, virtiofsd, the network) failed in this
    /// process.
    #[error("sandbox")]
    Sandbox(#[from] SandboxError),
    /// The sandbox process (or a relay process) reported a failure: its own error
    /// chain, as text, since it crosses a process boundary.
    #[error("sandbox: {0}")]
    SandboxReport(String),
    /// The pod's member directory could not be set up or taken down.
    #[error("the pod's share")]
    PodShare(#[source] crate::sandbox::pod::share::PodShareError),
    /// The container's network could not be taken out of the VM's reach.
    #[error("the container's network")]
    Network(#[source] crate::network::NetworkError),
    /// A killed process did not go away.
    #[error("process {pid} did not die within {waited:?} of SIGKILL")]
    NotDead {
        /// The process.
        pid: i32,
        /// How long husk waited.
        waited: std::time::Duration,
    },
}

/// What kind of failure a [`RuntimeError`] is: the one classification that the CLI
/// (its message) and the shim (its ttrpc code) both follow, so that every verb
/// reports a wrong state, a bad argument or an agent failure alike in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such container (or process).
    NotFound,
    /// It exists already.
    AlreadyExists,
    /// The request, the bundle or the configuration is wrong.
    InvalidArgument,
    /// The container is not in a state that allows the request.
    InvalidState,
    /// husk does not support what was asked.
    NotSupported,
    /// Anything else: the host, the sandbox or the guest failed.
    Internal,
}

impl RuntimeError {
    /// An [`RuntimeError::Io`] with a description of what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RuntimeError::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`RuntimeError::Agent`] for `action` on `container`.
    pub fn agent(action: &'static str, container: &str, cause: ClientError) -> Self {
        RuntimeError::Agent {
            action,
            container: container.to_string(),
            source: Box::new(AgentFailure {
                cause,
                last_words: String::new(),
            }),
        }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::NotFound(_) => ErrorKind::NotFound,
            RuntimeError::AlreadyExists(_) => ErrorKind::AlreadyExists,
            RuntimeError::InvalidId(_)
            | RuntimeError::MalformedConfig { .. }
            | RuntimeError::InvalidBundle { .. }
            | RuntimeError::InvalidArgument(_)
            | RuntimeError::InvalidAnnotation { .. }
            | RuntimeError::UnsafeRoot { .. }
            | RuntimeError::Hook(
                crate::hooks::error::HookError::RelativePath { .. }
                | crate::hooks::error::HookError::BadTimeout { .. },
            ) => ErrorKind::InvalidArgument,
            RuntimeError::InvalidState(_) => ErrorKind::InvalidState,
            RuntimeError::NotSupported(_) => ErrorKind::NotSupported,
            RuntimeError::Agent { source, .. } => source.kind(),
            RuntimeError::Config { .. }
            | RuntimeError::CorruptState { .. }
            | RuntimeError::Io { .. }
            | RuntimeError::Encode { .. }
            | RuntimeError::Hook(_)
            | RuntimeError::Sandbox(_)
            | RuntimeError::SandboxReport(_)
            | RuntimeError::PodShare(_)
            | RuntimeError::Network(_)
            | RuntimeError::NotDead { .. } => ErrorKind::Internal,
        }
    }
}

/// An agent client's failure, and what the guest console and the sandbox log said
/// last when the agent did not answer at all.
#[derive(Debug)]
pub struct AgentFailure {
    /// The client's error.
    pub cause: ClientError,
    /// `; guest console, last lines: ...` and the like (bounded, printable), or empty.
    pub last_words: String,
}

impl AgentFailure {
    /// The kind of failure: an agent's refusal keeps its code (a paused container is
    /// an invalid state, an unsupported field is not supported); a guest that cannot
    /// be reached or answers garbage is an internal failure.
    pub fn kind(&self) -> ErrorKind {
        let (ClientError::Agent(e) | ClientError::Refused(e)) = &self.cause else {
            return ErrorKind::Internal;
        };
        match e.code {
            ErrorCode::NotFound => ErrorKind::NotFound,
            ErrorCode::AlreadyExists => ErrorKind::AlreadyExists,
            ErrorCode::InvalidArgument => ErrorKind::InvalidArgument,
            ErrorCode::FailedPrecondition => ErrorKind::InvalidState,
            ErrorCode::Unsupported => ErrorKind::NotSupported,
            ErrorCode::Internal | ErrorCode::VersionMismatch | ErrorCode::Busy => {
                ErrorKind::Internal
            }
        }
    }
}

// The cause's message, then the guest's last words; the chain goes on with the
// cause's own source, so nothing is said twice.
impl std::fmt::Display for AgentFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.cause, self.last_words)
    }
}

impl std::error::Error for AgentFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

impl From<nix::Error> for RuntimeError {
    fn from(e: nix::Error) -> Self {
        RuntimeError::io("system call", std::io::Error::from(e))
    }
}

/// The library's result type.
pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What makes a bundle unusable.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// `config.json` has no `root`.
    #[error("config.json has no root")]
    NoRoot,
    /// `root.path` is not a directory.
    #[error("root.path {} does not exist or is not a directory", .0.display())]
    NoRootfs(PathBuf),
    /// `config.json` has no `process`.
    #[error("config.json has no process")]
    NoProcess,
    /// `process.args` is missing or empty.
    #[error("process.args is empty")]
    NoArgs,
    /// `process.cwd` is relative.
    #[error("process.cwd {} is not absolute", .0.display())]
    RelativeCwd(PathBuf),
    /// A mount cannot be carried into the guest.
    #[error(transparent)]
    Mount(#[from] crate::sandbox::share::ShareError),
    /// `linux.namespaces` asks for what the guest cannot honour.
    #[error(transparent)]
    Namespaces(#[from] crate::sandbox::guest_spec::namespaces::NamespaceError),
}

/// Why a state root is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootProblem {
    /// Another user owns it.
    #[error("is owned by uid {owner}, not by husk's user (uid {user})")]
    Owner {
        /// Its owner.
        owner: u32,
        /// The user running husk.
        user: u32,
    },
    /// Its group or others may write it.
    #[error("is writable by its group or by others (mode {mode:o}); make it 0700")]
    Writable {
        /// Its permission bits.
        mode: u32,
    },
}
