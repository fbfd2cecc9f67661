//! The parts of the OCI runtime spec the agent applies, and their validation.
//!
//! Only the fields listed here are read; every other field of `config.json` is
//! ignored (see `docs/protocol.md`, *What the agent applies*).

use super::isolation::{self, ProcessFields, ProcessSetup};
use husk_protocol::{AgentError, ErrorCode};
use serde::Deserialize;
use std::ffi::CString;

/// `PATH` when the process's environment has none (runc's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Most `PATH` directories searched for a program.
const MAX_PATH_DIRS: usize = 64;

/// The fields of `config.json` the agent reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleSpec {
    process: Option<ProcessSpec>,
    hostname: Option<String>,
}

/// The fields of the OCI `process` object the agent reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessSpec {
    #[serde(default)]
    terminal: bool,
    console_size: Option<ConsoleSize>,
    #[serde(default)]
    user: UserSpec,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
    cwd: Option<String>,
    /// Capabilities, rlimits and the other security fields.
    #[serde(flatten)]
    isolation: ProcessFields,
}

/// OCI `process.consoleSize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ConsoleSize {
    /// Rows.
    pub height: u16,
    /// Columns.
    pub width: u16,
}

/// OCI `process.user` (POSIX).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserSpec {
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
    umask: Option<u32>,
    #[serde(default)]
    additional_gids: Vec<u32>,
}

/// A validated process to launch, in the forms the child needs after `fork`.
#[derive(Debug)]
pub struct Launch {
    /// `args[0]` as given, for messages.
    pub program: String,
    /// The paths `execve` tries in turn: `args[0]` itself if it holds a `/`, else
    /// `args[0]` in each `PATH` directory.
    pub candidates: Vec<CString>,
    /// The `PATH` searched, if `args[0]` has no `/`.
    pub searched: Option<String>,
    /// `argv`.
    pub args: Vec<CString>,
    /// `envp`.
    pub env: Vec<CString>,
    /// The working directory, absolute, inside the container.
    pub cwd: CString,
    /// Whether the process gets a terminal.
    pub terminal: bool,
    /// The terminal's initial size.
    pub console_size: Option<ConsoleSize>,
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
    /// Supplementary groups (replacing the agent's).
    pub additional_gids: Vec<u32>,
    /// The file mode creation mask, if set.
    pub umask: Option<u32>,
    /// Capabilities, `noNewPrivileges`, rlimits, `oomScoreAdj`.
    pub setup: ProcessSetup,
}

/// The container's process and hostname from a `config.json`.
pub fn parse_bundle(spec: &serde_json::Value) -> Result<(Launch, Option<String>), AgentError> {
    let bundle = BundleSpec::deserialize(spec)
        .map_err(|e| invalid(format!("bundle_spec is not a valid OCI runtime spec: {e}")))?;
    let process = bundle
        .process
        .ok_or_else(|| invalid("bundle_spec has no process"))?;
    let hostname = match bundle.hostname {
        Some(name) if name.is_empty() => None,
        Some(name) if name.len() > 64 || name.contains('\0') => {
            return Err(invalid(format!(
                "hostname {name:?} is not a valid hostname"
            )))
        }
        other => other,
    };
    Ok((launch(process)?, hostname))
}

/// An exec'd process from an OCI `process` object.
pub fn parse_process(process: &serde_json::Value) -> Result<Launch, AgentError> {
    let process = ProcessSpec::deserialize(process)
        .map_err(|e| invalid(format!("process is not a valid OCI process: {e}")))?;
    launch(process)
}

/// Validates a process and converts it for `execve`.
fn launch(process: ProcessSpec) -> Result<Launch, AgentError> {
    let program = process
        .args
        .first()
        .cloned()
        .ok_or_else(|| invalid("process.args is empty: there is no program to run"))?;
    if program.is_empty() {
        return Err(invalid("process.args[0] is empty"));
    }
    let cwd = process.cwd.unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(invalid(format!("process.cwd {cwd:?} is not absolute")));
    }
    let args = c_strings(&process.args, "process.args")?;
    let env = c_strings(&process.env, "process.env")?;
    let (candidates, searched) = if program.contains('/') {
        (vec![c_string(&program, "process.args")?], None)
    } else {
        let path = process
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
            .to_owned();
        let candidates = path
            .split(':')
            .filter(|dir| !dir.is_empty())
            .take(MAX_PATH_DIRS)
            .map(|dir| c_string(&format!("{}/{program}", dir.trim_end_matches('/')), "PATH"))
            .collect::<Result<Vec<_>, _>>()?;
        (candidates, Some(path))
    };
    Ok(Launch {
        program,
        candidates,
        searched,
        args,
        env,
        cwd: c_string(&cwd, "process.cwd")?,
        terminal: process.terminal,
        console_size: process.console_size,
        uid: process.user.uid,
        gid: process.user.gid,
        additional_gids: process.user.additional_gids,
        umask: process.user.umask,
        setup: isolation::process_setup(process.isolation)?,
    })
}

fn c_strings(strings: &[String], what: &str) -> Result<Vec<CString>, AgentError> {
    strings.iter().map(|s| c_string(s, what)).collect()
}

fn c_string(s: &str, what: &str) -> Result<CString, AgentError> {
    CString::new(s).map_err(|_| invalid(format!("{what}: {s:?} contains a NUL byte")))
}

fn invalid(message: impl Into<String>) -> AgentError {
    AgentError::new(ErrorCode::InvalidArgument, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_process_parses() {
        let spec = json!({
            "ociVersion": "1.0.2",
            "hostname": "box",
            "process": {
                "terminal": true, "consoleSize": {"height": 24, "width": 80},
                "user": {"uid": 1000, "gid": 100, "umask": 18, "additionalGids": [5, 6]},
                "args": ["sh", "-c", "true"], "env": ["PATH=/bin:/usr/bin/", "A=b"],
                "cwd": "/tmp", "capabilities": {"bounding": []}
            }
        });
        let (launch, hostname) = parse_bundle(&spec).unwrap();
        assert_eq!(hostname.as_deref(), Some("box"));
        assert_eq!(launch.program, "sh");
        assert_eq!(
            launch.candidates,
            [c"/bin/sh".to_owned(), c"/usr/bin/sh".to_owned()]
        );
        assert_eq!(launch.searched.as_deref(), Some("/bin:/usr/bin/"));
        assert_eq!(launch.cwd.as_c_str(), c"/tmp");
        assert!(launch.terminal);
        assert_eq!(
            launch.console_size,
            Some(ConsoleSize {
                height: 24,
                width: 80
            })
        );
        assert_eq!(
            (launch.uid, launch.gid, launch.umask),
            (1000, 100, Some(18))
        );
        assert_eq!(launch.additional_gids, [5, 6]);
    }

    #[test]
    fn defaults_and_absolute_programs() {
        let launch = parse_process(&json!({"args": ["/bin/echo", "hi"]})).unwrap();
        assert_eq!(launch.candidates, [c"/bin/echo".to_owned()]);
        assert_eq!(launch.searched, None);
        assert_eq!(launch.cwd.as_c_str(), c"/");
        assert_eq!((launch.uid, launch.gid, launch.umask), (0, 0, None));
        let launch = parse_process(&json!({"args": ["ls"]})).unwrap();
        assert_eq!(launch.candidates.len(), 6);
        assert_eq!(launch.candidates[5].as_c_str(), c"/bin/ls");
    }

    #[test]
    fn invalid_processes_are_refused() {
        for (process, expected) in [
            (json!({"args": []}), "process.args is empty"),
            (json!({}), "process.args is empty"),
            (json!({"args": [""]}), "args[0] is empty"),
            (json!({"args": ["a\u{0}b"]}), "NUL"),
            (json!({"args": ["ls"], "cwd": "tmp"}), "not absolute"),
            (json!({"args": "ls"}), "not a valid OCI process"),
        ] {
            let err = parse_process(&process).unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidArgument);
            assert!(err.message.contains(expected), "{}", err.message);
        }
        let err = parse_bundle(&json!({"ociVersion": "1.0.2"})).unwrap_err();
        assert!(err.message.contains("no process"), "{}", err.message);
    }
}
