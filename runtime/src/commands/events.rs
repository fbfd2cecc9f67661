//! `husk events`: the container's stats in runc's JSON (`--stats`: once), or a
//! stream of stats every `--interval` and OOM events as they happen, until the
//! container stops ([`crate::container::events`]), one JSON line each on stdout.

use crate::cli::EventsArgs;
use crate::container;
use crate::error::RuntimeError;
use crate::state::Store;
use serde_json::Value;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs `husk events`.
pub fn events(store: &Store, args: &EventsArgs) -> Result<(), RuntimeError> {
    let interval = parse_duration(&args.interval)?;
    let out = Mutex::new(std::io::stdout());
    let print = move |v: &Value| {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    };
    if args.stats {
        print(&container::events::stats(store, &args.id)?);
        return Ok(());
    }
    container::events::stream(store, &args.id, interval, Arc::new(print))
}

/// A Go duration as runc takes it: a number and a unit (`ns`, `us`, `ms`, `s`, `m`,
/// `h`), several concatenated (`1m30s`); must be positive.
pub fn parse_duration(text: &str) -> Result<Duration, RuntimeError> {
    let invalid =
        || RuntimeError::InvalidArgument(format!("--interval: invalid duration {text:?}"));
    let mut rest = text.trim();
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let number: f64 = rest[..end].parse().map_err(|_| invalid())?;
        let after = &rest[end..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let seconds = match &after[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(invalid()),
        };
        total += Duration::try_from_secs_f64(number * seconds).map_err(|_| invalid())?;
        rest = &after[unit_len..];
    }
    if total.is_zero() {
        return Err(invalid());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_go_writes_them() {
        for (text, d) in [
            ("5s", Duration::from_secs(5)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h", Duration::from_secs(7200)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), d, "{text}");
        }
        for bad in ["", "5", "s", "0s", "5x", "-1s", "1s2"] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }
}
