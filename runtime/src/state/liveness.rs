//! Is a recorded process still the one we started?

use husk_protocol::procfs::Stat;

/// What `/proc/<pid>/stat` says about a pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// A live (not zombie) process, with its start time (clock ticks after boot).
    Alive {
        /// Field 22 of `/proc/<pid>/stat`.
        start_time: u64,
    },
    /// Exited but not reaped yet: dead for husk's purposes.
    Zombie,
    /// No such process (or `/proc` unreadable for it).
    Gone,
}

/// Reads the state and start time (field 22) of `pid` from `/proc/<pid>/stat`.
pub fn process_start_time(pid: i32) -> ProcessState {
    if pid <= 0 {
        return ProcessState::Gone;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => parse_stat(&stat).unwrap_or(ProcessState::Gone),
        Err(_) => ProcessState::Gone,
    }
}

/// What a `/proc/<pid>/stat` line says about its process.
fn parse_stat(stat: &str) -> Option<ProcessState> {
    let stat = Stat::parse(stat)?;
    if stat.is_dead() {
        return Some(ProcessState::Zombie);
    }
    Some(ProcessState::Alive {
        start_time: stat.start_time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_past_odd_names() {
        let line =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            parse_stat(line),
            Some(ProcessState::Alive { start_time: 987654 })
        );
        let zombie = "7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 55 0 0";
        assert_eq!(parse_stat(zombie), Some(ProcessState::Zombie));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1"), None);
    }

    #[test]
    fn own_process_is_alive_and_stable() {
        let me = std::process::id() as i32;
        let first = process_start_time(me);
        assert!(matches!(first, ProcessState::Alive { .. }));
        assert_eq!(first, process_start_time(me));
        assert_eq!(process_start_time(-1), ProcessState::Gone);
        assert_eq!(process_start_time(0), ProcessState::Gone);
    }
}
