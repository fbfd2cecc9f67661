//! The OCI runtime as a library, one module per lifecycle verb (after youki's
//! libcontainer). The `husk` CLI ([`crate::commands`]) and the containerd shim are
//! thin front ends over it: they turn their requests into these typed options and
//! these errors into their own (a message and exit status 1; a ttrpc code, by
//! [`crate::error::ErrorKind`]).
//!
//! Each verb takes the container's lock, reads its state, asks its
//! [`Status`](crate::state::Status) whether the verb applies (`can_start`,
//! `can_kill`, ...) and refuses with [`RuntimeError::InvalidState`](crate::error::RuntimeError::InvalidState)
//! if not, then acts through [`crate::sandbox`].
//!
//! | verb | what it does |
//! |---|---|
//! | [`create`] | the sandbox booted and the container created in it, hooks run (and `run`) |
//! | [`start`] | the created container's process runs |
//! | [`state`] | the container and its status as every reader sees them |
//! | [`kill`] | a [`Signal`] to the container's init process |
//! | [`delete`] | the sandbox and the state go |
//! | [`exec`] | another process in the container |
//! | [`pause`] | the container's cgroup frozen and thawed (`pause`, `resume`) |
//! | [`update`] | new `linux.resources` for the container's cgroup |
//! | [`events`] | runc's stats events, once or streamed, and OOM events |
//! | [`ps`] | the container's processes, as guest PIDs |

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod kill;
pub mod pause;
pub mod ps;
pub mod start;
pub mod state;
pub mod update;

pub use crate::sandbox::{ExecOptions, SandboxStdio};
pub use create::{CreateOptions, RunOptions, Stdio};
pub use kill::Signal;

#[cfg(test)]
mod tests;
