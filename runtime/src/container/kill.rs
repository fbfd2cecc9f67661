//! `kill`: a signal to the container's init process in the guest.

use crate::error::RuntimeError;
use crate::sandbox;
use crate::state::Store;
use std::str::FromStr;

/// A signal number, 1 to 64 (the real-time signals included), as runc accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(i32);

impl Signal {
    /// SIGKILL.
    pub const KILL: Signal = Signal(nix::libc::SIGKILL);
    /// SIGTERM.
    pub const TERM: Signal = Signal(nix::libc::SIGTERM);
    /// The highest real-time signal number on Linux.
    const MAX: i32 = 64;

    /// The signal's number.
    pub fn number(self) -> i32 {
        self.0
    }

    fn checked(n: i64, text: &dyn std::fmt::Display) -> Result<Self, RuntimeError> {
        match i32::try_from(n) {
            Ok(n) if (1..=Self::MAX).contains(&n) => Ok(Signal(n)),
            _ => Err(RuntimeError::InvalidArgument(format!(
                "invalid signal \"{text}\""
            ))),
        }
    }
}

/// A signal as runc parses it: a number (`9`), or a name with or without `SIG`
/// (`KILL`, `SIGKILL`, `kill`).
impl FromStr for Signal {
    type Err = RuntimeError;

    fn from_str(text: &str) -> Result<Self, RuntimeError> {
        if let Ok(n) = text.parse::<i64>() {
            return Signal::checked(n, &text);
        }
        let upper = text.to_ascii_uppercase();
        let name = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        nix::sys::signal::Signal::from_str(&name)
            .map(|s| Signal(s as i32))
            .map_err(|_| RuntimeError::InvalidArgument(format!("invalid signal {text:?}")))
    }
}

/// A signal number as containerd sends it.
impl TryFrom<u32> for Signal {
    type Error = RuntimeError;

    fn try_from(n: u32) -> Result<Self, RuntimeError> {
        Signal::checked(i64::from(n), &n)
    }
}

/// Sends `signal` to container `id`'s init process (`all`: to all its processes).
/// A stopped container is refused, unless `--all`, where there is nothing to do.
/// As with runc, SIGKILL reaches a paused container, whose cgroup the agent then
/// thaws; other signals wait, pending, until it is resumed.
pub fn kill(store: &Store, id: &str, signal: Signal, all: bool) -> Result<(), RuntimeError> {
    let _lock = store.lock(id)?;
    let mut state = store.load(id)?;
    let status = state.observed_status();
    if !status.can_kill() {
        if all && status == crate::state::Status::Stopped {
            return Ok(());
        }
        return Err(RuntimeError::InvalidState(format!(
            "cannot kill container \"{id}\": container not running"
        )));
    }
    sandbox::kill(store, &state, signal.number(), all)?;
    if status == crate::state::Status::Paused && signal == Signal::KILL {
        state.status = crate::state::Status::Running;
        store.save(&state)?;
    }
    Ok(())
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
            assert_eq!(text.parse::<Signal>().unwrap().number(), n, "{text}");
        }
        for bad in ["0", "65", "-9", "SIGNOPE", "", "9x"] {
            let msg = bad.parse::<Signal>().unwrap_err().to_string();
            assert!(msg.contains("invalid signal"), "{msg}");
        }
    }

    #[test]
    fn numbers_from_the_shim_are_checked() {
        assert_eq!(Signal::try_from(15u32).unwrap(), Signal::TERM);
        assert_eq!(Signal::try_from(64u32).unwrap().number(), 64);
        for bad in [0u32, 65, u32::MAX] {
            let msg = Signal::try_from(bad).unwrap_err().to_string();
            assert!(msg.contains("invalid signal"), "{msg}");
        }
    }
}
