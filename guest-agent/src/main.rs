//! `husk-agent`: PID 1 of a husk microVM.

use husk_agent::cmdline::AgentConfig;
use husk_agent::console::{self, ConsoleRequest};
use husk_agent::server::{self, Context};
use husk_agent::{mounts, power, procfs};
use husk_protocol::console::{POWEROFF_PREFIX, READY_PREFIX, VERSION};
use husk_protocol::error_chain;
use nix::sys::signal::{SigSet, Signal};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How long the agent waits after a host `shutdown` request before it ends the VM, so
/// that the answer leaves the guest's vsock queue.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(100);

/// Why the agent ends the VM.
enum Stop {
    Console,
    Request,
    Signal(Signal),
    Timeout(Duration),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Console => write!(f, "requested on the console"),
            Stop::Request => write!(f, "requested by the host over vsock"),
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
    if let Stop::Request = stop {
        std::thread::sleep(SHUTDOWN_GRACE);
    }
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
    for tag in &config.shares {
        match husk_agent::shares::mount_share(tag) {
            Ok(at) => println!("husk-agent: share {tag:?} mounted at {}", at.display()),
            // Not fatal: the host learns it when it uses the share (the container's
            // root file system is then missing), and the console says why.
            Err(e) => println!("husk-agent: {}", error_chain(&e)),
        }
    }
    // As runc does for a new network namespace: loopback is up.
    if let Err(e) = husk_agent::network::loopback_up() {
        println!("husk-agent: cannot bring loopback up: {}", error_chain(&e));
    }
    // PID 1 reaps every orphan of the guest; container processes go through it.
    let reaper = husk_agent::container::Reaper::reap_all()?;
    let (tx, rx) = mpsc::channel();
    start_server(tx.clone(), reaper);

    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "{READY_PREFIX} (version {VERSION}, {cpus} cpus, {} MiB, {} ms after kernel start)",
        mem_total_kib()? / 1024,
        procfs::read_parsed(Path::new("/proc"), "uptime", procfs::parse_uptime_ms)?
    );

    let console_tx = tx.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            match console::parse_line(&line) {
                Ok(Some(ConsoleRequest::PowerOff)) => {
                    let _ = console_tx.send(Stop::Console);
                }
                Ok(Some(ConsoleRequest::Status)) => {
                    for line in console::status::report(Path::new("/proc")) {
                        println!("{line}");
                    }
                }
                Ok(None) => {}
                Err(word) => {
                    println!("husk-agent: unknown console request {word:?} (try: poweroff, status)")
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
fn mem_total_kib() -> std::io::Result<u64> {
    procfs::read_parsed(Path::new("/proc"), "meminfo", |text| {
        procfs::parse_meminfo_kib(text, "MemTotal")
    })
}

/// Starts the vsock protocol server; without a vsock device, says so and goes on.
fn start_server(stop: mpsc::Sender<Stop>, reaper: Arc<husk_agent::container::Reaper>) {
    let listener = match server::listen() {
        Ok(listener) => listener,
        Err(e) => {
            println!(
                "husk-agent: vsock unavailable ({e}): the host cannot reach the agent; \
                 the console still takes poweroff"
            );
            return;
        }
    };
    let ctx = Arc::new(
        Context::new(move || {
            let _ = stop.send(Stop::Request);
        })
        .with_reaper(reaper)
        .with_cgroups(PathBuf::from("/sys/fs/cgroup")),
    );
    let spawned = std::thread::Builder::new()
        .name("agent-server".into())
        .spawn(move || server::serve(listener, ctx));
    if let Err(e) = spawned {
        println!("husk-agent: cannot start the vsock server: {e}");
    }
}
