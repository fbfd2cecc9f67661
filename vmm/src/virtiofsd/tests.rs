use super::*;
use std::os::unix::fs::PermissionsExt;

/// A scratch directory with a fake virtiofsd script and a directory to share.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("husk-vfsd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("share")).unwrap();
        Scratch { dir }
    }

    fn script(&self, body: &str) -> PathBuf {
        let path = self.dir.join("virtiofsd");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn config(&self, binary: PathBuf) -> VirtiofsdConfig {
        VirtiofsdConfig {
            binary,
            shared_dir: self.dir.join("share"),
            socket: self.dir.join("vfsd.sock"),
            start_timeout: Duration::from_secs(5),
            cache: "auto".into(),
            layout: None,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_missing_binary_is_named() {
    let s = Scratch::new("missing");
    let err = Virtiofsd::start(&s.config(s.dir.join("nope"))).unwrap_err();
    assert!(matches!(err, VirtiofsdError::Missing(_)), "{err}");
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn a_missing_shared_directory_is_named_before_anything_starts() {
    let s = Scratch::new("nodir");
    let mut config = s.config(s.script("exit 0"));
    config.shared_dir = s.dir.join("absent");
    let err = Virtiofsd::start(&config).unwrap_err();
    assert!(matches!(err, VirtiofsdError::SharedDir { .. }), "{err}");
    assert!(err.to_string().contains("absent"), "{err}");
}

#[test]
fn an_early_exit_reports_status_and_stderr() {
    let s = Scratch::new("early");
    let config = s.config(s.script("echo 'cannot share: bad things' >&2; exit 3"));
    let err = Virtiofsd::start(&config).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, VirtiofsdError::Exited { .. }), "{text}");
    assert!(text.contains("exit status: 3"), "{text}");
    // Read by a thread, and waited for: the reason is in the message every time.
    assert!(text.contains("cannot share: bad things"), "{text}");
    assert!(!config.socket.exists());
}

#[test]
fn a_silent_backend_times_out_and_is_stopped() {
    let s = Scratch::new("silent");
    let pid_file = s.dir.join("pid");
    let mut config =
        s.config(s.script(&format!("echo $$ > {}; exec sleep 60", pid_file.display())));
    config.start_timeout = Duration::from_millis(300);
    let err = Virtiofsd::start(&config).unwrap_err();
    assert!(matches!(err, VirtiofsdError::Timeout { .. }), "{err}");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The handle was dropped inside start: the process is gone (reaped, not a zombie).
    assert!(!process_exists(pid), "virtiofsd {pid} left running");
}

#[test]
fn a_taken_socket_path_is_refused() {
    let s = Scratch::new("taken");
    let config = s.config(s.script("exit 0"));
    std::fs::write(&config.socket, b"").unwrap();
    let err = Virtiofsd::start(&config).unwrap_err();
    assert!(matches!(err, VirtiofsdError::SocketExists(_)), "{err}");
}

/// With the real virtiofsd (HUSK_VIRTIOFSD, set by tests/run.sh): it takes the
/// connection, and dropping the handle stops it and removes its socket.
#[test]
fn the_real_virtiofsd_starts_and_stops() {
    let Some(binary) = std::env::var_os("HUSK_VIRTIOFSD").map(PathBuf::from) else {
        eprintln!("HUSK_VIRTIOFSD not set: skipped");
        return;
    };
    let s = Scratch::new("real");
    let config = s.config(binary);
    let (mut daemon, _stream) = Virtiofsd::start(&config).expect("start virtiofsd");
    let pid = daemon.pid();
    assert!(daemon.check_exit().is_none(), "{}", daemon.stderr_tail());
    // With --sandbox namespace the serving process is a child of the one started.
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    let children: Vec<u32> = children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    drop(daemon);
    assert!(!process_exists(pid));
    for child in children {
        // Killed with its group; reaped by init, so wait for that briefly.
        let gone = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !process_exists(child)
                || std::fs::read_to_string(format!("/proc/{child}/stat"))
                    .is_ok_and(|s| s.contains(") Z"))
        });
        assert!(gone, "virtiofsd's child {child} outlived stop()");
    }
    assert!(!config.socket.exists());
}

#[test]
fn inherited_descriptors_do_not_reach_virtiofsd() {
    use std::os::fd::AsRawFd;
    let s = Scratch::new("fds");
    // A descriptor without close-on-exec, as an engine may leave to the VMM.
    let file = std::fs::File::open("/dev/null").unwrap();
    let leaked = nix::unistd::dup(&file).unwrap();
    nix::fcntl::fcntl(
        &leaked,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .unwrap();
    let listing = s.dir.join("fds");
    let config = s.config(s.script(&format!("ls /proc/$$/fd > {}; exit 3", listing.display())));
    let err = Virtiofsd::start(&config).unwrap_err();
    assert!(matches!(err, VirtiofsdError::Exited { .. }), "{err}");
    let fds: Vec<i32> = std::fs::read_to_string(&listing)
        .unwrap()
        .split_whitespace()
        .filter_map(|fd| fd.parse().ok())
        .collect();
    assert!(fds.contains(&2), "the listing works: {fds:?}");
    assert!(
        !fds.contains(&leaked.as_raw_fd()),
        "descriptor {} reached virtiofsd: {fds:?}",
        leaked.as_raw_fd()
    );
}

/// The layout is built in virtiofsd's own mount namespace: it sees the host paths
/// below its shared directory (read-only where asked), the host sees nothing there,
/// before or after.
#[test]
fn a_layout_is_private_to_virtiofsd() {
    use layout::{Access, EntryKind, ShareEntry};
    let s = Scratch::new("layout");
    let host = s.dir.join("host");
    std::fs::create_dir_all(host.join("dir")).unwrap();
    std::fs::write(host.join("dir/inner"), b"inner\n").unwrap();
    std::fs::write(host.join("hosts"), b"10.0.0.1 box\n").unwrap();
    let out = s.dir.join("out");
    let script = s.script(&format!(
        "cat \"$4/c/mounts/0\" > {out}; ls \"$4/c/mounts/1\" >> {out}; \
         (echo x > \"$4/c/mounts/0\") 2>/dev/null && echo file-writable >> {out}; \
         (echo x > \"$4/c/mounts/1/new\") 2>/dev/null && echo dir-writable >> {out}; \
         exit 3",
        out = out.display()
    ));
    let mut config = s.config(script);
    let entry = |source: PathBuf, target: &str, kind, access| ShareEntry {
        source,
        target: target.into(),
        kind,
        access,
    };
    config.layout = Some(ShareLayout {
        entries: vec![
            entry(
                host.join("hosts"),
                "c/mounts/0",
                EntryKind::File,
                Access::ReadOnly,
            ),
            entry(
                host.join("dir"),
                "c/mounts/1",
                EntryKind::Dir,
                Access::ReadWrite,
            ),
        ],
        receive_host_mounts: false,
    });
    let err = Virtiofsd::start(&config).unwrap_err();
    assert!(err.to_string().contains("exit status: 3"), "{err}");
    let seen = std::fs::read_to_string(&out).unwrap();
    assert_eq!(seen, "10.0.0.1 box\ninner\ndir-writable\n");
    assert_eq!(std::fs::read(host.join("dir/new")).unwrap(), b"x\n");
    assert_eq!(
        std::fs::read(host.join("hosts")).unwrap(),
        b"10.0.0.1 box\n"
    );
    let left: Vec<_> = std::fs::read_dir(&config.shared_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "the host sees {left:?} in the shared directory"
    );
}

/// Read-only is enforced where the guest cannot undo it, and for every mount below
/// a read-only entry; a pod's member directory takes no new entries from the guest
/// while what is mounted below it stays writable.
#[test]
fn read_only_entries_hold_for_their_submounts_and_fixed_trees_for_their_entries() {
    use layout::{Access, EntryKind, ShareEntry};
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let s = Scratch::new("layout-ro");
    let host = s.dir.join("host");
    for dir in ["ro/sub", "members/m1"] {
        std::fs::create_dir_all(host.join(dir)).unwrap();
    }
    let tmpfs = |at: &str| {
        mount(
            Some("husk-test"),
            &host.join(at),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=64k"),
        )
        .expect("mount a tmpfs (needs root)");
    };
    tmpfs("ro/sub");
    tmpfs("members/m1");
    let out = s.dir.join("out");
    let attempt = |what: &str, path: &str| {
        format!(
            "(echo x > \"$4/{path}\") 2>/dev/null && echo {what}=written >> {out} || echo {what}=refused >> {out}; ",
            out = out.display()
        )
    };
    let script = s.script(&format!(
        "{}{}{}{}exit 3",
        attempt("ro-top", "ro/new"),
        attempt("ro-submount", "ro/sub/new"),
        attempt("fixed-top", "containers/planted"),
        attempt("fixed-member", "containers/m1/new"),
    ));
    let mut config = s.config(script);
    config.layout = Some(ShareLayout {
        entries: vec![
            ShareEntry {
                source: host.join("ro"),
                target: "ro".into(),
                kind: EntryKind::Dir,
                access: Access::ReadOnly,
            },
            ShareEntry {
                source: host.join("members"),
                target: "containers".into(),
                kind: EntryKind::Dir,
                access: Access::FixedTree,
            },
        ],
        receive_host_mounts: false,
    });
    let err = Virtiofsd::start(&config).unwrap_err();
    let seen = std::fs::read_to_string(&out);
    for at in ["ro/sub", "members/m1"] {
        let _ = umount2(&host.join(at), MntFlags::MNT_DETACH);
    }
    assert!(err.to_string().contains("exit status: 3"), "{err}");
    assert_eq!(
        seen.unwrap(),
        "ro-top=refused\nro-submount=refused\nfixed-top=refused\nfixed-member=written\n"
    );
    assert!(!host.join("members/planted").exists());
}

/// What virtiofsd writes on stderr (some of it at the guest's bidding) is kept
/// bounded: the last lines only, each cut and printable, however much comes.
#[test]
fn virtiofsd_stderr_is_kept_bounded_and_printable() {
    let mut flood = Vec::new();
    for i in 0..100_000 {
        flood.extend_from_slice(format!("line {i}\n").as_bytes());
    }
    flood.extend_from_slice(b"\x1b[2Jescape\n");
    flood.extend(std::iter::repeat_n(b'x', 1 << 20));
    flood.extend_from_slice(b"\nlast\n");
    let lines = Mutex::new(VecDeque::new());
    keep_stderr(&flood[..], &lines);
    let lines = lines.into_inner().unwrap();
    assert_eq!(lines.len(), STDERR_LINES);
    assert!(
        lines.iter().all(|l| !l.chars().any(char::is_control)),
        "{lines:?}"
    );
    assert!(
        lines.iter().all(|l| l.len() <= STDERR_LINE_MAX + 40),
        "a line of {} bytes",
        lines.iter().map(String::len).max().unwrap()
    );
    let tail: Vec<&str> = lines
        .iter()
        .rev()
        .take(3)
        .map(|l| &l[..l.len().min(20)])
        .collect();
    assert_eq!(tail, ["last", "xxxxxxxxxxxxxxxxxxxx", "\\u{1b}[2Jescape"]);
}
