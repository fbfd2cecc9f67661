//! PID 1 of the test host.
//!
//! The kernel mounts the build machine's root read-only over 9p and starts
//! `husk-testbed` as init. It makes the places engines write to writable (tmpfs, and
//! overlays over `/etc`, `/var`, `/root` and `/tmp` so their contents stay visible), mounts the job
//! directory, runs the job with the console as its stdout and stderr, reaps orphans,
//! writes the job's status and resets the machine, which ends QEMU (`-no-reboot`).

use super::job::{self, Job};
use super::{JOB_MOUNT, JOB_TAG};
use husk_agent::mounts::{mount_all, MountSpec, NOSUID_NODEV_NOEXEC};
use nix::mount::MsFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

const fn spec(
    source: &'static str,
    fstype: &'static str,
    target: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
) -> MountSpec {
    MountSpec {
        source,
        fstype,
        target,
        flags,
        data,
    }
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// Pseudo filesystems and scratch space, on top of the read-only shared root.
pub const BASE_MOUNTS: &[MountSpec] = &[
    spec("proc", "proc", "/proc", NOSUID_NODEV_NOEXEC, None),
    spec("sysfs", "sysfs", "/sys", NOSUID_NODEV_NOEXEC, None),
    spec(
        "cgroup2",
        "cgroup2",
        "/sys/fs/cgroup",
        NOSUID_NODEV_NOEXEC,
        None,
    ),
    spec("devtmpfs", "devtmpfs", "/dev", MsFlags::MS_NOSUID, None),
    spec(
        "devpts",
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        Some("mode=0620,ptmxmode=0666"),
    ),
    spec("shm", "tmpfs", "/dev/shm", NOSUID_NODEV, Some("mode=1777")),
    spec("mqueue", "mqueue", "/dev/mqueue", NOSUID_NODEV_NOEXEC, None),
    spec("run", "tmpfs", "/run", NOSUID_NODEV, Some("mode=0755")),
];

/// Writable views of `/etc`, `/var`, `/root` (where `~/.cache/husk` lives) and `/tmp`
/// (where a checkout may live): the shared contents below, a tmpfs above.
pub const OVERLAY_MOUNTS: &[MountSpec] = &[
    spec(
        "overlay",
        "overlay",
        "/etc",
        MsFlags::empty(),
        Some(
            "lowerdir=/etc,upperdir=/run/husk-testbed/etc/upper,workdir=/run/husk-testbed/etc/work",
        ),
    ),
    spec(
        "overlay",
        "overlay",
        "/var",
        MsFlags::empty(),
        Some(
            "lowerdir=/var,upperdir=/run/husk-testbed/var/upper,workdir=/run/husk-testbed/var/work",
        ),
    ),
    spec(
        "overlay",
        "overlay",
        "/root",
        MsFlags::empty(),
        Some("lowerdir=/root,upperdir=/run/husk-testbed/root/upper,workdir=/run/husk-testbed/root/work"),
    ),
    spec(
        "overlay",
        "overlay",
        "/tmp",
        MsFlags::empty(),
        Some(
            "lowerdir=/tmp,upperdir=/run/husk-testbed/tmp/upper,workdir=/run/husk-testbed/tmp/work",
        ),
    ),
    spec(
        JOB_TAG,
        "9p",
        JOB_MOUNT,
        NOSUID_NODEV,
        Some("trans=virtio,version=9p2000.L,msize=262144"),
    ),
];

/// Status reported when the testbed itself, not the job, failed inside the test host.
pub const SETUP_FAILED: i32 = 125;

/// Runs as PID 1 of the test host; never returns.
pub fn run() -> ! {
    let code = match prepare() {
        Ok(job) => run_job(&job),
        Err(e) => {
            eprintln!("husk-testbed init: {e:#}");
            SETUP_FAILED
        }
    };
    if let Err(e) = job::write_status(Path::new(JOB_MOUNT), code) {
        eprintln!("husk-testbed init: cannot report the exit status: {e}");
    }
    nix::unistd::sync();
    let err = match nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    eprintln!("husk-testbed init: reboot failed: {err}");
    std::process::exit(1)
}

fn prepare() -> anyhow::Result<Job> {
    mount_all(BASE_MOUNTS)?;
    for dir in ["etc", "var", "root", "tmp"] {
        for sub in ["upper", "work"] {
            std::fs::create_dir_all(format!("/run/husk-testbed/{dir}/{sub}"))?;
        }
    }
    mount_all(OVERLAY_MOUNTS)?;
    nix::unistd::sethostname("husk-testhost")?;
    loopback_up()?;
    Ok(Job::read_from(Path::new(JOB_MOUNT))?)
}

/// Starts the job and reaps every process until the job itself ends.
fn run_job(job: &Job) -> i32 {
    if !job.cwd.is_dir() {
        eprintln!(
            "husk-testbed init: the working directory {} is not visible in the test host",
            job.cwd.display()
        );
        return SETUP_FAILED;
    }
    let mut cmd = Command::new(&job.argv[0]);
    cmd.args(&job.argv[1..])
        .env_clear()
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&job.cwd)
        .stdin(Stdio::null())
        .process_group(0);
    let child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("husk-testbed init: cannot start {:?}: {e}", job.argv[0]);
            return 127;
        }
    };
    let job_pid = Pid::from_raw(child.id() as i32);
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(pid, code)) if pid == job_pid => return code,
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == job_pid => return 128 + sig as i32,
            Ok(_) => {}
            Err(nix::Error::EINTR) => {}
            Err(e) => {
                eprintln!("husk-testbed init: waitpid: {e}");
                return SETUP_FAILED;
            }
        }
    }
}

/// Brings the loopback interface up, as `ip link set lo up` would.
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `ifreq` is plain data for which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of `req`, which lives
    // for the whole call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just filled `ifru_flags`, the active member for this request.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads `req`, which lives for the whole call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use husk_agent::mounts::check_order;

    #[test]
    fn test_host_mounts_are_in_order() {
        let all: Vec<MountSpec> = BASE_MOUNTS.iter().chain(OVERLAY_MOUNTS).copied().collect();
        check_order(&all).unwrap();
    }

    #[test]
    fn places_engines_write_to_are_writable() {
        let all: Vec<&MountSpec> = BASE_MOUNTS.iter().chain(OVERLAY_MOUNTS).collect();
        for dir in ["/etc", "/var", "/root", "/tmp", "/run", "/dev/shm"] {
            let m = all.iter().find(|m| m.target == dir);
            let m = m.unwrap_or_else(|| panic!("{dir} stays the read-only shared root"));
            assert!(!m.flags.contains(MsFlags::MS_RDONLY), "{dir}");
            assert!(
                matches!(m.fstype, "tmpfs" | "overlay"),
                "{dir}: {}",
                m.fstype
            );
        }
    }

    #[test]
    fn overlay_scratch_lives_on_the_run_tmpfs() {
        for m in OVERLAY_MOUNTS.iter().filter(|m| m.fstype == "overlay") {
            let data = m.data.unwrap();
            assert!(data.contains(&format!("lowerdir={}", m.target)), "{data}");
            for key in ["upperdir=/run/", "workdir=/run/"] {
                assert!(data.contains(key), "{data}");
            }
        }
    }
}
