//! The `husk` command line, runc-compatible (clap derive).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// The default state root.
pub const DEFAULT_ROOT: &str = "/run/husk";

/// husk: an OCI container runtime that runs each container in its own KVM microVM.
#[derive(Debug, Parser)]
#[command(name = "husk", version, about)]
pub struct Cli {
    /// Global options (runc's).
    #[command(flatten)]
    pub global: GlobalOpts,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// runc's global options; accepted before or after the command.
#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Directory for the containers' state.
    #[arg(long, global = true, default_value = DEFAULT_ROOT, value_name = "DIR")]
    pub root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug lines too.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Use systemd for cgroups (accepted and ignored: the VM is husk's cgroup).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    /// Rootless mode: `true` is refused (husk runs as root); `false`/`auto` accepted.
    #[arg(long, global = true, value_name = "true|false|auto")]
    pub rootless: Option<String>,
    /// Path to criu (accepted and ignored: no checkpointing).
    #[arg(long, global = true, value_name = "PATH")]
    pub criu: Option<PathBuf>,
}

/// Log line formats, as runc's `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `time="..." level=error msg="..."`
    Text,
    /// `{"level":"error","msg":"...","time":"..."}`
    Json,
}

/// Output formats of `list` and `ps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns.
    Table,
    /// JSON.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container (boot its microVM); `start` runs its process.
    Create(CreateArgs),
    /// Start a created container's process.
    Start(IdArg),
    /// Create and start a container; without -d wait and exit with its status.
    Run(RunArgs),
    /// Print the OCI state of a container.
    State(IdArg),
    /// Send a signal to a container's init process.
    Kill(KillArgs),
    /// Delete a container and everything it holds.
    Delete(DeleteArgs),
    /// List containers.
    List(ListArgs),
    /// Run another process in a running container.
    Exec(ExecArgs),
    /// List a container's processes (guest PIDs).
    Ps(PsArgs),
    /// Write a default config.json in a bundle.
    Spec(SpecArgs),
    /// Print what this runtime supports (JSON).
    Features,
    /// Tell whether this host can run husk microVMs, and why not.
    Check(CheckArgs),
    /// Freeze a container's processes (its cgroup in the guest).
    Pause(IdArg),
    /// Thaw a paused container.
    Resume(IdArg),
    /// Print a container's stats (--stats), or stream stats and OOM events.
    Events(EventsArgs),
    /// Change a container's cgroup limits in the guest.
    Update(UpdateArgs),
}

/// A command that takes only a container id.
#[derive(Debug, Args)]
pub struct IdArg {
    /// Container id.
    pub id: String,
}

/// `create`'s options (shared with `run`).
#[derive(Debug, Clone, Args)]
pub struct CreateOpts {
    /// The bundle directory.
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
    /// Unix socket to receive the terminal's master.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// File to write the sandbox process's pid to.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Pass N more descriptors (3 ..= 2+N) to the container.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// Accepted; husk never uses pivot_root on the host.
    #[arg(long)]
    pub no_pivot: bool,
    /// Accepted; there is no session keyring on the host side.
    #[arg(long)]
    pub no_new_keyring: bool,
}

/// `create ID`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Container id.
    pub id: String,
    /// Options.
    #[command(flatten)]
    pub opts: CreateOpts,
}

/// `run ID`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Container id.
    pub id: String,
    /// Options of `create`.
    #[command(flatten)]
    pub opts: CreateOpts,
    /// Return once started.
    #[arg(short, long)]
    pub detach: bool,
    /// Keep the container after it exits (without -d).
    #[arg(long)]
    pub keep: bool,
}

/// `kill ID [SIGNAL]`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Container id.
    pub id: String,
    /// Signal: name (`KILL`, `SIGKILL`) or number (`9`).
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
    /// Signal all the container's processes.
    #[arg(short, long)]
    pub all: bool,
}

/// `delete ID`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Container id.
    pub id: String,
    /// Kill and delete a running container.
    #[arg(short, long)]
    pub force: bool,
}

/// `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Print only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `exec ID [COMMAND ARGS...]`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container id.
    pub id: String,
    /// The command and its arguments (unless --process).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// JSON file with the OCI process to run.
    #[arg(short, long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Return once started.
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the pid to.
    #[arg(long, value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to receive the terminal's master.
    #[arg(long, value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    /// Working directory.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Environment variable NAME=VALUE (repeatable).
    #[arg(short, long, value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// UID[:GID].
    #[arg(short, long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    /// Additional group ids (repeatable).
    #[arg(short = 'g', long, value_name = "GID")]
    pub additional_gids: Vec<u32>,
    /// Add a capability (repeatable).
    #[arg(short = 'c', long, value_name = "CAP")]
    pub cap: Vec<String>,
    /// Set no_new_privs.
    #[arg(long)]
    pub no_new_privs: bool,
    /// Pass N more descriptors.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub preserve_fds: u32,
    /// SELinux label of the process.
    #[arg(long, value_name = "LABEL")]
    pub process_label: Option<String>,
    /// AppArmor profile of the process.
    #[arg(long, value_name = "PROFILE")]
    pub apparmor: Option<String>,
    /// Exec in a paused container too.
    #[arg(long)]
    pub ignore_paused: bool,
}

/// `ps ID [PS_ARGS...]`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Container id.
    pub id: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Arguments for ps(1) (not supported: husk lists guest PIDs).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

/// `spec`.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// The bundle directory to write config.json in. (`--rootless`, the global
    /// flag, is refused: husk runs as root.)
    #[arg(short, long, default_value = ".", value_name = "DIR")]
    pub bundle: PathBuf,
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print nothing; only the exit status tells.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `events ID`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Container id.
    pub id: String,
    /// Print stats once and exit.
    #[arg(long)]
    pub stats: bool,
    /// Stats interval (Go durations: 5s, 500ms, 1m).
    #[arg(long, value_name = "DURATION", default_value = "5s")]
    pub interval: String,
}

/// `update [FLAGS] ID`: runc's flags.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Container id.
    pub id: String,
    /// A JSON file of OCI `linux.resources` ("-": stdin); instead of the flags.
    #[arg(short, long, value_name = "FILE")]
    pub resources: Option<PathBuf>,
    /// Memory limit (bytes, or with k, m, g; -1: none).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit (memory.low).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: no swap limit).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long, alias = "cpu-shares", value_name = "SHARES")]
    pub cpu_share: Option<u64>,
    /// CPU CFS quota, microseconds per period (-1: none).
    #[arg(long, value_name = "USEC", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU CFS period, microseconds.
    #[arg(long, value_name = "USEC")]
    pub cpu_period: Option<u64>,
    /// CPUs allowed (0-3, 0,1).
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long, value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// Process limit (-1: none).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Block IO weight (not supported).
    #[arg(long, value_name = "WEIGHT")]
    pub blkio_weight: Option<u16>,
    /// Real-time period (not supported).
    #[arg(long, value_name = "USEC")]
    pub cpu_rt_period: Option<u64>,
    /// Real-time runtime (not supported).
    #[arg(long, value_name = "USEC", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// Kernel memory limit (not supported; deprecated in runc).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP memory limit (not supported; deprecated in runc).
    #[arg(long, value_name = "BYTES", allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Intel RDT L3 cache schema (not supported).
    #[arg(long, value_name = "SCHEMA")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported).
    #[arg(long, value_name = "SCHEMA")]
    pub mem_bw_schema: Option<String>,
}

#[cfg(test)]
mod tests;
