//! `husk update`: runc's flags (or `-r FILE`) to an OCI `linux.resources` object,
//! applied through [`crate::container::update`].

use crate::cli::UpdateArgs;
use crate::container;
use crate::error::RuntimeError;
use crate::state::Store;
use serde_json::{json, Map, Value};
use std::io::Read;

/// Changes a running, created or paused container's limits.
pub fn update(store: &Store, args: &UpdateArgs) -> Result<(), RuntimeError> {
    container::update::apply(store, &args.id, resources(args)?)
}

/// The `linux.resources` object the command line asks for.
pub fn resources(args: &UpdateArgs) -> Result<Value, RuntimeError> {
    let unsupported = [
        ("--blkio-weight", args.blkio_weight.is_some()),
        ("--cpu-rt-period", args.cpu_rt_period.is_some()),
        ("--cpu-rt-runtime", args.cpu_rt_runtime.is_some()),
        ("--kernel-memory", args.kernel_memory.is_some()),
        ("--kernel-memory-tcp", args.kernel_memory_tcp.is_some()),
        ("--l3-cache-schema", args.l3_cache_schema.is_some()),
        ("--mem-bw-schema", args.mem_bw_schema.is_some()),
    ];
    if let Some((flag, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(RuntimeError::NotSupported(format!(
            "husk update {flag} (husk applies memory, cpu, cpuset and pids limits)"
        )));
    }
    let mut memory = Map::new();
    let mut cpu = Map::new();
    let put = |map: &mut Map<String, Value>, key: &str, flag: &str, v: &Option<String>| {
        if let Some(text) = v {
            map.insert(key.into(), json!(parse_bytes(flag, text)?));
        }
        Ok::<(), RuntimeError>(())
    };
    put(&mut memory, "limit", "--memory", &args.memory)?;
    put(
        &mut memory,
        "reservation",
        "--memory-reservation",
        &args.memory_reservation,
    )?;
    put(&mut memory, "swap", "--memory-swap", &args.memory_swap)?;
    if let Some(v) = args.cpu_share {
        cpu.insert("shares".into(), json!(v));
    }
    if let Some(v) = args.cpu_quota {
        cpu.insert("quota".into(), json!(v));
    }
    if let Some(v) = args.cpu_period {
        cpu.insert("period".into(), json!(v));
    }
    if let Some(v) = &args.cpuset_cpus {
        cpu.insert("cpus".into(), json!(v));
    }
    if let Some(v) = &args.cpuset_mems {
        cpu.insert("mems".into(), json!(v));
    }
    let mut flags = Map::new();
    if !memory.is_empty() {
        flags.insert("memory".into(), Value::Object(memory));
    }
    if !cpu.is_empty() {
        flags.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(limit) = args.pids_limit {
        flags.insert("pids".into(), json!({ "limit": limit }));
    }
    let Some(path) = &args.resources else {
        return Ok(Value::Object(flags));
    };
    if !flags.is_empty() {
        return Err(RuntimeError::InvalidArgument(
            "husk update: give either --resources or limit flags, not both".into(),
        ));
    }
    let mut text = String::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| RuntimeError::io(format!("read {}", path.display()), e))?;
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        RuntimeError::InvalidArgument(format!("{}: not a JSON object: {e}", path.display()))
    })?;
    if !value.is_object() {
        return Err(RuntimeError::InvalidArgument(format!(
            "{}: linux.resources must be a JSON object",
            path.display()
        )));
    }
    Ok(value)
}

/// A byte count as runc takes it: a number with an optional binary unit (`k`, `m`,
/// `g`, `t`, with or without a trailing `b`/`ib`, any case), or `-1`.
pub fn parse_bytes(flag: &str, text: &str) -> Result<i64, RuntimeError> {
    let invalid = || RuntimeError::InvalidArgument(format!("{flag}: invalid size {text:?}"));
    let t = text.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(&unit);
    let scale: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(invalid()),
    };
    let bytes = number * scale as f64;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(invalid());
    }
    Ok(bytes as i64)
}

#[cfg(test)]
mod tests;
