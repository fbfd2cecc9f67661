//! husk's configuration file (`/etc/husk/config.toml`, or `$HUSK_CONFIG`) and the
//! per-container VM settings resolved from it, the spec's resources and annotations.

use crate::error::RuntimeError;
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration file read when `$HUSK_CONFIG` is not set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/husk/config.toml";
/// The environment variable naming another configuration file (tests use it).
pub const CONFIG_ENV: &str = "HUSK_CONFIG";
/// The guest kernel when `kernel` is not set (`tests/setup.sh` installs it).
pub const DEFAULT_KERNEL: &str = "/usr/local/share/husk/vmlinux";
/// The initramfs when `initramfs` is not set (`tests/setup.sh` installs it).
pub const DEFAULT_INITRAMFS: &str = "/usr/local/share/husk/initramfs.cpio.gz";
/// Annotation that sets the number of vCPUs of a container's VM.
pub const ANNOTATION_VCPUS: &str = "io.husk.vcpus";
/// Annotation that sets the guest memory (MiB) of a container's VM.
pub const ANNOTATION_MEMORY: &str = "io.husk.memory_mib";
/// containerd's CRI annotation (1.7 and later) with the pod's memory limit in bytes,
/// on a pod's sandbox container: the sum of its containers' limits and the
/// RuntimeClass's `overhead`.
pub const POD_MEMORY: &str = "io.kubernetes.cri.sandbox-memory";
/// containerd's CRI annotations with the pod's CPU quota and period.
pub const POD_CPU_QUOTA: &str = "io.kubernetes.cri.sandbox-cpu-quota";
/// See [`POD_CPU_QUOTA`].
pub const POD_CPU_PERIOD: &str = "io.kubernetes.cri.sandbox-cpu-period";
/// Added to `linux.resources.memory.limit` for the guest kernel, the agent and the
/// page cache, so that a container limited to L gets a guest of L + this.
pub const MEMORY_OVERHEAD_MIB: u64 = 128;
/// The smallest guest husk boots (kernel, agent and a small container).
pub const MIN_MEMORY_MIB: u64 = 64;
/// The most vCPUs a guest can have (husk-vmm's MP table limit).
pub const MAX_VCPUS: u8 = husk_vmm::builder::MAX_VCPUS;

/// The configuration file, as written (every key optional).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HuskConfig {
    /// Guest kernel (ELF vmlinux or bzImage); default [`DEFAULT_KERNEL`].
    pub kernel: Option<PathBuf>,
    /// Initramfs with the agent as `/init`; default [`DEFAULT_INITRAMFS`].
    pub initramfs: Option<PathBuf>,
    /// vCPUs of a VM whose spec does not say (default 1).
    pub vcpus: u8,
    /// Guest memory in MiB of a VM whose spec does not say (default 256).
    pub memory_mib: u64,
    /// virtiofsd; default: `virtiofsd` on `PATH`, then `/usr/libexec/virtiofsd`.
    pub virtiofsd: Option<PathBuf>,
    /// How long the guest may take to boot to its agent (default 30 s).
    pub boot_timeout_secs: u64,
    /// How long one agent request may take (default 30 s).
    pub agent_request_timeout_secs: u64,
    /// How long virtiofsd may take to open its socket (default 10 s).
    pub virtiofsd_start_timeout_secs: u64,
    /// Log level of the sandbox process (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: Option<String>,
}

impl Default for HuskConfig {
    fn default() -> Self {
        HuskConfig {
            kernel: None,
            initramfs: None,
            vcpus: 1,
            memory_mib: 256,
            virtiofsd: None,
            boot_timeout_secs: 30,
            agent_request_timeout_secs: 30,
            virtiofsd_start_timeout_secs: 10,
            log_level: None,
        }
    }
}

/// The VM settings of one container, resolved at `create` and kept in its state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxConfig {
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initramfs: PathBuf,
    /// Number of vCPUs.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// The virtiofsd binary.
    pub virtiofsd: PathBuf,
    /// Boot to agent readiness.
    pub boot_timeout: Duration,
    /// One agent request.
    pub request_timeout: Duration,
    /// virtiofsd's socket to appear.
    pub virtiofsd_timeout: Duration,
    /// Log level for the sandbox process, if configured.
    #[serde(default)]
    pub log_level: Option<String>,
}

/// What the host offers, to cap sizes derived from `linux.resources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// CPUs of the host.
    pub cpus: u8,
    /// Memory of the host, MiB.
    pub memory_mib: u64,
}

impl HostLimits {
    /// Reads the host's CPU count and `MemTotal`.
    pub fn detect() -> Self {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(usize::from(MAX_VCPUS)) as u8;
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kib| kib / 1024)
            .unwrap_or(u64::MAX);
        HostLimits { cpus, memory_mib }
    }
}

impl HuskConfig {
    /// Reads `$HUSK_CONFIG` if set (it must exist), else `/etc/husk/config.toml` if
    /// it exists, else the defaults.
    pub fn load() -> Result<Self, RuntimeError> {
        match std::env::var_os(CONFIG_ENV) {
            Some(path) => Self::load_from(Path::new(&path), true),
            None => Self::load_from(Path::new(DEFAULT_CONFIG_PATH), false),
        }
    }

    /// Reads `path`; a missing file gives the defaults unless `required`.
    pub fn load_from(path: &Path, required: bool) -> Result<Self, RuntimeError> {
        let err = |message: String| RuntimeError::Config {
            path: path.to_path_buf(),
            message,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Self::default())
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let config: HuskConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        if config.vcpus == 0 || config.vcpus > MAX_VCPUS {
            return Err(err(format!(
                "vcpus = {}: must be 1 to {MAX_VCPUS}",
                config.vcpus
            )));
        }
        if config.memory_mib < MIN_MEMORY_MIB {
            return Err(err(format!(
                "memory_mib = {}: must be at least {MIN_MEMORY_MIB}",
                config.memory_mib
            )));
        }
        Ok(config)
    }

    /// The guest kernel to use.
    pub fn kernel_path(&self) -> PathBuf {
        self.kernel.clone().unwrap_or_else(|| DEFAULT_KERNEL.into())
    }

    /// The initramfs to use.
    pub fn initramfs_path(&self) -> PathBuf {
        self.initramfs
            .clone()
            .unwrap_or_else(|| DEFAULT_INITRAMFS.into())
    }

    /// The virtiofsd to use, if one is configured or found.
    pub fn virtiofsd_path(&self) -> Option<PathBuf> {
        self.virtiofsd
            .clone()
            .or_else(husk_vmm::virtiofsd::find_binary)
    }

    /// Resolves one container's VM settings. Precedence, highest first: the
    /// annotations `io.husk.vcpus` / `io.husk.memory_mib`; `linux.resources`
    /// (vCPUs = ceil(cpu.quota / cpu.period), at least 1, at most the host's CPUs;
    /// memory = memory.limit + [`MEMORY_OVERHEAD_MIB`], at most the host's memory);
    /// this file's `vcpus` / `memory_mib`.
    pub fn resolve(
        &self,
        annotations: &BTreeMap<String, String>,
        resources: Option<&LinuxResources>,
        host: HostLimits,
    ) -> Result<SandboxConfig, RuntimeError> {
        let pod_number = |key: &str| {
            annotations
                .get(key)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .and_then(|v| u64::try_from(v).ok())
                .filter(|v| *v > 0)
        };
        let pod_vcpus = pod_number(POD_CPU_QUOTA)
            .zip(pod_number(POD_CPU_PERIOD))
            .map(|(quota, period)| quota.div_ceil(period).max(1));
        let pod_memory = pod_number(POD_MEMORY).map(|limit| {
            limit
                .div_ceil(1024 * 1024)
                .saturating_add(MEMORY_OVERHEAD_MIB)
        });
        let vcpus = match annotations.get(ANNOTATION_VCPUS) {
            Some(v) => parse_annotation(ANNOTATION_VCPUS, v, 1, u64::from(MAX_VCPUS))? as u8,
            None => pod_vcpus
                .or_else(|| resources.and_then(vcpus_from_resources))
                .map(|n| n.min(u64::from(host.cpus.max(1))) as u8)
                .unwrap_or(self.vcpus),
        };
        let memory_mib = match annotations.get(ANNOTATION_MEMORY) {
            Some(v) => parse_annotation(ANNOTATION_MEMORY, v, MIN_MEMORY_MIB, host.memory_mib)?,
            None => pod_memory
                .or_else(|| resources.and_then(memory_from_resources))
                .map(|m| m.clamp(MIN_MEMORY_MIB, host.memory_mib.max(MIN_MEMORY_MIB)))
                .unwrap_or(self.memory_mib),
        };
        let virtiofsd = self.virtiofsd_path().ok_or_else(|| RuntimeError::Config {
            path: config_path(),
            message: "virtiofsd not found on PATH nor at /usr/libexec/virtiofsd; \
                      install it or set `virtiofsd`"
                .into(),
        })?;
        Ok(SandboxConfig {
            kernel: self.kernel_path(),
            initramfs: self.initramfs_path(),
            vcpus,
            memory_mib,
            virtiofsd,
            boot_timeout: Duration::from_secs(self.boot_timeout_secs),
            request_timeout: Duration::from_secs(self.agent_request_timeout_secs),
            virtiofsd_timeout: Duration::from_secs(self.virtiofsd_start_timeout_secs),
            log_level: self.log_level.clone(),
        })
    }
}

/// The configuration file in effect (for messages).
pub fn config_path() -> PathBuf {
    std::env::var_os(CONFIG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_CONFIG_PATH.into())
}

fn parse_annotation(name: &str, value: &str, min: u64, max: u64) -> Result<u64, RuntimeError> {
    let bad = |message: String| RuntimeError::InvalidAnnotation {
        name: name.into(),
        value: value.into(),
        message,
    };
    let n: u64 = value
        .trim()
        .parse()
        .map_err(|_| bad("not a whole number".into()))?;
    if n < min || n > max {
        return Err(bad(format!("must be {min} to {max}")));
    }
    Ok(n)
}

/// ceil(quota / period) when both are set and positive.
fn vcpus_from_resources(resources: &LinuxResources) -> Option<u64> {
    let cpu = resources.cpu().as_ref()?;
    let quota = u64::try_from(cpu.quota()?).ok().filter(|q| *q > 0)?;
    let period = cpu.period().filter(|p| *p > 0)?;
    Some(quota.div_ceil(period).max(1))
}

/// memory.limit in MiB (rounded up) plus the overhead, when set and positive.
fn memory_from_resources(resources: &LinuxResources) -> Option<u64> {
    let limit = u64::try_from(resources.memory().as_ref()?.limit()?)
        .ok()
        .filter(|l| *l > 0)?;
    Some(
        limit
            .div_ceil(1024 * 1024)
            .saturating_add(MEMORY_OVERHEAD_MIB),
    )
}

#[cfg(test)]
mod tests;
