//! The `husk` command line over the runtime library ([`crate::container`]): each
//! command's arguments turned into the library's typed options, and its result
//! printed. Commands with more to convert or print have a module; [`dispatch`] runs
//! the parsed command line.

pub mod check;
pub mod create;
pub mod events;
pub mod exec;
pub mod features;
pub mod list;
pub mod ps;
pub mod spec;
pub mod state;
pub mod update;

use crate::cli::{Cli, Command};
use crate::container::{self, Signal};
use crate::error::RuntimeError;
use crate::state::Store;

/// The command's name, as typed (for messages).
pub fn name(command: &Command) -> &'static str {
    match command {
        Command::Create(_) => "create",
        Command::Start(_) => "start",
        Command::Run(_) => "run",
        Command::State(_) => "state",
        Command::Kill(_) => "kill",
        Command::Delete(_) => "delete",
        Command::List(_) => "list",
        Command::Exec(_) => "exec",
        Command::Ps(_) => "ps",
        Command::Spec(_) => "spec",
        Command::Features => "features",
        Command::Check(_) => "check",
        Command::Pause(_) => "pause",
        Command::Resume(_) => "resume",
        Command::Events(_) => "events",
        Command::Update(_) => "update",
    }
}

/// Runs the command; gives the process's exit status (0, or the container's or
/// exec'd process's status for `run` and `exec`, or 1 for a failed `check`).
pub fn dispatch(cli: &Cli) -> Result<i32, RuntimeError> {
    check_rootless(cli.global.rootless.as_deref())?;
    if cli.global.systemd_cgroup {
        tracing::debug!(
            "--systemd-cgroup: recorded, ignored (the microVM is the container's cgroup)"
        );
    }
    if cli.global.criu.is_some() {
        tracing::debug!("--criu: ignored (no checkpoint/restore)");
    }
    let store = || Store::open(&cli.global.root);
    match &cli.command {
        Command::Create(a) => {
            create::create(&store()?, &a.id, &a.opts, cli.global.systemd_cgroup).map(|()| 0)
        }
        Command::Start(a) => container::start::start(&store()?, &a.id).map(|()| 0),
        Command::Run(a) => create::run(&store()?, a, cli.global.systemd_cgroup),
        Command::State(a) => state::state(&store()?, &a.id).map(|()| 0),
        Command::Kill(a) => {
            let signal: Signal = a.signal.parse()?;
            container::kill::kill(&store()?, &a.id, signal, a.all).map(|()| 0)
        }
        Command::Delete(a) => container::delete::delete(&store()?, &a.id, a.force).map(|()| 0),
        Command::List(a) => list::list(&store()?, a.format, a.quiet).map(|()| 0),
        Command::Exec(a) => exec::exec(&store()?, a),
        Command::Ps(a) => ps::ps(&store()?, a).map(|()| 0),
        Command::Spec(a) => spec::spec(&a.bundle).map(|()| 0),
        Command::Features => features::features().map(|()| 0),
        Command::Check(a) => Ok(check::check(a.quiet)),
        Command::Pause(a) => container::pause::pause(&store()?, &a.id).map(|()| 0),
        Command::Resume(a) => container::pause::resume(&store()?, &a.id).map(|()| 0),
        Command::Events(a) => events::events(&store()?, a).map(|()| 0),
        Command::Update(a) => update::update(&store()?, a).map(|()| 0),
    }
}

/// `--rootless`: `false` and `auto` are fine (husk runs as root); `true` is refused.
fn check_rootless(value: Option<&str>) -> Result<(), RuntimeError> {
    match value {
        None | Some("false") | Some("auto") => Ok(()),
        Some("true") => Err(RuntimeError::InvalidArgument(
            "--rootless=true: husk runs as root (rootless microVMs are not supported)".into(),
        )),
        Some(other) => Err(RuntimeError::InvalidArgument(format!(
            "--rootless={other}: expected true, false or auto"
        ))),
    }
}
