//! Task events for containerd (TaskCreate, TaskStart, TaskExit, TaskDelete,
//! TaskExecAdded, TaskExecStarted, TaskPaused, TaskResumed and TaskOOM),
//! published in order by one thread, so that a Task API call never waits on
//! containerd's event service while containerd waits on it. An event containerd
//! cannot take (it is restarting) is retried on a new connection for a while.

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One task event.
#[derive(Debug, Clone)]
pub enum TaskEvent {
    /// The task was created (its sandbox is up).
    Create(TaskCreate),
    /// Its process started.
    Start(TaskStart),
    /// Its process exited.
    Exit(TaskExit),
    /// It was deleted.
    Delete(TaskDelete),
    /// An exec'd process was added.
    ExecAdded(TaskExecAdded),
    /// An exec'd process started.
    ExecStarted(TaskExecStarted),
    /// The task was paused.
    Paused(TaskPaused),
    /// The task was resumed.
    Resumed(TaskResumed),
    /// A process of the task was killed for lack of memory.
    Oom(TaskOOM),
}

impl TaskEvent {
    /// The topic containerd files the event under.
    pub fn topic(&self) -> &'static str {
        match self {
            TaskEvent::Create(_) => topics::TASK_CREATE_EVENT_TOPIC,
            TaskEvent::Start(_) => topics::TASK_START_EVENT_TOPIC,
            TaskEvent::Exit(_) => topics::TASK_EXIT_EVENT_TOPIC,
            TaskEvent::Delete(_) => topics::TASK_DELETE_EVENT_TOPIC,
            TaskEvent::ExecAdded(_) => topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskEvent::ExecStarted(_) => topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskEvent::Paused(_) => topics::TASK_PAUSED_EVENT_TOPIC,
            TaskEvent::Resumed(_) => topics::TASK_RESUMED_EVENT_TOPIC,
            TaskEvent::Oom(_) => topics::TASK_OOM_EVENT_TOPIC,
        }
    }

    fn into_message(self) -> Box<dyn MessageDyn> {
        match self {
            TaskEvent::Create(e) => Box::new(e),
            TaskEvent::Start(e) => Box::new(e),
            TaskEvent::Exit(e) => Box::new(e),
            TaskEvent::Delete(e) => Box::new(e),
            TaskEvent::ExecAdded(e) => Box::new(e),
            TaskEvent::ExecStarted(e) => Box::new(e),
            TaskEvent::Paused(e) => Box::new(e),
            TaskEvent::Resumed(e) => Box::new(e),
            TaskEvent::Oom(e) => Box::new(e),
        }
    }
}

/// Where the task service sends events; cloning is cheap.
#[derive(Debug, Clone)]
pub struct Events {
    tx: mpsc::Sender<TaskEvent>,
}

impl Events {
    /// Starts the thread that forwards events to containerd in `namespace`. When
    /// containerd is away (restarting), an event is retried, reconnecting to
    /// `address` (containerd's ttrpc socket), for up to [`RETRY_FOR`].
    pub fn start(publisher: RemotePublisher, namespace: String, address: String) -> Events {
        let (tx, rx) = mpsc::channel::<TaskEvent>();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                let mut publisher = Some(publisher);
                for event in rx {
                    forward(&mut publisher, &address, &namespace, event);
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!("cannot start the events thread: {e}"));
        Events { tx }
    }

    /// Events that go nowhere but a channel (for tests).
    #[cfg(test)]
    pub fn channel() -> (Events, mpsc::Receiver<TaskEvent>) {
        let (tx, rx) = mpsc::channel();
        (Events { tx }, rx)
    }

    /// Queues `event`.
    pub fn send(&self, event: TaskEvent) {
        tracing::debug!("event {}", event.topic());
        if self.tx.send(event).is_err() {
            tracing::error!("the events thread is gone; an event is lost");
        }
    }
}

/// How long an event is retried while containerd cannot take it.
const RETRY_FOR: Duration = Duration::from_secs(60);
/// The pause between attempts (doubling up to the last).
const RETRY_PAUSES: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
];

/// Publishes `event`, reconnecting and retrying while containerd is away.
fn forward(
    publisher: &mut Option<RemotePublisher>,
    address: &str,
    namespace: &str,
    event: TaskEvent,
) {
    let topic = event.topic();
    let deadline = Instant::now() + RETRY_FOR;
    let mut attempt = 0usize;
    loop {
        let sent = match publisher.as_ref() {
            Some(p) => p
                .publish(
                    Context::default(),
                    topic,
                    namespace,
                    event.clone().into_message(),
                )
                .map_err(|e| e.to_string()),
            None => Err("not connected".to_string()),
        };
        let Err(e) = sent else {
            if attempt > 0 {
                tracing::info!("published {topic} after {attempt} retries");
            }
            return;
        };
        if Instant::now() >= deadline {
            tracing::error!("cannot publish {topic} to containerd within {RETRY_FOR:?}: {e}");
            return;
        }
        if attempt == 0 {
            tracing::warn!("cannot publish {topic} to containerd ({e}); retrying");
        }
        std::thread::sleep(RETRY_PAUSES[attempt.min(RETRY_PAUSES.len() - 1)]);
        attempt += 1;
        // A new connection: containerd may have restarted on the same address.
        *publisher = RemotePublisher::new(address).ok();
    }
}
