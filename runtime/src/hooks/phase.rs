//! The points of the lifecycle where OCI hooks run, by the spec's names.

use oci_spec::runtime::{Hook, Hooks};

/// The points of the lifecycle where hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Deprecated; at create, once the sandbox is up, before `createRuntime`.
    Prestart,
    /// At create, once the sandbox is up.
    CreateRuntime,
    /// At create, after `createRuntime` (on the host, not in the container).
    CreateContainer,
    /// At start, before the user process runs (on the host, not in the container).
    StartContainer,
    /// After start; failures are logged.
    Poststart,
    /// At delete, once the sandbox is gone; failures are logged.
    Poststop,
}

impl Phase {
    /// The spec's name of the phase.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        }
    }

    /// The hooks of this phase in `hooks`.
    #[allow(deprecated)] // prestart: deprecated by the spec, still run (as runc does)
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        let list = match self {
            Phase::Prestart => hooks.prestart(),
            Phase::CreateRuntime => hooks.create_runtime(),
            Phase::CreateContainer => hooks.create_container(),
            Phase::StartContainer => hooks.start_container(),
            Phase::Poststart => hooks.poststart(),
            Phase::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }

    /// Every phase, in the order the lifecycle reaches them.
    pub const ALL: [Phase; 6] = [
        Phase::Prestart,
        Phase::CreateRuntime,
        Phase::CreateContainer,
        Phase::StartContainer,
        Phase::Poststart,
        Phase::Poststop,
    ];
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
