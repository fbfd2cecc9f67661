//! `husk-vmm`: boot a kernel and initramfs in a husk microVM by hand.
//!
//! ```text
//! husk-vmm --kernel vmlinux|bzImage [--initrd FILE] [--mem MIB] [--vcpus N]
//!          [--cmdline "..."] [--serial-out stdout|FILE] [--rng] [--vsock PATH]
//!          [--share DIR [--share-tag TAG] [--virtiofsd PATH]]
//!          [--net-tap NAME [--net-mac MAC] [--net-mtu MTU]]
//! ```
//!
//! The guest console (COM1) goes to stdout or a file; stdin, when it is a terminal or
//! a pipe, is typed into it. Exit status: 0 when the guest ends the VM (reset or power
//! off), 1 on error, 128+N when stopped by signal N.

use anyhow::Context;
use clap::Parser;
use husk_vmm::builder::{VmConfig, Vmm};
use husk_vmm::devices::legacy::serial::ConsoleOut;
use husk_vmm::devices::virtio::fs::Fs;
use husk_vmm::devices::virtio::net::{tap::Tap, MacAddr, Net};
use husk_vmm::devices::virtio::{rng::Rng, vsock::Vsock, VirtioDevice};
use husk_vmm::virtiofsd::{find_binary, Virtiofsd, VirtiofsdConfig};
use husk_vmm::vstate::vcpu::VmExit;
use nix::sys::signal::{SigSet, Signal};
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The vsock context ID of the guest (2 is the host).
const GUEST_CID: u64 = 3;

/// How long a failed VM's virtiofsd gets to report how it ended.
const EXIT_WAIT: Duration = Duration::from_secs(1);

/// The command line husk guests boot with unless told otherwise.
const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=t panic=-1 quiet";

#[derive(Debug, Parser)]
#[command(version, about = "Boot a kernel in a husk microVM (KVM)")]
struct Cli {
    /// Kernel: an ELF vmlinux or a bzImage with a 64-bit entry point.
    #[arg(long)]
    kernel: PathBuf,
    /// Initramfs (for husk guests: the one with husk-agent as /init).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    mem: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    vcpus: u8,
    /// Kernel command line (the VMM appends its virtio_mmio.device= words).
    #[arg(long, default_value = DEFAULT_CMDLINE)]
    cmdline: String,
    /// Where the guest console goes: `stdout` or a file path.
    #[arg(long, default_value = "stdout")]
    serial_out: String,
    /// Attach a virtio-rng device (entropy for the guest).
    #[arg(long)]
    rng: bool,
    /// Attach a virtio-vsock device (guest CID 3) whose host side is the unix socket
    /// PATH: connect and write `CONNECT <port>\n` to reach a guest port; guest
    /// connections to host port P reach the unix socket `PATH_P`.
    #[arg(long, value_name = "PATH")]
    vsock: Option<PathBuf>,
    /// Share this directory with the guest over virtio-fs, served by a virtiofsd the
    /// VMM starts (sandboxed) and stops. The guest mounts it by its tag.
    #[arg(long, value_name = "DIR")]
    share: Option<PathBuf>,
    /// The virtio-fs tag of --share.
    #[arg(long, default_value = "rootfs")]
    share_tag: String,
    /// The virtiofsd binary; default: `virtiofsd` on PATH, then /usr/libexec/virtiofsd.
    #[arg(long, value_name = "PATH")]
    virtiofsd: Option<PathBuf>,
    /// virtiofsd's vhost-user socket; default: a name under the temporary directory.
    #[arg(long, value_name = "PATH")]
    virtiofsd_socket: Option<PathBuf>,
    /// How long virtiofsd may take to start, seconds.
    #[arg(long, default_value_t = 10)]
    virtiofsd_timeout: u64,
    /// virtiofsd's cache policy: auto, always, never or metadata.
    #[arg(long, default_value = "auto")]
    virtiofsd_cache: String,
    /// Attach a virtio-net device whose host end is the tap interface NAME (created
    /// if it does not exist, removed with the VMM unless it was made persistent).
    #[arg(long, value_name = "NAME")]
    net_tap: Option<String>,
    /// The guest's MAC address (a unicast address).
    #[arg(
        long,
        value_name = "MAC",
        default_value = "02:68:75:73:6b:01",
        requires = "net_tap"
    )]
    net_mac: MacAddr,
    /// The MTU announced to the guest (default: none, the guest uses 1500).
    #[arg(long, value_name = "MTU", requires = "net_tap")]
    net_mtu: Option<u16>,
    /// Log level of the VMM itself (error, warn, info, debug, trace), on stderr.
    #[arg(long, default_value = "warn")]
    log_level: tracing::Level,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log_level)
        .with_writer(std::io::stderr)
        // Colours only for a terminal: stderr is often a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("husk-vmm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Stop signals, and SIGUSR1 (a register report), are taken by one thread; block
    // them before any thread starts (virtiofsd's log reader is one), or a thread that
    // has them unblocked takes them with their default action: the end of the process.
    let mut signals = SigSet::empty();
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        signals.add(sig);
    }
    signals
        .thread_block()
        .context("cannot block stop signals")?;
    let console: ConsoleOut = match cli.serial_out.as_str() {
        "stdout" => Box::new(std::io::stdout()),
        path => {
            Box::new(std::fs::File::create(path).with_context(|| format!("cannot create {path}"))?)
        }
    };
    let config = VmConfig {
        kernel: cli.kernel,
        initrd: cli.initrd,
        mem_mib: cli.mem,
        vcpus: cli.vcpus,
        cmdline: cli.cmdline,
    };
    let mut devices: Vec<Box<dyn VirtioDevice>> = Vec::new();
    if cli.rng {
        devices.push(Box::new(Rng::new()));
    }
    if let Some(path) = cli.vsock {
        devices.push(Box::new(Vsock::new(GUEST_CID, path)?));
    }
    if let Some(name) = &cli.net_tap {
        let tap = Tap::open(name)?;
        devices.push(Box::new(Net::new(Box::new(tap), cli.net_mac, cli.net_mtu)?));
    }
    let mut virtiofsd = None;
    if let Some(dir) = &cli.share {
        let binary = match &cli.virtiofsd {
            Some(path) => path.clone(),
            None => find_binary().context(
                "virtiofsd not found on PATH nor at /usr/libexec/virtiofsd: \
                 install it with tests/setup.sh or name it with --virtiofsd",
            )?,
        };
        let socket = cli.virtiofsd_socket.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "husk-vmm-{}-{}.sock",
                std::process::id(),
                cli.share_tag
            ))
        });
        let (daemon, stream) = Virtiofsd::start(&VirtiofsdConfig {
            binary,
            shared_dir: dir.clone(),
            socket: socket.clone(),
            start_timeout: Duration::from_secs(cli.virtiofsd_timeout),
            cache: cli.virtiofsd_cache.clone(),
            layout: None,
        })?;
        let fs = Fs::with_stream(stream, socket.display().to_string(), &cli.share_tag)?;
        devices.push(Box::new(fs));
        virtiofsd = Some(daemon);
    }

    let mut vmm = Vmm::build(&config, console, devices)?;
    if let Ok(stdin) = std::io::stdin().as_fd().try_clone_to_owned() {
        // Not every stdin can be watched (a regular file, /dev/null): then there is
        // simply no console input.
        let _ = vmm.set_console_input(stdin.into());
    }
    let control = vmm.control();
    std::thread::spawn(move || loop {
        match signals.wait() {
            Ok(Signal::SIGUSR1) => {
                control.request_register_report();
            }
            Ok(sig) => {
                eprintln!("husk-vmm: signal {sig}: stopping the VM");
                control.request_exit(VmExit::Stopped);
                break;
            }
            Err(_) => break,
        }
    });

    let exit = vmm.run()?;
    Ok(match exit {
        VmExit::Reset | VmExit::Shutdown => ExitCode::SUCCESS,
        VmExit::Stopped => ExitCode::from(128 + libc::SIGTERM as u8),
        VmExit::Error(e) => match virtiofsd.as_mut().and_then(|d| d.wait_exit(EXIT_WAIT)) {
            Some(status) => {
                let daemon = virtiofsd
                    .as_ref()
                    .map(|d| d.stderr_tail())
                    .unwrap_or_default();
                anyhow::bail!("the VM failed: {e}: virtiofsd ended ({status}); its last stderr lines: {daemon:?}")
            }
            None => anyhow::bail!("the VM failed: {e}"),
        },
    })
}
