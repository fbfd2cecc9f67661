//! Task events for containerd (TaskCreate, TaskStart, TaskExit, TaskDelete,
//! TaskExecAdded, TaskExecStarted, TaskPaused, TaskResumed and TaskOOM),
//! published in order by one thread, so that a Task API call never waits on
//! containerd's event service while containerd waits on it.

use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use std::sync::mpsc;

/// One task event.
#[derive(Debug)]
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
    /// Starts the thread that forwards events to containerd in `namespace`.
    pub fn start(publisher: RemotePublisher, namespace: String) -> Events {
        let (tx, rx) = mpsc::channel::<TaskEvent>();
        std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for event in rx {
                    let topic = event.topic();
                    let message = event.into_message();
                    if let Err(e) =
                        publisher.publish(Context::default(), topic, &namespace, message)
                    {
                        tracing::error!("cannot publish {topic} to containerd: {e}");
                    }
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
