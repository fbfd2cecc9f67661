//! A container's resource usage from `/proc`: the process trees of its processes.
//!
//! Without cgroups (which come later) a container is the set of processes descending
//! from its first process and its exec'd ones; orphans reparented to the agent are
//! no longer counted.

use husk_protocol::ContainerStats;
use nix::unistd::{sysconf, SysconfVar};
use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;

/// The fields of `/proc/<pid>/stat` the stats use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// The parent's PID.
    pub ppid: i32,
    /// User and system CPU time, clock ticks.
    pub cpu_ticks: u64,
    /// Resident set, pages.
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`; the command name may hold spaces and parentheses.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, fields) = husk_protocol::procfs::split_stat(text)?;
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        ppid: fields.get(1)?.parse().ok()?,
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        rss_pages: field(24)?,
    })
}

/// The PIDs of the process trees rooted at `roots`, ascending, read from `proc_root`.
pub fn pids(proc_root: &Path, roots: &[i32]) -> io::Result<Vec<i32>> {
    let all = read_all(proc_root)?;
    let mut pids: Vec<i32> = descendants(&all, roots).into_iter().collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Every process's stat line under `proc_root`.
fn read_all(proc_root: &Path) -> io::Result<HashMap<i32, ProcStat>> {
    let mut all = HashMap::new();
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may end while the directory is read.
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(stat) = parse_stat(&text) {
            all.insert(pid, stat);
        }
    }
    Ok(all)
}

/// Usage of the processes in the trees rooted at `roots`, read from `proc_root`.
pub fn collect(proc_root: &Path, roots: &[i32]) -> io::Result<ContainerStats> {
    let all = read_all(proc_root)?;
    let tree = descendants(&all, roots);
    let ticks_per_s = sysconf(SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100)
        .max(1) as u64;
    let page = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as u64;
    let mut stats = ContainerStats {
        cpu_usage_ns: 0,
        memory_bytes: 0,
        pids: 0,
        cgroup: None,
    };
    for pid in tree {
        let stat = all[&pid];
        stats.pids += 1;
        stats.cpu_usage_ns = stats
            .cpu_usage_ns
            .saturating_add(stat.cpu_ticks.saturating_mul(1_000_000_000 / ticks_per_s));
        stats.memory_bytes = stats
            .memory_bytes
            .saturating_add(stat.rss_pages.saturating_mul(page));
    }
    Ok(stats)
}

/// The PIDs of `all` that are in `roots` or descend from one.
fn descendants(all: &HashMap<i32, ProcStat>, roots: &[i32]) -> HashSet<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, stat) in all {
        children.entry(stat.ppid).or_default().push(*pid);
    }
    let mut found = HashSet::new();
    let mut todo: Vec<i32> = roots
        .iter()
        .copied()
        .filter(|p| all.contains_key(p))
        .collect();
    while let Some(pid) = todo.pop() {
        if found.insert(pid) {
            todo.extend(children.get(&pid).into_iter().flatten());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: i32, ppid: i32, utime: u64, rss: u64) -> String {
        format!("{pid} (a (b) c) S {ppid} 1 1 0 -1 0 0 0 0 0 {utime} 2 0 0 20 0 1 0 5 100 {rss} 0")
    }

    #[test]
    fn stat_lines_parse() {
        assert_eq!(
            parse_stat(&stat(7, 1, 10, 33)),
            Some(ProcStat {
                ppid: 1,
                cpu_ticks: 12,
                rss_pages: 33
            })
        );
        assert_eq!(parse_stat("7 (x) S 1 2"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn trees_are_collected_from_a_fake_proc() {
        let dir = std::env::temp_dir().join(format!("husk-stats-{}", std::process::id()));
        for (pid, ppid) in [(10, 1), (11, 10), (12, 11), (20, 1), (30, 12)] {
            std::fs::create_dir_all(dir.join(pid.to_string())).unwrap();
            std::fs::write(dir.join(format!("{pid}/stat")), stat(pid, ppid, 8, 1)).unwrap();
        }
        std::fs::create_dir_all(dir.join("self")).unwrap();
        let stats = collect(&dir, &[10, 99]).unwrap();
        assert_eq!(stats.pids, 4);
        let ticks = sysconf(SysconfVar::CLK_TCK).unwrap().unwrap() as u64;
        assert_eq!(stats.cpu_usage_ns, 4 * 10 * (1_000_000_000 / ticks));
        let page = sysconf(SysconfVar::PAGE_SIZE).unwrap().unwrap() as u64;
        assert_eq!(stats.memory_bytes, 4 * page);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
