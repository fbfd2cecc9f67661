//! `husk kill`.

use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::{Status, Store};
use nix::sys::signal::Signal;
use std::str::FromStr;

/// The highest real-time signal number on Linux.
const MAX_SIGNAL: i32 = 64;

/// Parses a signal as runc does: a number (`9`), or a name with or without `SIG`
/// (`KILL`, `SIGKILL`, `kill`).
pub fn parse_signal(text: &str) -> Result<i32, RuntimeError> {
    let invalid = || RuntimeError::InvalidArgument(format!("invalid signal {text:?}"));
    if let Ok(n) = text.parse::<i32>() {
        return if (1..=MAX_SIGNAL).contains(&n) {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| invalid())
}

/// Sends `signal` to container `id`'s init process (`all`: to all its processes).
/// A stopped container is refused, unless `--all`, where there is nothing to do.
pub fn kill(store: &Store, id: &str, signal: &str, all: bool) -> Result<(), RuntimeError> {
    let signal = parse_signal(signal)?;
    let _lock = store.lock(id)?;
    let mut state = store.load(id)?;
    match state.observed_status() {
        Status::Created | Status::Running => sandbox::kill(store, &state, signal, all),
        // As runc: SIGKILL reaches a paused container, whose cgroup the agent then
        // thaws; other signals wait, pending, until it is resumed.
        Status::Paused => {
            sandbox::kill(store, &state, signal, all)?;
            if signal == Signal::SIGKILL as i32 {
                state.status = Status::Running;
                store.save(&state)?;
            }
            Ok(())
        }
        Status::Stopped if all => Ok(()),
        Status::Stopped | Status::Creating => Err(RuntimeError::InvalidState(format!(
            "cannot kill container \"{id}\": container not running"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_forms() {
        for (text, n) in [
            ("9", 9),
            ("KILL", 9),
            ("SIGKILL", 9),
            ("kill", 9),
            ("TERM", 15),
            ("SIGTERM", 15),
            ("SIGUSR1", 10),
            ("34", 34),
            ("64", 64),
            ("HUP", 1),
        ] {
            assert_eq!(parse_signal(text).unwrap(), n, "{text}");
        }
        for bad in ["0", "65", "-9", "SIGNOPE", "", "9x"] {
            let msg = parse_signal(bad).unwrap_err().to_string();
            assert!(msg.contains("invalid signal"), "{msg}");
        }
    }
}
