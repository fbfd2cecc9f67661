//! [`AgentClient`]'s container requests.
//!
//! Every request but [`AgentClient::wait`] is bounded by [`super::Timeouts::request`];
//! `wait` blocks until the process exits or the caller's deadline passes, so it is best
//! sent on a connection of its own (one request is outstanding per connection).

use super::client::AgentClient;
use super::transport::Transport;
use super::ClientError;
use husk_protocol::{ContainerStats, ExitStatus, RequestBody, ResponseBody};
use std::time::{Duration, Instant};

impl<S: Transport> AgentClient<S> {
    /// Creates a container from its OCI `config.json` (`bundle_spec`) and its root
    /// filesystem's path inside the guest; its process is set up and held before exec.
    /// Gives back the process's guest PID.
    pub fn create_container(
        &mut self,
        container_id: &str,
        bundle_spec: serde_json::Value,
        rootfs: &str,
    ) -> Result<u32, ClientError> {
        let body = RequestBody::CreateContainer {
            container_id: container_id.to_owned(),
            bundle_spec,
            rootfs: rootfs.to_owned(),
        };
        match self.request(body)? {
            ResponseBody::Created { pid } => Ok(pid),
            other => Err(self.unexpected("create_container", &other)),
        }
    }

    /// Removes a container of a pod's VM: kills what is left of it, removes its
    /// cgroup and its entry in the agent.
    pub fn remove_container(&mut self, container_id: &str) -> Result<(), ClientError> {
        let body = RequestBody::RemoveContainer {
            container_id: container_id.to_owned(),
        };
        match self.request(body)? {
            ResponseBody::Done => Ok(()),
            other => Err(self.unexpected("remove_container", &other)),
        }
    }

    /// Lets a created container's process exec; gives back its guest PID. An exec
    /// failure (e.g. a missing program) is an [`ClientError::Agent`] naming the path.
    pub fn start_container(&mut self, container_id: &str) -> Result<u32, ClientError> {
        let body = RequestBody::StartContainer {
            container_id: container_id.to_owned(),
        };
        self.started("start_container", body)
    }

    /// Sends signal number `signal` to the container's process (`exec_id` `None`) or
    /// an exec'd one.
    pub fn signal(
        &mut self,
        container_id: &str,
        exec_id: Option<&str>,
        signal: i32,
    ) -> Result<(), ClientError> {
        let body = RequestBody::Signal {
            container_id: container_id.to_owned(),
            exec_id: exec_id.map(str::to_owned),
            signal,
        };
        self.done("signal", body)
    }

    /// Waits until a process exits, or until `deadline` (`None`: no limit; the request
    /// timeout does not apply). A passed deadline is [`ClientError::Timeout`] and
    /// leaves the connection unusable (the answer may still come).
    pub fn wait(
        &mut self,
        container_id: &str,
        exec_id: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<ExitStatus, ClientError> {
        let body = RequestBody::Wait {
            container_id: container_id.to_owned(),
            exec_id: exec_id.map(str::to_owned),
        };
        let after = deadline.map_or(Duration::ZERO, |d| {
            d.saturating_duration_since(Instant::now())
        });
        let id = self.send(body)?;
        match self.answer_by(id, "wait", deadline, after)? {
            ResponseBody::Exited(status) => Ok(status),
            other => Err(self.unexpected("wait", &other)),
        }
    }

    /// Starts another process (an OCI `process` object) in a running container; gives
    /// back its guest PID. Its output waits in the guest until streams are attached.
    pub fn exec(
        &mut self,
        container_id: &str,
        exec_id: &str,
        process: serde_json::Value,
    ) -> Result<u32, ClientError> {
        let body = RequestBody::Exec {
            container_id: container_id.to_owned(),
            exec_id: exec_id.to_owned(),
            process,
        };
        self.started("exec", body)
    }

    /// Closes a process's stdin: it reads end of file.
    pub fn close_stdin(
        &mut self,
        container_id: &str,
        exec_id: Option<&str>,
    ) -> Result<(), ClientError> {
        let body = RequestBody::CloseStdin {
            container_id: container_id.to_owned(),
            exec_id: exec_id.map(str::to_owned),
        };
        self.done("close_stdin", body)
    }

    /// Resizes a process's terminal.
    pub fn resize_tty(
        &mut self,
        container_id: &str,
        exec_id: Option<&str>,
        rows: u16,
        cols: u16,
    ) -> Result<(), ClientError> {
        let body = RequestBody::ResizeTty {
            container_id: container_id.to_owned(),
            exec_id: exec_id.map(str::to_owned),
            rows,
            cols,
        };
        self.done("resize_tty", body)
    }

    /// Resource usage of a container's processes.
    pub fn stats(&mut self, container_id: &str) -> Result<ContainerStats, ClientError> {
        let body = RequestBody::Stats {
            container_id: container_id.to_owned(),
        };
        match self.request(body)? {
            ResponseBody::Stats(stats) => Ok(stats),
            other => Err(self.unexpected("stats", &other)),
        }
    }

    /// Guest PIDs of a container's processes, ascending.
    pub fn processes(&mut self, container_id: &str) -> Result<Vec<i32>, ClientError> {
        let body = RequestBody::Processes {
            container_id: container_id.to_owned(),
        };
        match self.request(body)? {
            ResponseBody::Processes { pids } => Ok(pids),
            other => Err(self.unexpected("processes", &other)),
        }
    }

    /// Configures the guest's network interfaces and routes.
    pub fn configure_network(
        &mut self,
        network: husk_protocol::network::NetworkConfig,
    ) -> Result<(), ClientError> {
        match self.request(RequestBody::ConfigureNetwork { network })? {
            ResponseBody::Done => Ok(()),
            other => Err(self.unexpected("configure_network", &other)),
        }
    }

    /// Freezes a container's processes; returns once the guest says they are frozen.
    pub fn pause(&mut self, container_id: &str) -> Result<(), ClientError> {
        let body = RequestBody::Pause {
            container_id: container_id.to_owned(),
        };
        self.done("pause", body)
    }

    /// Thaws a paused container.
    pub fn resume(&mut self, container_id: &str) -> Result<(), ClientError> {
        let body = RequestBody::Resume {
            container_id: container_id.to_owned(),
        };
        self.done("resume", body)
    }

    /// Changes a container's cgroup limits to those set in `resources` (an OCI
    /// `linux.resources` object).
    pub fn update(
        &mut self,
        container_id: &str,
        resources: serde_json::Value,
    ) -> Result<(), ClientError> {
        let body = RequestBody::Update {
            container_id: container_id.to_owned(),
            resources,
        };
        self.done("update", body)
    }

    /// Waits up to `wait` (at most a minute) for an OOM kill in some container of the
    /// guest; gives its id, or `None` when the time passed first. Each OOM kill is
    /// reported once.
    pub fn oom_event(&mut self, wait: Duration) -> Result<Option<String>, ClientError> {
        let body = RequestBody::OomEvent {
            timeout_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let id = self.send(body)?;
        let after = wait + self.timeouts.request;
        match self.answer_by(id, "oom_event", Some(Instant::now() + after), after)? {
            ResponseBody::OomEvent { container_id } => Ok(container_id),
            other => Err(self.unexpected("oom_event", &other)),
        }
    }

    /// A request answered `started`.
    fn started(&mut self, during: &'static str, body: RequestBody) -> Result<u32, ClientError> {
        match self.request(body)? {
            ResponseBody::Started { pid } => Ok(pid),
            other => Err(self.unexpected(during, &other)),
        }
    }

    /// A request answered `done`.
    fn done(&mut self, during: &'static str, body: RequestBody) -> Result<(), ClientError> {
        match self.request(body)? {
            ResponseBody::Done => Ok(()),
            other => Err(self.unexpected(during, &other)),
        }
    }
}
