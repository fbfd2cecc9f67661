//! Reaping children and keeping the exit statuses of the processes the agent tracks.
//!
//! The agent is PID 1: every orphan of the guest becomes its child and must be reaped.
//! A [`Reaper`] made by [`Reaper::reap_all`] runs one thread that waits for any child
//! (`waitid(P_ALL)`), records the statuses of tracked processes and reaps everything
//! else silently. Nothing else in the agent may wait for children: `Child::wait` of
//! `std::process` would race it.
//!
//! A process that is not PID 1 (the unit tests, the host runtime's tests) may use
//! [`Reaper::tracked_only`] instead: one thread per tracked process waits for that
//! process only, and other children of the process are left alone.
//!
//! Each reaping thread first waits without reaping (`WNOWAIT`), then reaps under the
//! table's lock. [`Reaper::kill`] signals under the same lock, so a PID it signals is
//! never one that was reaped and reused meanwhile.

use husk_protocol::ExitStatus;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// How the reaper finds children to reap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One thread reaps every child of the process.
    All,
    /// One thread per tracked process reaps that process.
    TrackedOnly,
}

/// The tracked processes and how they ended.
#[derive(Debug, Default)]
struct Table {
    /// Tracked PIDs; `Some` once reaped.
    tracked: HashMap<i32, Option<ExitStatus>>,
    /// Bumped at each spawn, so that the reap-all thread, having found no child,
    /// knows when to look again.
    spawned: u64,
}

/// Reaps children and records the exit statuses of tracked ones.
#[derive(Debug)]
pub struct Reaper {
    mode: Mode,
    table: Mutex<Table>,
    /// Notified when a tracked process is reaped.
    exited: Condvar,
    /// Notified when a process is spawned.
    spawned: Condvar,
}

/// Why [`Reaper::kill`] did not deliver a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    /// The process was reaped already.
    #[error("the process has exited")]
    Exited,
    /// `kill(2)` failed.
    #[error("kill failed: {}", .0.desc())]
    Kill(Errno),
}

/// The one reap-all reaper of this process, once started.
static REAP_ALL: Mutex<Option<Arc<Reaper>>> = Mutex::new(None);

impl Reaper {
    /// The reaper of the whole process, started on first use: a thread that reaps
    /// every child. Later calls give back the same reaper. Use it in PID 1, or in a
    /// process that spawns children only through the agent's containers.
    pub fn reap_all() -> std::io::Result<Arc<Reaper>> {
        let mut global = lock(&REAP_ALL);
        if let Some(reaper) = global.as_ref() {
            return Ok(Arc::clone(reaper));
        }
        let reaper = Arc::new(Reaper::new(Mode::All));
        let thread_reaper = Arc::clone(&reaper);
        std::thread::Builder::new()
            .name("agent-reaper".into())
            .spawn(move || thread_reaper.reap_loop(None))?;
        *global = Some(Arc::clone(&reaper));
        Ok(reaper)
    }

    /// A reaper that waits only for the processes it tracks, one thread each; safe in
    /// any process, but orphans are not reaped.
    pub fn tracked_only() -> Arc<Reaper> {
        Arc::new(Reaper::new(Mode::TrackedOnly))
    }

    fn new(mode: Mode) -> Reaper {
        Reaper {
            mode,
            table: Mutex::new(Table::default()),
            exited: Condvar::new(),
            spawned: Condvar::new(),
        }
    }

    /// Runs `fork` (which forks and, in the child, never returns) with the table
    /// locked, and tracks the child it gives back, so that the child cannot be reaped
    /// before it is tracked.
    pub(super) fn spawn_tracked(
        self: &Arc<Self>,
        fork: impl FnOnce() -> nix::Result<Pid>,
    ) -> std::io::Result<Pid> {
        let mut table = lock(&self.table);
        let pid = fork()?;
        table.tracked.insert(pid.as_raw(), None);
        table.spawned += 1;
        drop(table);
        self.spawned.notify_all();
        if self.mode == Mode::TrackedOnly {
            let reaper = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("agent-reap-pid".into())
                .spawn(move || reaper.reap_loop(Some(pid)));
            if let Err(e) = spawned {
                // Without a waiter the child would never be reaped: end it, reap it.
                let _ = kill(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                lock(&self.table).tracked.remove(&pid.as_raw());
                return Err(e);
            }
        }
        Ok(pid)
    }

    /// How a tracked process ended, or `None` while it runs (or if it is not tracked).
    pub fn status(&self, pid: Pid) -> Option<ExitStatus> {
        lock(&self.table)
            .tracked
            .get(&pid.as_raw())
            .copied()
            .flatten()
    }

    /// Waits until a tracked process has been reaped, or until `deadline`; `None` if
    /// the deadline passed first or the process is not tracked.
    pub fn wait(&self, pid: Pid, deadline: Option<Instant>) -> Option<ExitStatus> {
        let mut table = lock(&self.table);
        loop {
            match table.tracked.get(&pid.as_raw()) {
                None => return None,
                Some(Some(status)) => return Some(*status),
                Some(None) => {}
            }
            table = match deadline {
                None => self.exited.wait(table).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.exited
                        .wait_timeout(table, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Sends `signal` to a tracked process that has not been reaped.
    pub fn kill(&self, pid: Pid, signal: Signal) -> Result<(), KillError> {
        let table = lock(&self.table);
        if let Some(Some(_)) = table.tracked.get(&pid.as_raw()) {
            return Err(KillError::Exited);
        }
        kill(pid, signal).map_err(KillError::Kill)
    }

    /// Waits for any child forever (reap-all, `only` is `None`) or until the one
    /// process `only` is reaped (tracked-only).
    fn reap_loop(&self, only: Option<Pid>) {
        loop {
            let generation = lock(&self.table).spawned;
            let id = only.map_or(Id::All, Id::Pid);
            match waitid(id, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(found) => {
                    let Some(pid) = found.pid() else { continue };
                    let reaped = self.reap(pid);
                    if self.mode == Mode::TrackedOnly && reaped {
                        return;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) if self.mode == Mode::All => {
                    let mut table = lock(&self.table);
                    while table.spawned == generation {
                        table = self.spawned.wait(table).unwrap_or_else(|e| e.into_inner());
                    }
                }
                // Tracked-only: the child is gone (someone else reaped it).
                Err(_) => {
                    if let Some(pid) = only {
                        self.record(&mut lock(&self.table), pid, None);
                    }
                    return;
                }
            }
        }
    }

    /// Reaps `pid`, which has exited, recording its status if it is tracked; whether
    /// it was reaped.
    fn reap(&self, pid: Pid) -> bool {
        let mut table = lock(&self.table);
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                let status = exit_status(status);
                if status.is_some() {
                    self.record(&mut table, pid, status);
                }
                status.is_some()
            }
            Err(_) => false,
        }
    }

    /// Records how `pid` ended (`None`: unknown, reported as killed by SIGKILL) if it is
    /// tracked, and wakes the waiters.
    fn record(&self, table: &mut Table, pid: Pid, status: Option<ExitStatus>) {
        if let Some(slot) = table.tracked.get_mut(&pid.as_raw()) {
            *slot = Some(status.unwrap_or(ExitStatus {
                exit_code: None,
                signal: Some(Signal::SIGKILL as i32),
            }));
            self.exited.notify_all();
        }
    }
}

/// The protocol's exit status of a wait status that ends a process.
fn exit_status(status: WaitStatus) -> Option<ExitStatus> {
    match status {
        WaitStatus::Exited(_, code) => Some(ExitStatus {
            exit_code: Some(code),
            signal: None,
        }),
        WaitStatus::Signaled(_, signal, _) => Some(ExitStatus {
            exit_code: None,
            signal: Some(signal as i32),
        }),
        _ => None,
    }
}

/// Locks a mutex, recovering it if a thread panicked while holding it (the tables
/// stay consistent between statements).
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
