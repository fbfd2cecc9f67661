//! The shim's log. Serving, it writes to the `log` fifo containerd reads in the
//! bundle directory (containerd shows those lines in its own log); for `start` and
//! `delete`, to stderr, which containerd reports when the action fails. The
//! containerd-shim crate's own `log` records go the same way.

use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::Mode;
use std::fs::File;
use std::sync::Mutex;
use tracing::Level;

/// The fifo containerd reads a serving shim's log from, in the bundle directory.
const LOG_FIFO: &str = "log";

/// Sets up logging for `action` (`start`, `delete`, or empty: serving). containerd
/// shows whatever `start` and `delete` write to stderr as warnings: they log
/// warnings and errors only, unless debugging.
pub fn init(action: &str, debug: bool) {
    let level = match (debug, action.is_empty()) {
        (true, _) => Level::DEBUG,
        (false, true) => Level::INFO,
        (false, false) => Level::WARN,
    };
    let builder = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(level)
        .with_target(false);
    let result = match open_log_fifo() {
        Some(file) if action.is_empty() => builder.with_writer(Mutex::new(file)).try_init(),
        _ => builder.with_writer(std::io::stderr).try_init(),
    };
    if let Err(e) = result {
        eprintln!("containerd-shim-husk-v2: cannot set up logging: {e}");
    }
}

/// The `log` fifo, opened for writing without waiting for a reader (containerd
/// normally holds one already); `None` if there is no such fifo.
fn open_log_fifo() -> Option<File> {
    let fd = open(
        LOG_FIFO,
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    // Blocking writes: a slow reader must not lose lines.
    let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL).ok()?);
    fcntl(&fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).ok()?;
    Some(File::from(fd))
}
