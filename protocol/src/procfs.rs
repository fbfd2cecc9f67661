//! `/proc/<pid>/stat`, read by the agent (its container statistics and console
//! status), the runtime (is a recorded process still the one it started? which
//! processes are virtiofsd?) and the tests.

/// Splits a `/proc/<pid>/stat` line into the command name (between the first `(` and
/// the last `)`: it may hold spaces and parentheses) and the fields after it.
/// `fields[0]` is field 3 of proc(5), the state: field N is `fields[N - 3]`.
pub fn split_stat(text: &str) -> Option<(&str, Vec<&str>)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?;
    Some((comm, text.get(close + 1..)?.split_whitespace().collect()))
}

/// The fields of a `/proc/<pid>/stat` line that husk reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat<'a> {
    /// Field 2: the command name, without its parentheses.
    pub comm: &'a str,
    /// Field 3: the state letter (`R`, `S`, `Z`, ...).
    pub state: &'a str,
    /// Field 4: the parent's pid.
    pub ppid: i32,
    /// Field 5: the process group.
    pub pgrp: i32,
    /// Field 22: the start time, in clock ticks after boot.
    pub start_time: u64,
}

impl<'a> Stat<'a> {
    /// Parses a `/proc/<pid>/stat` line; `None` when a field husk reads is missing or
    /// not a number.
    pub fn parse(text: &'a str) -> Option<Self> {
        let (comm, fields) = split_stat(text)?;
        Some(Stat {
            comm,
            state: fields.first()?,
            ppid: fields.get(4 - 3)?.parse().ok()?,
            pgrp: fields.get(5 - 3)?.parse().ok()?,
            start_time: fields.get(22 - 3)?.parse().ok()?,
        })
    }

    /// An exited process not reaped yet (`Z`), or a dead one (`X`).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, "Z" | "X")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_splits_after_the_last_parenthesis() {
        let (comm, fields) = split_stat("9 (a) (b) c) R 1 9").unwrap();
        assert_eq!(comm, "a) (b) c");
        assert_eq!(fields, ["R", "1", "9"]);
        assert_eq!(split_stat("9 no name R"), None);
        assert_eq!(split_stat("9 )x( R"), None);
    }

    #[test]
    fn the_fields_husk_reads_are_counted_past_odd_names() {
        let line =
            "1234 (a) b (c)) S 1 77 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = Stat::parse(line).unwrap();
        assert_eq!(stat.comm, "a) b (c)");
        assert_eq!(stat.state, "S");
        assert_eq!(stat.ppid, 1);
        assert_eq!(stat.pgrp, 77);
        assert_eq!(stat.start_time, 987654);
        assert!(!stat.is_dead());
        assert!(Stat::parse("1 (z) Z 1 1 1").is_none());
    }
}
