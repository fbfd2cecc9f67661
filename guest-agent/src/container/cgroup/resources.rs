//! OCI `linux.resources` to cgroup v2 files, with runc's conversions.
//!
//! Applied: `memory.limit` (`memory.max`), `memory.reservation` (`memory.low`),
//! `memory.swap` (`memory.swap.max` = swap − limit; skipped where the guest has no
//! swap), `cpu.shares` (`cpu.weight`), `cpu.quota`/`cpu.period` (`cpu.max`),
//! `cpu.cpus`/`cpu.mems` (`cpuset.cpus`/`cpuset.mems`), `pids.limit` (`pids.max`).
//! Anything else set is listed by [`Plan::unsupported`]: ignored at create, refused by
//! `update`. `devices` is never listed: the microVM is the device boundary.

use super::{write_file, Cgroup};
use husk_protocol::{AgentError, ErrorCode};
use serde::Deserialize;
use std::io;

/// The fields of `linux.resources` husk reads; the rest only to name them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resources {
    memory: Option<Memory>,
    cpu: Option<Cpu>,
    pids: Option<Pids>,
    #[serde(rename = "blockIO")]
    block_io: Option<serde_json::Value>,
    hugepage_limits: Option<Vec<serde_json::Value>>,
    network: Option<serde_json::Value>,
    rdma: Option<serde_json::Map<String, serde_json::Value>>,
    unified: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Memory {
    limit: Option<i64>,
    reservation: Option<i64>,
    swap: Option<i64>,
    kernel: Option<i64>,
    #[serde(rename = "kernelTCP")]
    kernel_tcp: Option<i64>,
    swappiness: Option<u64>,
    #[serde(rename = "disableOOMKiller")]
    disable_oom_killer: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cpu {
    shares: Option<u64>,
    quota: Option<i64>,
    period: Option<u64>,
    realtime_runtime: Option<i64>,
    realtime_period: Option<u64>,
    cpus: Option<String>,
    mems: Option<String>,
    idle: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
struct Pids {
    limit: i64,
}

/// What applying a `linux.resources` object writes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// (file, value) in order.
    pub writes: Vec<(&'static str, String)>,
    /// `cpu.max` when only the period is given: the current quota is kept.
    pub period_only: Option<u64>,
    /// The fields set that husk does not apply, by their OCI names.
    pub unsupported: Vec<&'static str>,
}

/// Reads a `linux.resources` object (`null` is empty) into a [`Plan`]; bad values
/// are `invalid_argument`, naming the field.
pub fn plan(resources: &serde_json::Value) -> Result<Plan, AgentError> {
    if resources.is_null() {
        return Ok(Plan::default());
    }
    let r: Resources = serde_json::from_value(resources.clone())
        .map_err(|e| invalid(format!("linux.resources: {e}")))?;
    let mut plan = Plan::default();
    if let Some(m) = &r.memory {
        memory(m, &mut plan)?;
    }
    if let Some(c) = &r.cpu {
        cpu(c, &mut plan)?;
    }
    if let Some(p) = &r.pids {
        match p.limit {
            0 => {}
            n if n < 0 => plan.writes.push(("pids.max", "max".into())),
            n => plan.writes.push(("pids.max", n.to_string())),
        }
    }
    let set = |b: bool, name: &'static str, plan: &mut Plan| {
        if b {
            plan.unsupported.push(name);
        }
    };
    set(
        r.block_io.as_ref().is_some_and(|v| !is_empty(v)),
        "blockIO",
        &mut plan,
    );
    set(
        r.hugepage_limits.as_ref().is_some_and(|v| !v.is_empty()),
        "hugepageLimits",
        &mut plan,
    );
    set(
        r.network.as_ref().is_some_and(|v| !is_empty(v)),
        "network",
        &mut plan,
    );
    set(
        r.rdma.as_ref().is_some_and(|v| !v.is_empty()),
        "rdma",
        &mut plan,
    );
    set(
        r.unified.as_ref().is_some_and(|v| !v.is_empty()),
        "unified",
        &mut plan,
    );
    Ok(plan)
}

fn memory(m: &Memory, plan: &mut Plan) -> Result<(), AgentError> {
    let limit = m.limit.unwrap_or(0);
    if let Some(value) = swap_max(m.swap.unwrap_or(0), limit)? {
        plan.writes.push(("memory.swap.max", value));
    }
    match limit {
        0 => {}
        -1 => plan.writes.push(("memory.max", "max".into())),
        n if n < 0 => return Err(invalid(format!("memory.limit {n} is invalid"))),
        n => plan.writes.push(("memory.max", n.to_string())),
    }
    match m.reservation.unwrap_or(0) {
        0 => {}
        -1 => plan.writes.push(("memory.low", "max".into())),
        n if n < 0 => return Err(invalid(format!("memory.reservation {n} is invalid"))),
        n => plan.writes.push(("memory.low", n.to_string())),
    }
    if m.kernel.is_some_and(|k| k != 0) {
        plan.unsupported.push("memory.kernel");
    }
    if m.kernel_tcp.is_some_and(|k| k != 0) {
        plan.unsupported.push("memory.kernelTCP");
    }
    if m.swappiness.is_some_and(|s| s != 0) {
        plan.unsupported.push("memory.swappiness");
    }
    if m.disable_oom_killer == Some(true) {
        plan.unsupported.push("memory.disableOOMKiller");
    }
    Ok(())
}

/// runc's conversion of the OCI memory+swap total to `memory.swap.max`; `None`: not
/// set.
fn swap_max(swap: i64, limit: i64) -> Result<Option<String>, AgentError> {
    match (swap, limit) {
        (0, -1) | (-1, _) => Ok(Some("max".into())),
        (0, _) => Ok(None),
        (_, 0) | (_, -1) => Err(invalid("memory.swap cannot be set without memory.limit")),
        (s, l) if s < l => Err(invalid(format!(
            "memory.swap {s} is below memory.limit {l} (it counts memory and swap together)"
        ))),
        (s, l) => Ok(Some((s - l).to_string())),
    }
}

fn cpu(c: &Cpu, plan: &mut Plan) -> Result<(), AgentError> {
    if let Some(shares) = c.shares.filter(|&s| s != 0) {
        plan.writes
            .push(("cpu.weight", shares_to_weight(shares).to_string()));
    }
    match (c.quota, c.period.filter(|&p| p != 0)) {
        (None | Some(0), None) => {}
        (None, Some(period)) => plan.period_only = Some(period),
        (Some(quota), period) => {
            let quota = if quota > 0 {
                quota.to_string()
            } else {
                "max".into()
            };
            plan.writes
                .push(("cpu.max", format!("{quota} {}", period.unwrap_or(100_000))));
        }
    }
    if let Some(cpus) = c.cpus.as_deref().filter(|s| !s.is_empty()) {
        plan.writes.push(("cpuset.cpus", cpus.to_owned()));
    }
    if let Some(mems) = c.mems.as_deref().filter(|s| !s.is_empty()) {
        plan.writes.push(("cpuset.mems", mems.to_owned()));
    }
    if c.realtime_runtime.is_some_and(|v| v != 0) {
        plan.unsupported.push("cpu.realtimeRuntime");
    }
    if c.realtime_period.is_some_and(|v| v != 0) {
        plan.unsupported.push("cpu.realtimePeriod");
    }
    if c.idle.is_some_and(|v| v != 0) {
        plan.unsupported.push("cpu.idle");
    }
    Ok(())
}

/// cgroup v1 shares (2..262144) to v2 weight (1..10000), runc's linear mapping.
pub fn shares_to_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

fn is_empty(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Null => true,
        serde_json::Value::Object(o) => o.values().all(is_empty),
        serde_json::Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

impl Cgroup {
    /// Applies `plan`. `strict` (update): unsupported fields are refused before
    /// anything is written; otherwise (create) they are ignored.
    pub fn apply(&self, plan: &Plan, strict: bool) -> Result<(), AgentError> {
        if strict && !plan.unsupported.is_empty() {
            return Err(AgentError::new(
                ErrorCode::Unsupported,
                format!(
                    "not supported yet: updating linux.resources {}",
                    plan.unsupported.join(", ")
                ),
            ));
        }
        let mut writes = plan.writes.clone();
        if let Some(period) = plan.period_only {
            let current = std::fs::read_to_string(self.path.join("cpu.max")).unwrap_or_default();
            let quota = current
                .split_whitespace()
                .next()
                .unwrap_or("max")
                .to_owned();
            writes.push(("cpu.max", format!("{quota} {period}")));
        }
        for (file, value) in &writes {
            let path = self.path.join(file);
            match write_file(&path, value) {
                Ok(()) => {}
                // A guest without swap has no memory.swap.max: nothing to limit.
                Err(e) if e.kind() == io::ErrorKind::NotFound && *file == "memory.swap.max" => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(AgentError::new(
                        ErrorCode::Unsupported,
                        format!(
                            "{file} does not exist in the guest (its controller is not enabled)"
                        ),
                    ))
                }
                Err(e) => {
                    return Err(invalid(format!(
                        "cannot write {value:?} to {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        Ok(())
    }
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorCode::InvalidArgument, message)
}
