//! A directory of the host shared with the guest over virtio-fs (husk-vmm's
//! vhost-user-fs frontend, served by virtiofsd), end to end: what one side writes the
//! other reads, with modes, owners and extended attributes. The guest side runs
//! `husk-checker` as a container process whose root file system is the share.
//!
//! The guests need hardware KVM: those tests are ignored by a plain `cargo test` and
//! run in the testbed by `tests/run.sh`. The tests of bad set-ups run anywhere.

use husk_protocol::diag::StreamGenerator;
use husk_tests::guest_exec::Ran;
use husk_tests::guest_image::workspace_bin;
use husk_tests::scratch_fs::ScratchFs;
use husk_tests::share_guest::{field, ShareGuest, EXIT_TIMEOUT};
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Guest-side work on large files and directories.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

/// The test's view of [`ShareGuest`]: every failure panics.
struct FsGuest(ShareGuest);

impl FsGuest {
    /// A guest with virtiofsd's default cache policy (`auto`: the guest may keep
    /// what it looked up for a second).
    fn boot(work: &Path, share: &Path) -> FsGuest {
        FsGuest(ShareGuest::boot(work, share, "auto", RUN_TIMEOUT).unwrap())
    }

    /// A guest that sees changes made on the host at once (`--virtiofsd-cache
    /// never`), as a user who edits a share from both sides would configure it.
    fn boot_coherent(work: &Path, share: &Path) -> FsGuest {
        FsGuest(ShareGuest::boot(work, share, "never", RUN_TIMEOUT).unwrap())
    }

    /// Runs the checker in the guest; panics unless it exits 0. Returns its stdout.
    fn check(&mut self, args: &[&str]) -> String {
        self.0.check(args).unwrap()
    }

    fn run(&mut self, args: &[&str]) -> Ran {
        self.0.run(args).unwrap()
    }

    fn power_off(self) {
        let stderr = self.0.vmm_stderr();
        if !stderr.trim().is_empty() {
            eprintln!("husk-vmm said:\n{stderr}");
        }
        let status = self.0.power_off().unwrap();
        assert!(status.success(), "husk-vmm: {status}; {stderr}");
    }
}

/// A work directory with a scratch ext4 (`user.*` xattrs) as the share.
struct Work {
    dir: PathBuf,
    fs: Option<ScratchFs>,
}

impl Work {
    fn new(name: &str) -> Work {
        let dir = std::env::temp_dir().join(format!("husk-virtiofs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let fs = ScratchFs::new(&dir.join("scratch.img"), &dir.join("share"), 1024).unwrap();
        Work { dir, fs: Some(fs) }
    }

    fn share(&self) -> PathBuf {
        self.fs.as_ref().unwrap().path().to_owned()
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        drop(self.fs.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kv<'a>(line: &'a str, key: &str) -> &'a str {
    field(line, key).unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

fn set_xattr(path: &Path, name: &str, value: &str) {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    // SAFETY: NUL-terminated path and name; the value's pointer and length match.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
}

fn get_xattr(path: &Path, name: &str) -> String {
    try_get_xattr(path, name).unwrap_or_else(|e| panic!("getxattr {name}: {e}"))
}

fn try_get_xattr(path: &Path, name: &str) -> std::io::Result<String> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: NUL-terminated path and name; the buffer is ours and its length passed.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(String::from_utf8_lossy(&buf[..len as usize]).into_owned())
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn files_modes_owners_and_xattrs_cross_both_ways() {
    let work = Work::new("attrs");
    let share = work.share();
    let host_file = share.join("from-host");
    std::fs::write(&host_file, "written on the host").unwrap();
    std::fs::set_permissions(&host_file, std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(&host_file, Some(1234), Some(5678)).unwrap();
    set_xattr(&host_file, "user.husk", "from-host");
    // Host-side renames and unlinks are checked right after they happen.
    let mut guest = FsGuest::boot_coherent(&work.dir, &share);

    // Host to guest.
    let stat = guest.check(&["stat", "/from-host"]);
    assert_eq!(kv(&stat, "mode"), "0o100640", "{stat}");
    assert_eq!((kv(&stat, "uid"), kv(&stat, "gid")), ("1234", "5678"));
    assert_eq!(
        guest.check(&["read", "/from-host"]),
        "text=written on the host"
    );
    assert_eq!(
        guest.check(&["get-xattr", "/from-host", "user.husk"]),
        "value=from-host"
    );

    // Guest to host.
    guest.check(&[
        "create",
        "/from-guest",
        "written in the guest",
        "--mode",
        "600",
        "--owner",
        "42:43",
    ]);
    guest.check(&["set-xattr", "/from-guest", "user.husk", "from-guest"]);
    let guest_file = share.join("from-guest");
    assert_eq!(
        std::fs::read_to_string(&guest_file).unwrap(),
        "written in the guest"
    );
    let meta = std::fs::metadata(&guest_file).unwrap();
    assert_eq!(meta.mode(), 0o100600);
    assert_eq!((meta.uid(), meta.gid()), (42, 43));
    assert_eq!(get_xattr(&guest_file, "user.husk"), "from-guest");

    // Rename and unlink, each side seeing the other's.
    guest.check(&["rename", "/from-host", "/renamed-in-guest"]);
    assert!(!host_file.exists());
    assert_eq!(
        std::fs::read_to_string(share.join("renamed-in-guest")).unwrap(),
        "written on the host"
    );
    std::fs::rename(&guest_file, share.join("renamed-on-host")).unwrap();
    assert_eq!(guest.check(&["exists", "/from-guest"]), "exists=no");
    assert_eq!(
        guest.check(&["read", "/renamed-on-host"]),
        "text=written in the guest"
    );
    std::fs::remove_file(share.join("renamed-on-host")).unwrap();
    assert_eq!(guest.check(&["exists", "/renamed-on-host"]), "exists=no");
    guest.check(&["unlink", "/renamed-in-guest"]);
    assert!(!share.join("renamed-in-guest").exists());
    // A file that is not there is an error in the guest, not a hang.
    let missing = guest.run(&["read", "/nothing-here"]);
    assert_eq!(missing.exit_code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("No such file"), "{missing:?}");
    guest.power_off();
}

/// The guest owns its VM, not the host's files: the `trusted.*` and `security.*`
/// attributes it sets on a read-write share land under `user.virtiofs.` on the host
/// (virtiofsd's `--xattrmap`), so a `security.capability` it writes never gives a
/// host file capabilities; in the guest they read back as set.
#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_guest_cannot_set_trusted_or_security_xattrs_on_host_files() {
    let work = Work::new("xattr-map");
    let share = work.share();
    let host_file = share.join("target");
    std::fs::write(&host_file, "a host file").unwrap();
    let mut guest = FsGuest::boot(&work.dir, &share);
    for name in ["trusted.husk", "security.husk"] {
        guest.check(&["set-xattr", "/target", name, "from-guest"]);
        assert_eq!(
            guest.check(&["get-xattr", "/target", name]),
            "value=from-guest"
        );
        let on_host = try_get_xattr(&host_file, name);
        assert_eq!(
            on_host.as_ref().map_err(|e| e.raw_os_error()),
            Err(Some(libc::ENODATA)),
            "the guest set {name} on a host file: {on_host:?}"
        );
        assert_eq!(
            get_xattr(&host_file, &format!("user.virtiofs.{name}")),
            "from-guest"
        );
    }
    guest.power_off();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_256_mib_file_checksums_the_same_on_both_sides() {
    let work = Work::new("big");
    let share = work.share();
    let mut data = StreamGenerator::new(7);
    let mut f = std::fs::File::create(share.join("big-from-host")).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..256 {
        data.fill(&mut buf);
        f.write_all(&buf).unwrap();
    }
    f.sync_all().unwrap();
    drop(f);
    let host_sum = sha256_file(&share.join("big-from-host"));
    let mut guest = FsGuest::boot(&work.dir, &share);

    let seen = guest.check(&["sha256", "/big-from-host"]);
    assert_eq!(kv(&seen, "bytes"), (256u64 << 20).to_string());
    assert_eq!(kv(&seen, "sha256"), host_sum);

    guest.check(&["write-seq", "/big-from-guest", "256"]);
    let guest_sum = guest.check(&["sha256", "/big-from-guest"]);
    assert_eq!(
        sha256_file(&share.join("big-from-guest")),
        kv(&guest_sum, "sha256")
    );
    assert_eq!(
        std::fs::metadata(share.join("big-from-guest"))
            .unwrap()
            .len(),
        256 << 20
    );
    guest.power_off();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_directory_of_10000_entries_lists_completely() {
    let work = Work::new("many");
    let share = work.share();
    let host_dir = share.join("from-host");
    std::fs::create_dir(&host_dir).unwrap();
    for i in 0..10_000 {
        std::fs::write(host_dir.join(format!("entry-{i}")), b"").unwrap();
    }
    let mut guest = FsGuest::boot(&work.dir, &share);
    assert_eq!(guest.check(&["count", "/from-host"]), "entries=10000");
    // The other way, smaller: each create costs several FUSE round trips, slow under
    // the testbed's emulation (10,000 took over 5 minutes).
    guest.check(&["make-files", "/from-guest", "1000"]);
    assert_eq!(
        std::fs::read_dir(share.join("from-guest")).unwrap().count(),
        1000
    );
    guest.power_off();
}

/// virtiofsd's processes: the children of husk-vmm named virtiofsd, and theirs.
fn virtiofsd_pids(vmm: u32) -> Vec<u32> {
    let children = |pid: u32| -> Vec<u32> {
        let mut pids = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let list = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        pids
    };
    let mut found = Vec::new();
    let mut todo = children(vmm);
    while let Some(pid) = todo.pop() {
        todo.extend(children(pid));
        found.push(pid);
    }
    found
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn killing_virtiofsd_ends_the_vm_with_a_clear_error() {
    let work = Work::new("kill");
    let share = work.share();
    let mut guest = FsGuest::boot(&work.dir, &share);
    guest.check(&["exists", "/husk-checker"]);
    let daemons = virtiofsd_pids(guest.0.vm.pid());
    assert!(!daemons.is_empty(), "no virtiofsd under husk-vmm");
    for pid in &daemons {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let status = guest.0.vm.wait_exit(EXIT_TIMEOUT).unwrap();
    let stderr = guest.0.vmm_stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("virtio-fs backend"), "{stderr}");
    assert!(stderr.contains("\"rootfs\""), "{stderr}");
    assert!(stderr.contains("virtiofsd ended (signal: 9"), "{stderr}");
    assert!(
        !work.dir.join("virtiofsd.sock").exists(),
        "socket left behind"
    );
    for pid in daemons {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "virtiofsd {pid} left behind"
        );
    }
}

/// A check that outlives its deadline is reported with what the guest was doing: the
/// guest answers the console request `status` with its processes (the stuck one in
/// its system call), and each VMM thread's CPU time is split between guest and VMM.
#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_check_past_its_deadline_reports_what_the_guest_was_doing() {
    let work = Work::new("late");
    let share = work.share();
    std::fs::copy("/bin/busybox", share.join("busybox"))
        .expect("/bin/busybox (Debian's busybox-static; tests/setup.sh installs it)");
    let mut guest = ShareGuest::boot(&work.dir, &share, "auto", Duration::from_secs(3)).unwrap();
    let err = guest
        .run_argv(&["/busybox", "sleep", "600"])
        .expect_err("a 600 s sleep ended within 3 s");
    assert!(err.contains("did not answer within"), "{err}");
    assert!(err.contains("the VMM still runs"), "{err}");
    let status = err
        .split_once("--- the guest's status (console request):\n")
        .unwrap_or_else(|| panic!("no status section: {err}"))
        .1;
    assert!(status.starts_with(" uptime "), "{err}");
    assert!(status.contains(" pid 1 init "), "{err}");
    assert!(
        !status.contains(" kthreadd "),
        "kernel threads at rest listed: {err}"
    );
    assert!(
        status.lines().any(|l| l.contains(" busybox S syscall ")),
        "the sleeping check is not listed: {err}"
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("vcpu0 ") && l.contains(" cpu in ") && l.contains(" guest ")),
        "{err}"
    );
    // husk-vmm said where the vCPU was (the guest idles in its kernel's text); the
    // second report may come after the log was read.
    assert!(
        err.contains("vCPU 0: registers on request: rip=0xffffffff"),
        "{err}"
    );
    FsGuest(guest).power_off();
}

/// husk-vmm with `--share` and a bad set-up: it fails at once, naming the problem,
/// before any VM exists, and leaves nothing behind. Runs anywhere (no guest boots).
fn share_failure(share: &Path, virtiofsd: &Path, socket: &Path) -> String {
    let out = Command::new(workspace_bin("husk-vmm"))
        .args(["--kernel", "/nonexistent-kernel", "--share"])
        .arg(share)
        .arg("--virtiofsd")
        .arg(virtiofsd)
        .arg("--virtiofsd-socket")
        .arg(socket)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!socket.exists(), "socket left behind");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_missing_shared_directory_or_virtiofsd_is_named() {
    let dir = std::env::temp_dir().join(format!("husk-virtiofs-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("vfsd.sock");
    let err = share_failure(&dir.join("no-such-dir"), Path::new("/bin/true"), &socket);
    assert!(
        err.contains("no-such-dir") && err.contains("not a directory"),
        "{err}"
    );
    let err = share_failure(&dir, &dir.join("no-virtiofsd"), &socket);
    assert!(
        err.contains("virtiofsd not found at") && err.contains("no-virtiofsd"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
