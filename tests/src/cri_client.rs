//! The CRI suite's client: `tests/cri/cri.py` (the CRI v1 stubs of PyPI's
//! `container-runtime-interface-api`, in a venv that `tests/setup.sh` makes) called
//! once per request, as the kubelet would call containerd's CRI plugin.

use crate::containerd_daemon::{text, Containerd};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Overrides the Python that runs the client.
pub const PYTHON_ENV: &str = "HUSK_CRI_PYTHON";

/// The venv's Python: [`PYTHON_ENV`], else `~/.cache/husk/cri-venv/bin/python`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os(PYTHON_ENV) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/husk/cri-venv/bin/python")
}

/// A CRI client of one containerd.
#[derive(Debug)]
pub struct Cri<'a>(pub &'a Containerd);

impl Cri<'_> {
    /// Calls CRI method `method` with the JSON request `body`; its JSON response, or
    /// the client's error (gRPC code and message).
    pub fn call(&self, method: &str, body: &Value) -> Result<Value, String> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("cri/cri.py");
        let address = format!("unix://{}", self.0.dir.join("containerd.sock").display());
        let out = Command::new(python())
            .arg(script)
            .arg(address)
            .arg(method)
            .arg(body.to_string())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{} (tests/setup.sh makes it): {e}", python().display()));
        if !out.status.success() {
            return Err(text(&out.stderr));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("{method}: bad JSON: {e}"))
    }

    /// Calls `method`, which must succeed.
    pub fn ok(&self, method: &str, body: &Value) -> Value {
        self.call(method, body)
            .unwrap_or_else(|e| panic!("{method}: {e}\n{}", self.0.log_tail()))
    }
}
