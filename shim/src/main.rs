//! `containerd-shim-husk-v2`: containerd's shim v2 for husk. One shim per task, or
//! per pod for Kubernetes' CRI: each task runs in its own microVM, or in its pod's,
//! owned by a sandbox process that is the shim's child (the same `__sandbox` process
//! the `husk` CLI starts); a pod's other containers are created in that VM through
//! relay processes (`husk_runtime::sandbox::pod`).
//!
//! | module | what it does |
//! |---|---|
//! | [`shim`] | `start`, `delete` and serving, as containerd drives them |
//! | [`api`] | the Task API (ttrpc) mapped onto [`service`] |
//! | [`service`] | the Task API's verbs in plain Rust through husk's runtime library: create, start, kill, delete, wait (`mod.rs`), exec'd processes (`exec`), pause, resume, update, metrics and the OOM watch (`control`), ResizePty (`pty`) |
//! | [`task`] | what the shim keeps of a task and of its exec'd processes |
//! | [`exit`] | the thread that watches a child's exit, the cell waiters block on, TaskExit |
//! | [`stdio`] | containerd's fifos, opened for the sandbox process |
//! | [`log_uri`] | stdio URIs: `file://` and `binary://` (logging binaries) |
//! | [`terminal`] | terminal processes: the master from the console socket and its relay |
//! | [`rootfs`] | the snapshotter's mounts on `<bundle>/rootfs` |
//! | [`events`] | TaskCreate, TaskStart, TaskExit, TaskDelete, published in order |
//! | [`error`] | the shim's errors and their ttrpc codes |
//! | [`logging`] | the log fifo containerd reads |

mod api;
mod error;
mod events;
mod exit;
mod log_uri;
mod logging;
mod rootfs;
mod service;
mod shim;
mod stdio;
mod task;
mod terminal;

use containerd_shim::Config;

fn main() {
    // The sandbox process the runtime library starts as `<this binary> __sandbox DIR`.
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = args
        .get(1)
        .and_then(|cmd| husk_runtime::sandbox::hidden_main(cmd, &args[2..]))
    {
        std::process::exit(code & 0xff);
    }
    let config = Config {
        // Logging goes through tracing (see `logging`), which also takes the
        // crate's `log` records.
        no_setup_logger: true,
        ..Config::default()
    };
    containerd_shim::run::<shim::HuskShim>(shim::RUNTIME_ID, Some(config));
}
