//! Requests and responses, after the handshake.
//!
//! A client sends [`Request`] frames; the agent answers each with a [`Response`]
//! carrying the same `id`, in order. One request is outstanding per connection at a
//! time; clients that need concurrency (e.g. a blocking `Wait`) open more connections.

use super::AgentError;
use serde::{Deserialize, Serialize};

/// A request frame.
///
/// JSON: `{"id":1,"body":{"type":"health"}}`. Clients number requests from 1; the
/// agent answers a request it could not parse with id 0 unless it could read the id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    /// What is asked.
    pub body: RequestBody,
}

/// What a [`Request`] asks. JSON: an object whose `type` names the variant in
/// snake_case, beside the variant's fields (e.g. `{"type":"stream_sink","bytes":1024}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RequestBody {
    /// The agent's versions. Answer: [`ResponseBody::Version`].
    Version,
    /// Liveness and guest load. Answer: [`ResponseBody::Health`].
    Health,
    /// Create a container from an OCI bundle's `config.json` and a root filesystem
    /// path inside the guest. The process is created and held before `exec` until
    /// `StartContainer`. Answer: [`ResponseBody::Created`].
    CreateContainer {
        /// The container's ID.
        container_id: String,
        /// The OCI runtime spec (`config.json`), as JSON.
        bundle_spec: serde_json::Value,
        /// The root filesystem's path inside the guest.
        rootfs: String,
    },
    /// Start a created container's process. Answer: [`ResponseBody::Started`].
    StartContainer {
        /// The container's ID.
        container_id: String,
    },
    /// Send a signal to a container's process (`exec_id: null`) or to an exec'd one.
    /// Answer: [`ResponseBody::Done`].
    Signal {
        /// The container's ID.
        container_id: String,
        /// The exec'd process, or `null` for the container's own process.
        exec_id: Option<String>,
        /// The signal number.
        signal: i32,
    },
    /// Wait for a process to exit; answered when it does. Answer: [`ResponseBody::Exited`].
    Wait {
        /// The container's ID.
        container_id: String,
        /// The exec'd process, or `null` for the container's own process.
        exec_id: Option<String>,
    },
    /// Start another process in a running container. Answer: [`ResponseBody::Started`].
    Exec {
        /// The container's ID.
        container_id: String,
        /// The new process's ID, chosen by the client.
        exec_id: String,
        /// The OCI `process` object.
        process: serde_json::Value,
    },
    /// Resize a process's terminal. Answer: [`ResponseBody::Done`].
    ResizeTty {
        /// The container's ID.
        container_id: String,
        /// The exec'd process, or `null` for the container's own process.
        exec_id: Option<String>,
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Close a process's standard input. Answer: [`ResponseBody::Done`].
    CloseStdin {
        /// The container's ID.
        container_id: String,
        /// The exec'd process, or `null` for the container's own process.
        exec_id: Option<String>,
    },
    /// Resource usage of a container. Answer: [`ResponseBody::Stats`].
    Stats {
        /// The container's ID.
        container_id: String,
    },
    /// The guest PIDs of a container's processes (its process, the exec'd ones, and
    /// their descendants), ascending. Answer: [`ResponseBody::Processes`].
    Processes {
        /// The container's ID.
        container_id: String,
    },
    /// Freeze a container's processes (its cgroup's `cgroup.freeze`); answered once the
    /// cgroup reports itself frozen. Answer: [`ResponseBody::Done`]. (Version 2.)
    Pause {
        /// The container's ID.
        container_id: String,
    },
    /// Thaw a paused container. Answer: [`ResponseBody::Done`]. (Version 2.)
    Resume {
        /// The container's ID.
        container_id: String,
    },
    /// Change a container's cgroup limits. Answer: [`ResponseBody::Done`]. (Version 2.)
    Update {
        /// The container's ID.
        container_id: String,
        /// An OCI `linux.resources` object; only the fields set are changed.
        resources: serde_json::Value,
    },
    /// Wait until a container's cgroup records an OOM kill, or `timeout_ms` passes.
    /// Answer: [`ResponseBody::OomEvent`]. (Version 2.)
    OomEvent {
        /// How long to wait, milliseconds (at most 60 000).
        timeout_ms: u64,
    },
    /// Remove a container of a pod's VM: its processes are killed, its cgroup and
    /// its entry go. Answer: [`ResponseBody::Done`] once nothing of it is left.
    RemoveContainer {
        /// The container's ID.
        container_id: String,
    },
    /// End the VM. Answer: [`ResponseBody::Done`], then the VM stops; a client that
    /// sees the connection close instead of the answer may take it as done.
    Shutdown,
    /// Diagnostic: after the `Ready` answer the client sends exactly `bytes` raw bytes;
    /// the agent then answers again, with the same id: [`ResponseBody::SinkDigest`].
    StreamSink {
        /// How many raw bytes follow.
        bytes: u64,
    },
    /// Diagnostic: after the `Ready` answer the agent sends `bytes` raw bytes of the
    /// stream of [`super::diag::StreamGenerator`] seeded with `seed`.
    StreamSource {
        /// How many raw bytes to send.
        bytes: u64,
        /// The generator's seed.
        seed: u64,
    },
    /// Configure the guest's network interfaces and routes (before the container is
    /// created). Answer: [`ResponseBody::Done`].
    ConfigureNetwork {
        /// What the host found in the container's network namespace.
        network: super::network::NetworkConfig,
    },
}

impl RequestBody {
    /// The variant's wire name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            RequestBody::Version => "version",
            RequestBody::Health => "health",
            RequestBody::CreateContainer { .. } => "create_container",
            RequestBody::StartContainer { .. } => "start_container",
            RequestBody::Signal { .. } => "signal",
            RequestBody::Wait { .. } => "wait",
            RequestBody::Exec { .. } => "exec",
            RequestBody::ResizeTty { .. } => "resize_tty",
            RequestBody::CloseStdin { .. } => "close_stdin",
            RequestBody::Stats { .. } => "stats",
            RequestBody::Processes { .. } => "processes",
            RequestBody::Pause { .. } => "pause",
            RequestBody::Resume { .. } => "resume",
            RequestBody::Update { .. } => "update",
            RequestBody::OomEvent { .. } => "oom_event",
            RequestBody::RemoveContainer { .. } => "remove_container",
            RequestBody::Shutdown => "shutdown",
            RequestBody::StreamSink { .. } => "stream_sink",
            RequestBody::StreamSource { .. } => "stream_source",
            RequestBody::ConfigureNetwork { .. } => "configure_network",
        }
    }
}

/// A response frame.
///
/// JSON: `{"id":1,"result":{"ok":{"type":"done"}}}` or
/// `{"id":1,"result":{"error":{"code":"unsupported","message":"..."}}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request answered.
    pub id: u64,
    /// The answer.
    #[serde(with = "wire_result")]
    pub result: Result<ResponseBody, AgentError>,
}

/// A successful answer. JSON: tagged by `type` like [`RequestBody`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBody {
    /// Answer to `version`.
    Version {
        /// The protocol version of this connection.
        protocol_version: u32,
        /// The agent's release version.
        agent_version: String,
    },
    /// Answer to `health`.
    Health(Health),
    /// The request was carried out; nothing to report.
    Done,
    /// Answer to `create_container`: the container's process exists and waits for
    /// `start_container` before it runs the container's program.
    Created {
        /// Its PID inside the guest.
        pid: u32,
    },
    /// A process was started.
    Started {
        /// Its PID inside the guest.
        pid: u32,
    },
    /// Answer to `wait`: the process exited.
    Exited(ExitStatus),
    /// Answer to `stats`.
    Stats(ContainerStats),
    /// Answer to `processes`.
    Processes {
        /// Guest PIDs, ascending.
        pids: Vec<i32>,
    },
    /// Answer to `oom_event`: the container whose OOM kill count rose, or `null` when
    /// the timeout passed first.
    OomEvent {
        /// The container's ID.
        container_id: Option<String>,
    },
    /// A diagnostic stream may begin.
    Ready,
    /// The end of a `stream_sink`: what the agent received.
    SinkDigest(SinkDigest),
}

/// Liveness and load of the guest, from `/proc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Milliseconds since the guest kernel started.
    pub uptime_ms: u64,
    /// 1, 5 and 15 minute load averages.
    pub load_avg: [f64; 3],
    /// Memory the guest kernel manages, KiB.
    pub mem_total_kib: u64,
    /// Memory available to new work, KiB.
    pub mem_available_kib: u64,
    /// Protocol connections the agent serves now, this one included.
    pub connections: u32,
}

/// How a process ended: exactly one of the two fields is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, if the process exited.
    pub exit_code: Option<i32>,
    /// The signal number, if a signal killed the process.
    pub signal: Option<i32>,
}

/// Resource usage of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    /// CPU time used, nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory in use, bytes.
    pub memory_bytes: u64,
    /// Number of processes.
    pub pids: u64,
    /// The figures of the container's cgroup, when it has one. (Version 2.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<CgroupStats>,
}

/// A container's cgroup figures; a figure whose file is missing (controller not
/// enabled) reads 0, a limit `null` when unlimited (`max`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStats {
    /// `memory.current`, bytes.
    pub memory_current: u64,
    /// `memory.max`, bytes; `null`: no limit.
    pub memory_max: Option<u64>,
    /// `memory.stat` `anon`, bytes.
    pub memory_anon: u64,
    /// `memory.stat` `file`, bytes.
    pub memory_file: u64,
    /// `cpu.stat` `usage_usec`.
    pub cpu_usage_usec: u64,
    /// `cpu.stat` `user_usec`.
    pub cpu_user_usec: u64,
    /// `cpu.stat` `system_usec`.
    pub cpu_system_usec: u64,
    /// `pids.current`.
    pub pids_current: u64,
    /// `pids.max`; `null`: no limit.
    pub pids_max: Option<u64>,
    /// `memory.events` `oom`.
    pub oom: u64,
    /// `memory.events` `oom_kill`.
    pub oom_kill: u64,
    /// Whether the cgroup is frozen (`cgroup.events` `frozen`).
    pub frozen: bool,
}

/// What the agent read during a `stream_sink`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkDigest {
    /// Bytes read.
    pub bytes: u64,
    /// Their SHA-256, lowercase hex.
    pub sha256: String,
}

/// `Result` on the wire as `{"ok": ...}` or `{"error": ...}`.
mod wire_result {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Wire<T, E> {
        Ok(T),
        Error(E),
    }

    pub fn serialize<S, T, E>(value: &Result<T, E>, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Serialize,
        E: Serialize,
    {
        match value {
            Ok(v) => Wire::<&T, &E>::Ok(v).serialize(s),
            Err(e) => Wire::<&T, &E>::Error(e).serialize(s),
        }
    }

    pub fn deserialize<'de, D, T, E>(d: D) -> Result<Result<T, E>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
        E: Deserialize<'de>,
    {
        Ok(match Wire::<T, E>::deserialize(d)? {
            Wire::Ok(v) => Ok(v),
            Wire::Error(e) => Err(e),
        })
    }
}
