//! What a hook can fail with.

use super::phase::Phase;
use std::path::PathBuf;
use std::process::ExitStatus;

/// What a hook can fail with; each names the phase, the hook's index and its path.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The spec wants an absolute `path`.
    #[error("{phase} hook {index}: path {path:?} is not absolute")]
    RelativePath {
        /// The phase.
        phase: Phase,
        /// The hook's index in its phase.
        index: usize,
        /// The path.
        path: PathBuf,
    },
    /// `timeout` must be more than zero.
    #[error("{phase} hook {index} ({path:?}): timeout {timeout} must be more than 0 seconds")]
    BadTimeout {
        /// The phase.
        phase: Phase,
        /// The hook's index in its phase.
        index: usize,
        /// The path.
        path: PathBuf,
        /// The timeout given.
        timeout: i64,
    },
    /// The program could not be started (or waited for).
    #[error("{phase} hook {index} ({path:?}): {context}")]
    Io {
        /// The phase.
        phase: Phase,
        /// The hook's index in its phase.
        index: usize,
        /// The path.
        path: PathBuf,
        /// What failed.
        context: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The hook ran past its timeout and was killed.
    #[error(
        "{phase} hook {index} ({path:?}) did not finish within {secs} s and was killed{output}"
    )]
    TimedOut {
        /// The phase.
        phase: Phase,
        /// The hook's index in its phase.
        index: usize,
        /// The path.
        path: PathBuf,
        /// Its timeout.
        secs: i64,
        /// `"; output: ..."` or nothing.
        output: String,
    },
    /// The hook exited with a non-zero status or died of a signal.
    #[error("{phase} hook {index} ({path:?}) failed: {status}{output}")]
    Failed {
        /// The phase.
        phase: Phase,
        /// The hook's index in its phase.
        index: usize,
        /// The path.
        path: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// `"; output: ..."` or nothing.
        output: String,
    },
}
