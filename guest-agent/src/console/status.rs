//! The console's `status` request: what the guest is doing, in a few lines.
//!
//! Meant for a guest that stopped answering on vsock: if these lines come back, the
//! guest's kernel and its PID 1 still run, and they say which process waits in which
//! system call and what each TCP socket holds in its queues. Every line starts with
//! [`PREFIX`]; the last one is [`END`]. Bounded: at most [`MAX_ROWS`] processes and as
//! many sockets, the rest counted.

use std::path::Path;

/// Prefix of every line of the report but the last.
pub const PREFIX: &str = "husk-agent: status:";
/// The report's last line.
pub const END: &str = "husk-agent: status end";
/// Processes, and sockets, listed at most.
pub const MAX_ROWS: usize = 64;

/// The report read from `proc_root`, one line each, [`PREFIX`] included, [`END`] last.
pub fn report(proc_root: &Path) -> Vec<String> {
    let read = |file: &str| std::fs::read_to_string(proc_root.join(file)).unwrap_or_default();
    let mut lines = vec![format!(
        "{PREFIX} uptime {} s, load {}",
        read("uptime").split_whitespace().next().unwrap_or("?"),
        read("loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )];
    lines.extend(capped(processes(proc_root), "processes"));
    for table in ["net/tcp", "net/tcp6"] {
        lines.extend(capped(tcp_sockets(&read(table)), table));
    }
    lines.push(END.to_owned());
    lines
}

/// At most [`MAX_ROWS`] of `rows`, prefixed, and a count of the others.
fn capped(rows: Vec<String>, what: &str) -> Vec<String> {
    let more = rows.len().saturating_sub(MAX_ROWS);
    let mut lines: Vec<String> = rows
        .into_iter()
        .take(MAX_ROWS)
        .map(|row| format!("{PREFIX} {row}"))
        .collect();
    if more > 0 {
        lines.push(format!("{PREFIX} ({more} more {what})"));
    }
    lines
}

/// `pid <pid> <comm> <state> syscall <nr>` per process, by PID. The system call is
/// the first field of `/proc/<pid>/syscall`: its number, `running`, or `-1` outside one.
/// Kernel threads are left out unless running (`R`) or in an uninterruptible wait (`D`).
fn processes(proc_root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter()
        .filter_map(|pid| {
            let dir = proc_root.join(pid.to_string());
            // A process may end while the directory is read.
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            let row = StatRow::parse(&stat)?;
            let kernel_thread = pid == KTHREADD || row.ppid == KTHREADD;
            if kernel_thread && !matches!(row.state, "R" | "D") {
                return None;
            }
            let syscall = std::fs::read_to_string(dir.join("syscall")).unwrap_or_default();
            let syscall = syscall.split_whitespace().next().unwrap_or("?");
            Some(format!(
                "pid {pid} {} {} syscall {syscall}",
                row.comm, row.state
            ))
        })
        .collect()
}

/// The PID of the kernel's thread that starts the others, their parent.
const KTHREADD: u32 = 2;

/// What a row takes from a `/proc/<pid>/stat` line.
#[derive(Debug, PartialEq, Eq)]
struct StatRow<'a> {
    /// The command name, printable ASCII (`?` for anything else), 16 bytes at most.
    comm: String,
    /// The state letter.
    state: &'a str,
    /// The parent's PID.
    ppid: u32,
}

impl<'a> StatRow<'a> {
    /// Parses a stat line; the command name may hold spaces and parentheses.
    fn parse(stat: &'a str) -> Option<StatRow<'a>> {
        let (comm, fields) = husk_protocol::procfs::split_stat(stat)?;
        let comm = comm
            .chars()
            .take(16)
            .map(|c| if c.is_ascii_graphic() { c } else { '?' })
            .collect();
        Some(StatRow {
            comm,
            state: fields.first()?,
            ppid: fields.get(1)?.parse().ok()?,
        })
    }
}

/// `tcp <local> <remote> st <state> queues <tx>:<rx>` per socket of a `/proc/net/tcp`
/// table (addresses and numbers as the kernel writes them, hexadecimal).
fn tcp_sockets(table: &str) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, local, remote, state, queues, ..] = fields.as_slice() else {
                return None;
            };
            Some(format!("tcp {local} {remote} st {state} queues {queues}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_this_process_and_ends_with_the_end_line() {
        let lines = report(Path::new("/proc"));
        let me = format!("{PREFIX} pid {} ", std::process::id());
        assert!(lines.iter().any(|l| l.starts_with(&me)), "{lines:?}");
        assert!(
            lines[0].starts_with(&format!("{PREFIX} uptime ")),
            "{lines:?}"
        );
        assert_eq!(lines.last().map(String::as_str), Some(END));
        // Kernel threads at rest are left out.
        let kthreadd = format!("{PREFIX} pid 2 kthreadd S ");
        assert!(!lines.iter().any(|l| l.starts_with(&kthreadd)), "{lines:?}");
        assert!(lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with(PREFIX)));
    }

    #[test]
    fn a_command_name_with_parentheses_and_control_bytes_is_shown_safely() {
        let stat = "42 (a) b\x1b[2J) S 1 42 42 0 -1";
        let row = StatRow {
            comm: "a)?b?[2J".to_owned(),
            state: "S",
            ppid: 1,
        };
        assert_eq!(StatRow::parse(stat), Some(row));
        assert_eq!(StatRow::parse("42 no parentheses"), None);
    }

    #[test]
    fn tcp_rows_keep_addresses_state_and_queues() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when\n   \
                     0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000\n   \
                     1: 0200000A:A2B8 0100000A:87C3 01 00010000:00000000 01:00000014\n";
        assert_eq!(
            tcp_sockets(table),
            [
                "tcp 0100007F:1F90 00000000:0000 st 0A queues 00000000:00000000",
                "tcp 0200000A:A2B8 0100000A:87C3 st 01 queues 00010000:00000000",
            ]
        );
    }

    #[test]
    fn rows_beyond_the_cap_are_counted() {
        let rows: Vec<String> = (0..MAX_ROWS + 3).map(|i| i.to_string()).collect();
        let lines = capped(rows, "processes");
        assert_eq!(lines.len(), MAX_ROWS + 1);
        assert_eq!(lines[MAX_ROWS], format!("{PREFIX} (3 more processes)"));
    }
}
