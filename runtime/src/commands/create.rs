//! `husk create` and `husk run`: runc's flags to [`crate::container::create`]'s
//! options.

use crate::cli::{CreateOpts, RunArgs};
use crate::container::create::{self, CreateOptions, RunOptions, Stdio};
use crate::error::RuntimeError;
use crate::state::Store;

/// The library's options for `opts`; the sandbox takes this process's stdio.
fn options(opts: &CreateOpts, systemd_cgroup: bool) -> CreateOptions {
    if opts.no_pivot || opts.no_new_keyring {
        tracing::debug!("--no-pivot/--no-new-keyring: accepted (nothing to do on the host side)");
    }
    CreateOptions {
        bundle: opts.bundle.clone(),
        console_socket: opts.console_socket.clone(),
        pid_file: opts.pid_file.clone(),
        preserve_fds: opts.preserve_fds,
        stdio: Stdio::Inherit,
        systemd_cgroup,
    }
}

/// `husk create ID`.
pub fn create(
    store: &Store,
    id: &str,
    opts: &CreateOpts,
    systemd_cgroup: bool,
) -> Result<(), RuntimeError> {
    create::create(store, id, options(opts, systemd_cgroup)).map(drop)
}

/// `husk run ID`: the container's exit status, or 0 with `--detach`.
pub fn run(store: &Store, args: &RunArgs, systemd_cgroup: bool) -> Result<i32, RuntimeError> {
    let run = RunOptions {
        detach: args.detach,
        keep: args.keep,
    };
    create::run(store, &args.id, options(&args.opts, systemd_cgroup), run)
}
