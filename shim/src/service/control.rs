//! Pause, Resume, Update, Stats and the OOM watch of a task, on the container's
//! cgroup in the guest (through the runtime library and the agent).

use super::Service;
use crate::error::{Result, ShimError};
use crate::events::TaskEvent;
use crate::task::{TaskRecord, TaskStatus};
use containerd_shim::protos::cgroups_v2::metrics::{
    CPUStat, MemoryEvents, MemoryStat, Metrics, PidsStat,
};
use containerd_shim::protos::events::task::{TaskOOM, TaskPaused, TaskResumed};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use husk_protocol::error_chain;
use husk_protocol::ContainerStats;
use husk_runtime::container;
use husk_runtime::error::RuntimeError;
use husk_runtime::sandbox;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The type containerd's `ctr task metrics` decodes.
pub const METRICS_TYPE_URL: &str = "io.containerd.cgroups.v2.Metrics";
/// How long each OOM wait in the guest lasts before it is sent again.
const OOM_POLL: Duration = Duration::from_secs(10);

impl Service {
    /// Freezes a running task's processes; publishes TaskPaused.
    pub fn pause(&self, id: &str) -> Result<()> {
        let task = self.task(id)?;
        if task.status() != TaskStatus::Running {
            return Err(ShimError::Precondition(format!(
                "cannot pause task \"{id}\": it is not running"
            )));
        }
        container::pause::pause(&self.store()?, id)?;
        task.paused.store(true, Ordering::SeqCst);
        self.events().send(TaskEvent::Paused(TaskPaused {
            container_id: id.to_string(),
            ..Default::default()
        }));
        Ok(())
    }

    /// Thaws a paused task; publishes TaskResumed.
    pub fn resume(&self, id: &str) -> Result<()> {
        let task = self.task(id)?;
        if task.status() != TaskStatus::Paused {
            return Err(ShimError::Precondition(format!(
                "cannot resume task \"{id}\": it is not paused"
            )));
        }
        container::pause::resume(&self.store()?, id)?;
        task.paused.store(false, Ordering::SeqCst);
        self.events().send(TaskEvent::Resumed(TaskResumed {
            container_id: id.to_string(),
            ..Default::default()
        }));
        Ok(())
    }

    /// Applies `resources`, the JSON of an OCI `LinuxResources` (as containerd sends
    /// it in UpdateTaskRequest's Any).
    pub fn update(&self, id: &str, resources: &[u8]) -> Result<()> {
        let task = self.task(id)?;
        if task.status() == TaskStatus::Stopped {
            return Err(ShimError::Finished(id.to_string()));
        }
        let resources: serde_json::Value = serde_json::from_slice(resources).map_err(|e| {
            RuntimeError::InvalidArgument(format!(
                "the update's resources are not the JSON of linux.resources: {e}"
            ))
        })?;
        Ok(container::update::apply(&self.store()?, id, resources)?)
    }

    /// The task's cgroup figures as containerd's cgroup v2 `Metrics`, in an Any.
    pub fn metrics(&self, id: &str) -> Result<Any> {
        let task = self.task(id)?;
        if task.status() == TaskStatus::Stopped {
            return Err(ShimError::Finished(id.to_string()));
        }
        let store = self.store()?;
        let state = store.load(id)?;
        let stats = sandbox::stats(&store, &state)?;
        let value = metrics(&stats)
            .write_to_bytes()
            .map_err(|e| ShimError::Internal(format!("cannot encode the metrics: {e}")))?;
        Ok(Any {
            type_url: METRICS_TYPE_URL.into(),
            value,
            ..Default::default()
        })
    }

    /// Watches the task's guest for OOM kills and publishes TaskOOM for each, until
    /// the task stops (the agent is gone then, which ends the watch).
    pub(crate) fn watch_oom(&self, task: &Arc<TaskRecord>) {
        let (service, task) = (self.clone(), task.clone());
        let name = format!("oom-{}", task.id);
        let id = task.id.clone();
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let oom = || {
                tracing::info!("task {}: OOM kill", task.id);
                service.events().send(TaskEvent::Oom(TaskOOM {
                    container_id: task.id.clone(),
                    ..Default::default()
                }));
            };
            let mut sent = 0u64;
            let watched = service.store().and_then(|store| {
                let state = store.load(&task.id)?;
                let watched = sandbox::watch_oom(&store, &state, OOM_POLL, |id| {
                    if id == Some(task.id.as_str()) {
                        oom();
                        sent += 1;
                    }
                    task.status() != TaskStatus::Stopped
                });
                // An OOM kill that ended the task may beat the watch to the VM's
                // end: the sandbox recorded the final count.
                if sandbox::final_oom_kills(&store, &task.id).is_some_and(|n| n > sent) {
                    oom();
                }
                Ok(watched?)
            });
            if let Err(e) = watched {
                if task.status() != TaskStatus::Stopped {
                    tracing::warn!("task {}: the OOM watch ended: {}", task.id, error_chain(&e));
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!("task {id}: cannot start the OOM watch: {e}");
        }
    }
}

/// containerd's cgroup v2 metrics from the agent's figures (zeros where the agent
/// has no cgroup figures).
fn metrics(stats: &ContainerStats) -> Metrics {
    let c = stats.cgroup.unwrap_or_default();
    Metrics {
        pids: MessageField::some(PidsStat {
            current: c.pids_current,
            limit: c.pids_max.unwrap_or(0),
            ..Default::default()
        }),
        cpu: MessageField::some(CPUStat {
            usage_usec: c.cpu_usage_usec,
            user_usec: c.cpu_user_usec,
            system_usec: c.cpu_system_usec,
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            anon: c.memory_anon,
            file: c.memory_file,
            usage: c.memory_current,
            usage_limit: c.memory_max.unwrap_or(u64::MAX),
            ..Default::default()
        }),
        memory_events: MessageField::some(MemoryEvents {
            oom: c.oom,
            oom_kill: c.oom_kill,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_protocol::CgroupStats;

    #[test]
    fn metrics_carry_the_cgroup_figures_and_decode() {
        let stats = ContainerStats {
            cpu_usage_ns: 0,
            memory_bytes: 0,
            pids: 0,
            cgroup: Some(CgroupStats {
                memory_current: 4096,
                memory_max: Some(33554432),
                memory_anon: 1024,
                cpu_usage_usec: 7,
                pids_current: 2,
                oom_kill: 1,
                ..Default::default()
            }),
        };
        let bytes = metrics(&stats).write_to_bytes().unwrap();
        let back = Metrics::parse_from_bytes(&bytes).unwrap();
        assert_eq!(back.memory.usage, 4096);
        assert_eq!(back.memory.usage_limit, 33554432);
        assert_eq!(back.memory.anon, 1024);
        assert_eq!(back.cpu.usage_usec, 7);
        assert_eq!(back.pids.current, 2);
        assert_eq!(back.memory_events.oom_kill, 1);
    }
}
