//! `husk-agent`: PID 1 of a husk microVM.

use husk_agent::cmdline::AgentConfig;
use husk_agent::console::{self, ConsoleRequest};
use husk_agent::{mounts, power, POWEROFF_PREFIX, READY_PREFIX, VERSION};
use nix::sys::signal::{SigSet, Signal};
use std::io::BufRead;
use std::sync::mpsc;
use std::time::Duration;

/// Why the agent ends the VM.
enum Stop {
    Console,
    Signal(Signal),
    Timeout(Duration),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Console => write!(f, "requested on the console"),
            Stop::Signal(sig) => write!(f, "{sig} received"),
            Stop::Timeout(after) => write!(f, "husk.poweroff_after={}s elapsed", after.as_secs()),
        }
    }
}

fn main() {
    if std::process::id() != 1 {
        eprintln!("husk-agent: must run as PID 1 (init) inside a husk guest");
        std::process::exit(2);
    }
    let stop = match run() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("husk-agent: fatal: {e}");
            power::power_off();
        }
    };
    println!("{POWEROFF_PREFIX} ({stop})");
    power::power_off();
}

fn run() -> Result<Stop, Box<dyn std::error::Error>> {
    // Signals that ask init to stop are taken synchronously by one thread; block them
    // before any thread starts so that every thread inherits the mask.
    let mut stop_signals = SigSet::empty();
    stop_signals.add(Signal::SIGTERM);
    stop_signals.add(Signal::SIGINT);
    stop_signals.thread_block()?;

    mounts::mount_early()?;
    let cmdline = std::fs::read_to_string("/proc/cmdline")?;
    let config = AgentConfig::from_cmdline(&cmdline)?;

    let virtio =
        husk_agent::devices::virtio_devices(std::path::Path::new("/sys/bus/virtio/devices"));
    if !virtio.is_empty() {
        println!("husk-agent: virtio devices: {}", virtio.join(", "));
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{READY_PREFIX} (version {VERSION}, {cpus} cpus, {} MiB, {} ms after kernel start)",
        mem_total_mib()?,
        uptime_ms()?
    );

    let (tx, rx) = mpsc::channel();
    let console_tx = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match console::parse_line(&line) {
                Ok(Some(ConsoleRequest::PowerOff)) => {
                    let _ = console_tx.send(Stop::Console);
                }
                Ok(None) => {}
                Err(word) => {
                    println!("husk-agent: unknown console request {word:?} (try: poweroff)")
                }
            }
        }
    });
    std::thread::spawn(move || {
        if let Ok(sig) = stop_signals.wait() {
            let _ = tx.send(Stop::Signal(sig));
        }
    });

    Ok(match config.poweroff_after {
        Some(after) => rx.recv_timeout(after).unwrap_or(Stop::Timeout(after)),
        // The signal thread holds a sender for as long as the agent runs, so this
        // waits for a console request or a signal.
        None => rx.recv().unwrap_or(Stop::Console),
    })
}

/// Memory the kernel manages, from `/proc/meminfo`.
fn mem_total_mib() -> Result<u64, Box<dyn std::error::Error>> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .ok_or("no MemTotal in /proc/meminfo")?
        .trim()
        .parse()?;
    Ok(kib / 1024)
}

/// Milliseconds since the kernel started, from `/proc/uptime`.
fn uptime_ms() -> Result<u64, Box<dyn std::error::Error>> {
    let uptime = std::fs::read_to_string("/proc/uptime")?;
    let secs: f64 = uptime
        .split_whitespace()
        .next()
        .ok_or("empty /proc/uptime")?
        .parse()?;
    Ok((secs * 1000.0) as u64)
}
