//! Host memory as the benchmarks count it: the proportional set size (PSS, from
//! `/proc/PID/smaps_rollup`) of a process and everything it started, and the host's
//! `MemAvailable`. PSS divides shared pages among the processes that map them, so
//! guest RAM in a memfd mapped by both the VMM and virtiofsd counts once.

use std::path::Path;

/// A field of a `/proc` file in kB (`Name:   123 kB`).
fn field_kib(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

/// PSS of one process, and the part of it in shared memory (`Pss_Shmem`: for a VMM,
/// guest RAM in its memfd), KiB (`None` if it is gone or unreadable).
pub fn pss_kib(pid: u32) -> Option<Pss> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    Some(Pss {
        total: field_kib(&text, "Pss")?,
        shmem: field_kib(&text, "Pss_Shmem").unwrap_or(0),
    })
}

/// Proportional set size, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pss {
    /// All of it.
    pub total: u64,
    /// The part in shared memory (shmem, memfd).
    pub shmem: u64,
}

impl std::ops::Add for Pss {
    type Output = Pss;
    fn add(self, other: Pss) -> Pss {
        Pss {
            total: self.total + other.total,
            shmem: self.shmem + other.shmem,
        }
    }
}

impl std::iter::Sum for Pss {
    fn sum<I: Iterator<Item = Pss>>(iter: I) -> Pss {
        iter.fold(Pss::default(), |a, b| a + b)
    }
}

/// The parent of `pid` (from `/proc/PID/stat`).
fn parent(proc_dir: &Path) -> Option<u32> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    u32::try_from(husk_protocol::procfs::Stat::parse(&stat)?.ppid).ok()
}

/// `pid` and all its descendants.
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut links = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(parent) = parent(&entry.path()) {
            links.push((parent, child));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(links.iter().filter(|(pp, _)| *pp == p).map(|(_, c)| *c));
        i += 1;
    }
    tree
}

/// PSS of `pid` and its descendants, and how many processes that was.
pub fn pss_tree_kib(pid: u32) -> (Pss, usize) {
    let tree = process_tree(pid);
    let total = tree.iter().filter_map(|&p| pss_kib(p)).sum();
    (total, tree.len())
}

/// The host's `MemAvailable`, KiB.
pub fn mem_available_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").expect("/proc/meminfo");
    field_kib(&text, "MemAvailable").expect("MemAvailable in /proc/meminfo")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_kib() {
        let text = "Rss:     1200 kB\nPss:      800 kB\nPss_Anon:  12 kB\n";
        assert_eq!(field_kib(text, "Pss"), Some(800));
        assert_eq!(field_kib(text, "Pss_Anon"), Some(12));
        assert_eq!(field_kib(text, "Swap"), None);
    }

    #[test]
    fn this_process_has_a_pss_and_a_tree() {
        let me = std::process::id();
        assert!(pss_kib(me).is_some_and(|p| p.total > 0 && p.shmem <= p.total));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let tree = process_tree(me);
        assert!(tree.contains(&child.id()), "{tree:?}");
        let _ = child.kill();
        let _ = child.wait();
        assert!(mem_available_kib() > 0);
    }
}
