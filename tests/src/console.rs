//! Driving a VM through its serial console on stdio: wait for lines, type requests,
//! wait for the end, with a deadline on every step and the VM killed on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use husk_agent::console::status;
use husk_protocol::procfs::split_stat;

/// A VM process whose serial console is its stdin and stdout.
#[derive(Debug)]
pub struct ConsoleVm {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Everything the console printed so far, for failure messages.
    pub transcript: Vec<String>,
    started: Instant,
}

impl ConsoleVm {
    /// Starts `cmd` with its stdin and stdout piped.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Self> {
        let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line.trim_end_matches('\r').to_owned()).is_err() {
                    break;
                }
            }
        });
        Ok(ConsoleVm {
            stdin: child.stdin.take(),
            child,
            lines,
            transcript: Vec::new(),
            started: Instant::now(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Time since the process was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for a line starting with `prefix` and returns it.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.transcript.push(line.clone());
                    if line.starts_with(prefix) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("no line {prefix:?} within {timeout:?}")))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(self.failure(&format!("console closed before a line {prefix:?}")))
                }
            }
        }
    }

    /// Types a line on the console.
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("console input already closed")?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("cannot type on the console: {e}"))
    }

    /// Waits for the process to end, collecting the rest of the console.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.transcript.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failure(&format!("still running after {timeout:?}")))
                }
            }
        }
        // stdout is closed: the process is exiting; reap it within what is left.
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(self.failure("closed its console but did not exit"))
    }

    /// How the process ended, if it has (without waiting).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Moves what the console printed so far, without waiting, into the transcript.
    pub fn collect(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.transcript.push(line);
        }
    }

    /// What a failure report needs: whether the VMM still runs; if it does, the
    /// guest's answer to the console request `status` (its processes and TCP sockets;
    /// no answer within [`STATUS_TIMEOUT`] means the guest's kernel or PID 1 is stuck)
    /// and, from husk-vmm, two register reports of each vCPU, on its stderr;
    /// the state of each of the VMM's threads and where their CPU time went meanwhile
    /// (see [`thread_states`]); and the last lines of the guest console.
    pub fn post_mortem(&mut self) -> String {
        self.collect();
        let console =
            self.transcript[self.transcript.len().saturating_sub(POST_MORTEM_LINES)..].join("\n");
        let before = thread_cpu(self.pid());
        let started = Instant::now();
        self.ask_registers();
        let ended_before = self.try_status();
        let (vmm, status) = match ended_before {
            Some(status) => (format!("the VMM ended: {status}"), String::new()),
            None => (
                "the VMM still runs".to_owned(),
                format!(
                    "\n--- the guest's status (console request):\n{}",
                    self.status()
                ),
            ),
        };
        // The CPU times are in clock ticks: sample over at least a second.
        std::thread::sleep(CPU_SAMPLE.saturating_sub(started.elapsed()));
        self.ask_registers();
        let threads = thread_states(self.pid(), &before, started.elapsed());
        // A VMM on its way out when the report began: how it ended (husk-vmm exits 0
        // when the guest reset or powered off the machine, 143 when it was stopped).
        let ended = match (ended_before, self.try_status()) {
            (None, Some(status)) => format!("\nthe VMM ended during this report: {status}"),
            _ => String::new(),
        };
        format!(
            "{vmm}\n--- its threads:\n{threads}{status}{ended}\n--- guest console (last lines, before the request):\n{console}",
        )
    }

    /// Asks husk-vmm (`SIGUSR1`) to log where each vCPU is in the guest; its stderr
    /// gets a `registers on request` line per vCPU. Other VMMs are left alone.
    fn ask_registers(&self) {
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", self.pid()));
        if comm.is_ok_and(|c| c.trim() == "husk-vmm") {
            let pid = nix::unistd::Pid::from_raw(self.pid() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1);
        }
    }

    /// Types `status` on the console and gives back the guest's report.
    fn status(&mut self) -> String {
        if let Err(e) = self.send_line("status") {
            return e;
        }
        let mark = self.transcript.len();
        match self.wait_for_line(status::END, STATUS_TIMEOUT) {
            Ok(_) => self.transcript[mark..]
                .iter()
                .filter(|l| l.starts_with(status::PREFIX))
                .map(|l| &l[status::PREFIX.len()..])
                .collect::<Vec<_>>()
                .join("\n"),
            Err(_) => format!(
                "no answer within {STATUS_TIMEOUT:?}: the guest's kernel or its PID 1 is stuck"
            ),
        }
    }

    fn failure(&self, what: &str) -> String {
        format!("{what}; console so far:\n{}", self.transcript.join("\n"))
    }
}

impl Drop for ConsoleVm {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Lines of console or log a failure report shows.
pub const POST_MORTEM_LINES: usize = 40;

/// How long the guest has to answer the console request `status`.
pub const STATUS_TIMEOUT: Duration = Duration::from_secs(5);
/// Shortest interval over which a post-mortem samples the VMM's threads' CPU time.
const CPU_SAMPLE: Duration = Duration::from_secs(1);

/// CPU time of one thread, clock ticks (`/proc/<pid>/task/<tid>/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// Running guest code (`guest_time`, field 43).
    pub guest: u64,
    /// In user space, guest code excluded (`utime` - `guest_time`).
    pub user: u64,
    /// In the kernel (`stime`, field 15).
    pub system: u64,
}

impl CpuTicks {
    /// Parses a thread's `stat` line; the command name may hold spaces and parentheses.
    pub fn parse(stat: &str) -> Option<CpuTicks> {
        let (_, fields) = split_stat(stat)?;
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        let guest = field(43)?;
        Some(CpuTicks {
            guest,
            user: field(14)?.saturating_sub(guest),
            system: field(15)?,
        })
    }
}

/// Each thread's CPU time, by thread ID.
fn thread_cpu(pid: u32) -> HashMap<String, CpuTicks> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            Some((
                task.file_name().to_string_lossy().into_owned(),
                CpuTicks::parse(&stat)?,
            ))
        })
        .collect()
}

/// One line per thread of process `pid`: name, scheduler state, where the kernel has
/// it waiting, and the CPU time it used since `before` was sampled (`over` ago): in
/// the guest, in the VMM's user space, in the kernel. A vCPU thread asleep in user
/// space is blocked on a lock of the VMM; one whose time goes to the guest while the
/// guest answers nothing runs a stuck guest; one whose time goes to the VMM or the
/// kernel is stuck in the VMM or below it.
pub fn thread_states(pid: u32, before: &HashMap<String, CpuTicks>, over: Duration) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return format!("(no /proc/{pid})");
    };
    // SAFETY: sysconf has no memory effects; it reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let secs = |ticks: u64| ticks as f64 / hz;
    let mut lines = Vec::new();
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let stat = read("stat");
        let state = split_stat(&stat)
            .and_then(|(_, fields)| fields.first().copied())
            .unwrap_or("?");
        let stack: Vec<String> = read("stack")
            .lines()
            .take(4)
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect();
        let tid = task.file_name().to_string_lossy().into_owned();
        let cpu = match (before.get(&tid), CpuTicks::parse(&stat)) {
            (Some(b), Some(a)) => format!(
                " cpu in {:.1} s: guest {:.2} s, vmm {:.2} s, kernel {:.2} s",
                over.as_secs_f64(),
                secs(a.guest.saturating_sub(b.guest)),
                secs(a.user.saturating_sub(b.user)),
                secs(a.system.saturating_sub(b.system)),
            ),
            _ => String::new(),
        };
        lines.push(format!(
            "{} {state} wchan={} stack={}{cpu}",
            read("comm").trim(),
            read("wchan"),
            stack.join(" < ")
        ));
    }
    lines.sort();
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_split_guest_time_out_of_user_time() {
        // Fields 3 to 52 of proc(5); utime (14) 500, stime (15) 7, guest_time (43) 420.
        let mut fields = vec!["0"; 50];
        fields[0] = "R";
        fields[14 - 3] = "500";
        fields[15 - 3] = "7";
        fields[43 - 3] = "420";
        let stat = format!("4242 (vcpu 0 (x)) {}", fields.join(" "));
        assert_eq!(
            CpuTicks::parse(&stat),
            Some(CpuTicks {
                guest: 420,
                user: 80,
                system: 7
            })
        );
        assert_eq!(CpuTicks::parse("4242 (short) R 1 2"), None);
    }

    #[test]
    fn this_process_threads_are_sampled() {
        let me = std::process::id();
        let before = thread_cpu(me);
        assert!(!before.is_empty());
        let lines = thread_states(me, &before, Duration::from_millis(10));
        assert!(lines.contains(" cpu in 0.0 s: guest 0.00 s"), "{lines}");
    }
}
