//! `husk exec`: the OCI `process` to run, from `--process` or from the arguments,
//! run through [`crate::container::exec`].

use crate::bundle::{load_spec, CONFIG_FILE};
use crate::cli::ExecArgs;
use crate::container::{self, ExecOptions};
use crate::error::RuntimeError;
use crate::state::Store;
use serde_json::{json, Map, Value};

/// Runs another process in a running container; gives its exit status (0 with
/// `--detach`).
pub fn exec(store: &Store, args: &ExecArgs) -> Result<i32, RuntimeError> {
    let process = match &args.process {
        Some(path) => read_process_file(path)?,
        None => {
            let (state, _) = container::state::observe(store, &args.id)?;
            let spec = load_spec(&state.bundle.join(CONFIG_FILE))?;
            let base = serde_json::to_value(spec.process()).map_err(|e| {
                RuntimeError::io("read the container's process", std::io::Error::other(e))
            })?;
            build_process(base, args)?
        }
    };
    let tty = process
        .get("terminal")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let opts = ExecOptions {
        process,
        tty,
        detach: args.detach,
        pid_file: args.pid_file.clone(),
        console_socket: args.console_socket.clone(),
        preserve_fds: args.preserve_fds,
        stdio: None,
        exec_id: None,
    };
    container::exec::exec(store, &args.id, &opts)
}

/// Reads a `--process` file: a JSON object with non-empty `args`, used as is.
fn read_process_file(path: &std::path::Path) -> Result<Value, RuntimeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuntimeError::io(format!("read {}", path.display()), e))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|source| RuntimeError::MalformedConfig {
            path: path.to_path_buf(),
            source,
        })?;
    let has_args = value
        .get("args")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
    if !value.is_object() || !has_args {
        return Err(RuntimeError::InvalidArgument(format!(
            "{}: an OCI process object with non-empty \"args\" is required",
            path.display()
        )));
    }
    Ok(value)
}

/// Builds the process from the container's own `process` (`base`, from its
/// config.json) as runc does: `args` from the command line; `env`, `cwd`, `user`,
/// capabilities and labels inherited unless a flag overrides or extends them;
/// `terminal` from `--tty`.
pub fn build_process(base: Value, args: &ExecArgs) -> Result<Value, RuntimeError> {
    if args.command.is_empty() {
        return Err(RuntimeError::InvalidArgument(
            "exec: no command given (give COMMAND [ARGS...] or --process FILE)".into(),
        ));
    }
    let mut p = match base {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    p.insert("args".into(), json!(args.command));
    p.insert("terminal".into(), json!(args.tty));
    p.remove("consoleSize");
    if let Some(cwd) = &args.cwd {
        if !cwd.starts_with('/') {
            return Err(RuntimeError::InvalidArgument(format!(
                "--cwd {cwd:?} is not absolute"
            )));
        }
        p.insert("cwd".into(), json!(cwd));
    }
    p.entry("cwd").or_insert_with(|| json!("/"));
    let mut env: Vec<String> = p
        .get("env")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for var in &args.env {
        let name = var.split('=').next().unwrap_or_default();
        if name.is_empty() || !var.contains('=') {
            return Err(RuntimeError::InvalidArgument(format!(
                "--env {var:?}: expected NAME=VALUE"
            )));
        }
        env.retain(|e| e.split('=').next() != Some(name));
        env.push(var.clone());
    }
    p.insert("env".into(), json!(env));
    let user = p
        .entry("user")
        .or_insert_with(|| json!({"uid": 0, "gid": 0}));
    if let Some(spec) = &args.user {
        let (uid, gid) = parse_user(spec)?;
        user["uid"] = json!(uid);
        if let Some(gid) = gid {
            user["gid"] = json!(gid);
        }
    }
    if !args.additional_gids.is_empty() {
        user["additionalGids"] = json!(args.additional_gids);
    }
    if !args.cap.is_empty() {
        let caps = p.entry("capabilities").or_insert_with(|| json!({}));
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            let mut list: Vec<Value> = caps
                .get(set)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for cap in &args.cap {
                let upper = cap.to_ascii_uppercase();
                let name = if upper.starts_with("CAP_") {
                    upper
                } else {
                    format!("CAP_{upper}")
                };
                if !list.iter().any(|c| c.as_str() == Some(&name)) {
                    list.push(json!(name));
                }
            }
            caps[set] = json!(list);
        }
    }
    if args.no_new_privs {
        p.insert("noNewPrivileges".into(), json!(true));
    }
    if let Some(label) = &args.process_label {
        p.insert("selinuxLabel".into(), json!(label));
    }
    if let Some(profile) = &args.apparmor {
        p.insert("apparmorProfile".into(), json!(profile));
    }
    Ok(Value::Object(p))
}

/// `UID[:GID]`, numeric (user names would have to be looked up in the guest).
fn parse_user(spec: &str) -> Result<(u32, Option<u32>), RuntimeError> {
    let bad =
        || RuntimeError::InvalidArgument(format!("--user {spec:?}: expected UID[:GID] (numbers)"));
    let (uid, gid) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = uid.parse().map_err(|_| bad())?;
    let gid = gid.map(|g| g.parse().map_err(|_| bad())).transpose()?;
    Ok((uid, gid))
}

#[cfg(test)]
mod tests;
