//! What runs in the sandbox process (`husk __sandbox`, which owns the VM) and in an
//! exec relay (`husk __exec`). Nothing here imports the client side.

pub mod exec_relay;
pub mod exit;
pub mod pty;
pub mod relay;
pub mod run;
pub mod vm;

use crate::sandbox::console_log::BoundedLog;
use crate::sandbox::plan::{Report, Reporter, EXEC_COMMAND, SANDBOX_COMMAND};
use exec_relay::{ExecPlan, EXEC_PLAN_ENV};
use husk_protocol::error_chain;
use std::path::PathBuf;

/// The most a container's `sandbox.log` grows to; past it one line says so and the
/// rest is dropped.
pub const SANDBOX_LOG_MAX: u64 = 4 << 20;

/// The hidden commands' entry points: `husk __sandbox DIR` and `husk __exec`.
pub fn hidden_main(command: &str, args: &[String]) -> Option<i32> {
    match command {
        SANDBOX_COMMAND => {
            let dir = args.first().map(PathBuf::from)?;
            // The VMM's and virtiofsd's own messages go to the container's
            // sandbox.log (its stderr is the container's), bounded: the guest can
            // cause some of them.
            if let Ok(file) =
                BoundedLog::append(&dir.join("sandbox.log"), SANDBOX_LOG_MAX, "sandbox log")
            {
                let _ = tracing_subscriber::fmt()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .with_max_level(tracing::Level::INFO)
                    .try_init();
            }
            Some(run::run(&dir))
        }
        EXEC_COMMAND => {
            let mut reporter = Reporter::from_env();
            let plan: ExecPlan = match std::env::var(EXEC_PLAN_ENV)
                .map_err(|e| e.to_string())
                .and_then(|j| serde_json::from_str(&j).map_err(|e| e.to_string()))
            {
                Ok(plan) => plan,
                Err(e) => {
                    reporter.send(&Report::Failed(format!("bad exec plan: {e}")));
                    return Some(1);
                }
            };
            match exec_relay::run(&plan, &mut reporter) {
                Ok(code) => Some(code),
                Err(e) => {
                    reporter.send(&Report::Failed(error_chain(&e)));
                    Some(1)
                }
            }
        }
        _ => None,
    }
}
