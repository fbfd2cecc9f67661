//! Exits of the shim's children (sandbox processes, exec relays): the thread that
//! watches the reaper for one pid, the cell that records the exit for waiters, and
//! the TaskExit event it publishes.

use crate::events::{Events, TaskEvent};
use containerd_shim::monitor::{ExitEvent, Subject, Subscription};
use containerd_shim::protos::events::task::TaskExit;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::MessageField;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How a task's process ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exited {
    /// Its exit status (128 + N for signal N).
    pub status: u32,
    /// When the shim saw it.
    pub at: Timestamp,
}

/// A task's exit, once known; waiters block on it.
#[derive(Debug, Default)]
pub struct ExitCell {
    exited: Mutex<Option<Exited>>,
    changed: Condvar,
}

impl ExitCell {
    /// The exit, if the process has exited.
    pub fn get(&self) -> Option<Exited> {
        self.exited
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records the exit and wakes the waiters; `before` runs first, under the lock
    /// (so the TaskExit event is queued before any waiter can queue TaskDelete).
    pub fn set(&self, exited: Exited, before: impl FnOnce(&Exited)) {
        let mut slot = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        before(&exited);
        *slot = Some(exited);
        self.changed.notify_all();
    }

    /// Waits for the exit; `None` if `timeout` passed first (`None`: no limit).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Exited> {
        let slot = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match timeout {
            None => self
                .changed
                .wait_while(slot, |s| s.is_none())
                .unwrap_or_else(|e| e.into_inner()),
            Some(t) => {
                self.changed
                    .wait_timeout_while(slot, t, |s| s.is_none())
                    .unwrap_or_else(|e| e.into_inner())
                    .0
            }
        };
        slot.clone()
    }
}

/// How long TaskExit waits for a terminal's output to be relayed.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Watches for the exit of host process `pid` (a sandbox process, or an exec
/// relay) on `subscription` (taken before the process was started, so no exit is
/// missed), records it in `cell` and publishes TaskExit for process `id` (the task
/// id, or an exec id) of task `container_id`. With `output_done`, the exit waits
/// (bounded) for the shim's relay of the process's output to finish first, so that
/// an engine that stops reading at the exit loses nothing.
pub fn watch_exit(
    subscription: Subscription,
    container_id: String,
    id: String,
    pid: u32,
    cell: Arc<ExitCell>,
    events: Events,
    output_done: Option<Receiver<()>>,
) -> std::io::Result<()> {
    watch_pid(subscription, pid, cell, move |status| {
        tracing::info!("task {container_id}: {id}'s process {pid} exited with status {status}");
        if let Some(done) = output_done {
            if done.recv_timeout(OUTPUT_DRAIN).is_err() {
                tracing::warn!("task {container_id}: {id}'s output still flows {OUTPUT_DRAIN:?} after its exit");
            }
        }
        move |e: &Exited| {
            events.send(TaskEvent::Exit(TaskExit {
                container_id: container_id.clone(),
                id: id.clone(),
                pid,
                exit_status: e.status,
                exited_at: MessageField::some(e.at.clone()),
                ..Default::default()
            }))
        }
    })
}

/// Watches for the exit of host process `pid` (a child of the shim) on
/// `subscription` and records it in `cell`; `on_exit` runs first with the status
/// and gives what runs under the cell's lock just before the exit is recorded.
pub fn watch_pid<F, G>(
    subscription: Subscription,
    pid: u32,
    cell: Arc<ExitCell>,
    on_exit: F,
) -> std::io::Result<()>
where
    F: FnOnce(u32) -> G + Send + 'static,
    G: FnOnce(&Exited),
{
    std::thread::Builder::new()
        .name(format!("exit-{pid}"))
        .spawn(move || {
            let status = exit_status_of(&subscription, pid);
            let before = on_exit(status);
            let exited = Exited {
                status,
                at: Timestamp::now(),
            };
            cell.set(exited, before);
        })
        .map(|_| ())
}

/// The exit status of `pid` as the reaper reports it; 255 if the reaper's channel
/// closes first (the shim is going away).
fn exit_status_of(subscription: &Subscription, pid: u32) -> u32 {
    for event in subscription.rx.iter() {
        if let ExitEvent {
            subject: Subject::Pid(p),
            exit_code,
        } = event
        {
            if p == pid as i32 {
                return exit_code as u32;
            }
        }
    }
    tracing::error!("the reaper stopped before process {pid} exited");
    255
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_see_the_exit_and_time_out_without_one() {
        let cell = Arc::new(ExitCell::default());
        assert_eq!(cell.wait(Some(Duration::from_millis(1))), None);
        let setter = cell.clone();
        let t = std::thread::spawn(move || {
            setter.set(
                Exited {
                    status: 7,
                    at: Timestamp::now(),
                },
                |_| {},
            )
        });
        assert_eq!(cell.wait(None).map(|e| e.status), Some(7));
        t.join().unwrap();
        assert_eq!(cell.get().map(|e| e.status), Some(7));
    }

    #[test]
    fn exits_are_reported_for_the_watched_pid_only() {
        let sub = containerd_shim::monitor::monitor_subscribe(containerd_shim::monitor::Topic::Pid)
            .unwrap();
        let (events, rx) = Events::channel();
        let cell = Arc::new(ExitCell::default());
        watch_exit(
            sub,
            "t1".into(),
            "t1".into(),
            4242,
            cell.clone(),
            events,
            None,
        )
        .unwrap();
        containerd_shim::monitor::monitor_notify_by_pid(4241, 1).unwrap();
        containerd_shim::monitor::monitor_notify_by_pid(4242, 137).unwrap();
        assert_eq!(cell.wait(None).map(|e| e.status), Some(137));
        match rx.recv().unwrap() {
            TaskEvent::Exit(e) => {
                assert_eq!(
                    (e.container_id.as_str(), e.pid, e.exit_status),
                    ("t1", 4242, 137)
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
