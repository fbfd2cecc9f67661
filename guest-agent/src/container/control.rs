//! The container requests on its cgroup: `pause`, `resume`, `update`, and the
//! `oom_event` wait.

use super::{cgroup, lock, Container, Containers};
use husk_protocol::{AgentError, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long `pause` and `resume` wait for `cgroup.events` to agree.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `oom_event` reads the containers' `memory.events`.
const OOM_POLL: Duration = Duration::from_millis(100);

impl Containers {
    /// Freezes (`pause`) or thaws a container's cgroup and waits until the kernel
    /// says it is done.
    pub fn pause(&self, id: &str, pause: bool) -> Result<(), AgentError> {
        let container = self.container(id)?;
        let cgroup = container.cgroup.as_ref().ok_or_else(|| no_cgroup(id))?;
        let mut paused = lock(&container.paused);
        if *paused == pause {
            let state = if pause { "paused" } else { "not paused" };
            return Err(AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("container {id:?} is {state}"),
            ));
        }
        if pause && self.reaper.status(container.init.pid).is_some() {
            return Err(AgentError::new(
                ErrorCode::FailedPrecondition,
                format!("container {id:?} is not running"),
            ));
        }
        if let Err(e) = cgroup.freeze(pause, FREEZE_TIMEOUT) {
            if pause {
                // Not frozen in time: do not leave it half frozen.
                let _ = cgroup.thaw_now();
            }
            return Err(e);
        }
        *paused = pause;
        Ok(())
    }

    /// Changes a container's cgroup limits; fields husk does not apply are refused.
    pub fn update(&self, id: &str, resources: &serde_json::Value) -> Result<(), AgentError> {
        let container = self.container(id)?;
        let cgroup = container.cgroup.as_ref().ok_or_else(|| no_cgroup(id))?;
        let plan = cgroup::resources::plan(resources)?;
        cgroup.apply(&plan, true)
    }

    /// Waits up to `wait` for a container whose cgroup's `oom_kill` count rose
    /// since it was last reported; each rise is reported once, to one waiter.
    ///
    /// The counts are read every [`OOM_POLL`]: one small read per container, and
    /// no thread or inotify descriptor to keep when nobody waits.
    pub fn oom_event(&self, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            let containers: Vec<(String, Arc<Container>)> = lock(&self.table)
                .iter()
                .map(|(id, c)| (id.clone(), c.clone()))
                .collect();
            for (id, container) in containers {
                let Some(cgroup) = &container.cgroup else {
                    continue;
                };
                let kills = cgroup.oom_kills();
                let seen = container.oom_reported.load(Ordering::SeqCst);
                if kills > seen
                    && container
                        .oom_reported
                        .compare_exchange(seen, kills, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    return Some(id);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            std::thread::sleep(OOM_POLL.min(deadline - now));
        }
    }
}

fn no_cgroup(id: &str) -> AgentError {
    AgentError::new(
        ErrorCode::Unsupported,
        format!("container {id:?} has no cgroup (the agent runs without cgroups)"),
    )
}
