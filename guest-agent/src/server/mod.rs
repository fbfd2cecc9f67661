//! The agent's protocol server: vsock port [`AGENT_PORT`], one thread per connection.
//!
//! [`serve`] accepts connections; [`handle_connection`] serves one over any
//! `Read + Write` stream, so that it can be tested over a Unix socket pair.

mod conn;
mod diag;
pub mod log;

pub use conn::{handle_connection, ConnError, Connection};

use crate::container::cgroup::CgroupRoot;
use crate::container::{Containers, Reaper};
use husk_protocol::error_chain;
use husk_protocol::{write_frame, AgentError, ErrorCode, HelloReply, AGENT_PORT};
use log::ConsoleLog;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use vsock::{VsockListener, VMADDR_CID_ANY};

/// How many connections the agent serves at once by default.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 64;

/// What connection handlers share.
pub struct Context {
    proc_root: PathBuf,
    log: ConsoleLog,
    on_shutdown: Box<dyn Fn() + Send + Sync>,
    max_connections: u32,
    connections: AtomicU32,
    containers: Containers,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("proc_root", &self.proc_root)
            .field("max_connections", &self.max_connections)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context reading `/proc`, logging to the console, serving at most
    /// [`DEFAULT_MAX_CONNECTIONS`]; `on_shutdown` runs after a `shutdown` request has
    /// been answered and should end the VM.
    ///
    /// Container processes are reaped by a [`Reaper::tracked_only`], which leaves
    /// other children alone; PID 1 must give a [`Reaper::reap_all`] with
    /// [`Context::with_reaper`] so that orphans are reaped too.
    pub fn new(on_shutdown: impl Fn() + Send + Sync + 'static) -> Self {
        Context {
            proc_root: PathBuf::from("/proc"),
            log: ConsoleLog::stdout(),
            on_shutdown: Box::new(on_shutdown),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connections: AtomicU32::new(0),
            containers: Containers::new(Reaper::tracked_only()),
        }
    }

    /// Reaps container processes with `reaper` (the containers so far are forgotten:
    /// call this before serving).
    pub fn with_reaper(mut self, reaper: Arc<Reaper>) -> Self {
        self.containers = Containers::new(reaper);
        self
    }

    /// Gives each container a cgroup under cgroup2 mounted at `root` (the agent's
    /// `/sys/fs/cgroup`); call after [`Context::with_reaper`], before serving.
    pub fn with_cgroups(mut self, root: PathBuf) -> Self {
        let reaper = self.containers.reaper().clone();
        self.containers = Containers::new(reaper).with_cgroups(CgroupRoot::new(root));
        self
    }

    /// Reads guest state from `proc_root` instead of `/proc`.
    pub fn with_proc_root(mut self, proc_root: PathBuf) -> Self {
        self.proc_root = proc_root;
        self
    }

    /// Logs to `log` instead of the console.
    pub fn with_log(mut self, log: ConsoleLog) -> Self {
        self.log = log;
        self
    }

    /// Serves at most `max` connections at once.
    pub fn with_max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// The log.
    pub fn log(&self) -> &ConsoleLog {
        &self.log
    }

    /// Connections being served now.
    pub fn connections(&self) -> u32 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Takes a connection slot, or `None` if all are taken.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnectionSlot> {
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .ok()
            .map(|_| ConnectionSlot(Arc::clone(self)))
    }
}

/// A connection counted against the limit until dropped.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<Context>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Listens on vsock port [`AGENT_PORT`] of any local CID. Fails without a vsock device.
pub fn listen() -> std::io::Result<VsockListener> {
    VsockListener::bind_with_cid_port(VMADDR_CID_ANY, AGENT_PORT)
}

/// Accepts connections forever, serving each on its own thread.
///
/// Past the connection limit a connection is answered with a `refused` hello reply
/// (code `busy`) and closed.
pub fn serve(listener: VsockListener, ctx: Arc<Context>) -> ! {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                ctx.log.log(&format!("vsock accept failed: {e}"));
                // Typically out of file descriptors: give connections time to end.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let Some(slot) = ctx.try_acquire() else {
            ctx.log.log("too many connections: refusing one");
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let refused = HelloReply::Refused(AgentError::new(
                ErrorCode::Busy,
                format!(
                    "the agent serves {} connections already",
                    ctx.max_connections
                ),
            ));
            let _ = write_frame(&mut &stream, &refused);
            continue;
        };
        let conn_ctx = Arc::clone(&ctx);
        let spawned = std::thread::Builder::new()
            .name("agent-conn".into())
            .spawn(move || {
                let _slot = slot;
                if let Err(e) = handle_connection(stream, &conn_ctx) {
                    conn_ctx
                        .log
                        .log(&format!("connection ended: {}", error_chain(&e)));
                }
            });
        if let Err(e) = spawned {
            ctx.log
                .log(&format!("cannot start a connection thread: {e}"));
        }
    }
}

#[cfg(test)]
mod tests;
