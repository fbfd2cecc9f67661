//! containerd running tasks in husk microVMs through `containerd-shim-husk-v2`, end
//! to end: Debian's containerd with its own root and state, `ctr image import` of a
//! busybox image built here (`podman import`, then `podman save` as an OCI archive),
//! and `ctr run --runtime io.containerd.husk.v2`. Needs hardware KVM: ignored by a
//! plain `cargo test`, run in the testbed by `tests/run.sh`.
//!
//! Everything lives under one directory in `/run` (a tmpfs in the testbed: the
//! overlayfs snapshotter cannot stack on the test host's overlaid `/tmp`); the shim
//! binary reaches containerd through a `PATH` entry of its own, and the shim keeps
//! husk's state there too (`HUSK_SHIM_ROOT`).

use husk_tests::bundle::husk_config;
use husk_tests::guest_image::workspace_bin;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/husk-busybox:latest";
const RUNTIME: &str = "io.containerd.husk.v2";
const NAMESPACE: &str = "husk-e2e";
const SHIM: &str = "containerd-shim-husk-v2";
/// The longest one `ctr` command may take (a VM boots under nested emulation).
const CTR_TIMEOUT_SECS: u32 = 300;
/// How long containerd may take to answer, and cleanups to finish.
const SETTLE: Duration = Duration::from_secs(60);

/// containerd's scratch world, shared by the tests (one daemon, one image import).
struct Containerd {
    dir: PathBuf,
    _daemon: Child,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn containerd() -> &'static Containerd {
    static WORLD: OnceLock<Containerd> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = PathBuf::from(format!("/run/husk-containerd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::os::unix::fs::symlink(workspace_bin(SHIM), dir.join("bin").join(SHIM)).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(&config, containerd_config(&dir)).unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&config)
            .env("PATH", search_path(&dir))
            .env("HUSK_CONFIG", husk_config(&dir.join("husk.toml")))
            .env("HUSK_SHIM_ROOT", dir.join("husk-shim"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let daemon = spawn_tied_to_this_process(cmd)
            .expect("containerd (Debian's containerd; tests/setup.sh installs it)");
        let world = Containerd {
            dir,
            _daemon: daemon,
        };
        world.wait_ready();
        world.import_image();
        world
    })
}

/// Spawns `cmd` so that it gets SIGTERM when this test process ends: from a thread
/// that lives as long as the process (the parent-death signal follows the thread
/// that spawned the child, and each test runs on a thread of its own).
fn spawn_tied_to_this_process(mut cmd: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only makes one
    // system call (prctl), which is async-signal-safe; it touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(cmd.spawn());
        loop {
            std::thread::park();
        }
    });
    rx.recv().expect("the spawning thread answers")
}

/// `PATH` with the directory holding the shim first.
fn search_path(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// containerd's configuration: everything under `dir`, the CRI plugin off (these
/// tests drive containerd with `ctr`), husk registered as a runtime for CRI users
/// as docs/containerd.md shows.
fn containerd_config(dir: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.husk]
  runtime_type = "{RUNTIME}"
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        sock = dir.join("containerd.sock").display(),
    )
}

impl Containerd {
    fn ctr(&self) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.arg(CTR_TIMEOUT_SECS.to_string())
            .arg("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .arg("--namespace")
            .arg(NAMESPACE)
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.ctr().args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}: {}\n{}",
            out.status,
            text(&out.stderr),
            self.log_tail()
        );
        text(&out.stdout)
    }

    /// The end of containerd's log (with the shim's lines), for failure messages.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!("containerd.log (end):\n{}", lines[from..].join("\n"))
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + SETTLE;
        loop {
            if self.run(&["version"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer within {SETTLE:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Builds the busybox image with podman (its own vfs storage under `dir`), saves
    /// it as an OCI archive and imports that into containerd.
    fn import_image(&self) {
        let rootfs = self.dir.join("image");
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        for d in ["proc", "dev", "sys", "tmp", "etc", "root"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for applet in text(&list.stdout).lines().filter(|a| *a != "busybox") {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        let tar = self.dir.join("rootfs.tar");
        let status = Command::new("tar")
            .arg("-C")
            .arg(&rootfs)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(status.success());
        let archive = self.dir.join("image.oci.tar");
        self.podman(&["import", tar.to_str().unwrap(), IMAGE]);
        self.podman(&[
            "save",
            "--format",
            "oci-archive",
            "-o",
            archive.to_str().unwrap(),
            IMAGE,
        ]);
        self.ok(&[
            "image",
            "import",
            "--base-name",
            "localhost/husk-busybox",
            archive.to_str().unwrap(),
        ]);
        let images = self.ok(&["image", "ls", "-q"]);
        assert!(
            images.lines().any(|l| l == IMAGE),
            "{IMAGE} not imported: {images}"
        );
    }

    fn podman(&self, args: &[&str]) {
        let out = Command::new("podman")
            .arg("--storage-driver=vfs")
            .arg(format!("--root={}", self.dir.join("podman").display()))
            .arg(format!(
                "--runroot={}",
                self.dir.join("podman-run").display()
            ))
            .arg("--cgroup-manager=cgroupfs")
            .arg("--events-backend=file")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            text(&out.stderr)
        );
    }

    /// The status column of `ctr task ls` for `id` (None: no such task).
    fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ok(&["task", "ls"]);
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&id))
            .and_then(|cols| cols.last().map(|s| s.to_string()))
    }

    /// Waits until `check` holds, or fails with `what`.
    fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + SETTLE;
        while !check() {
            assert!(
                Instant::now() < deadline,
                "{what} within {SETTLE:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What husk left: sandbox processes, exec relays, virtiofsd, shims, mounts of containerd's
    /// bundles, state directories of the shim's store. Empty when all is clean.
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = text(&cmdline).replace('\0', " ");
            if ["__sandbox", "__exec", SHIM]
                .iter()
                .any(|w| cmdline.contains(w))
            {
                left.push(format!("process: {cmdline}"));
            }
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() == "virtiofsd" {
                left.push("process: virtiofsd".into());
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let state = self.dir.join("state").display().to_string();
        for line in mounts.lines().filter(|l| l.contains(&state)) {
            left.push(format!("mount: {line}"));
        }
        let store = self.dir.join("husk-shim").join(NAMESPACE);
        for entry in std::fs::read_dir(&store).into_iter().flatten().flatten() {
            left.push(format!("state: {}", entry.path().display()));
        }
        left
    }

    fn assert_nothing_left(&self) {
        let mut last = Vec::new();
        let deadline = Instant::now() + SETTLE;
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind after {SETTLE:?}: {last:#?}\n{}",
                self.log_tail()
            );
            last = left;
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn run_task(&self, id: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--rm", "--runtime", RUNTIME, IMAGE, id];
        args.extend_from_slice(cmd);
        self.run(&args)
    }
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn ctr_run_rm_prints_hi() {
    let c = containerd();
    let out = c.run_task("hi", &["echo", "hi"]);
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        out.status,
        text(&out.stderr),
        c.log_tail()
    );
    assert_eq!(text(&out.stdout), "hi\n");
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn the_task_runs_in_a_husk_microvm() {
    let c = containerd();
    // The kernel command line husk's sandbox gives its guest.
    let out = c.run_task("vm", &["cat", "/proc/cmdline"]);
    let cmdline = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(cmdline.contains("husk.share=rootfs"), "{cmdline}");
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn task_events_reach_containerd() {
    let c = containerd();
    let mut events = c
        .ctr()
        .arg("events")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = events.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let out = c.run_task("ev1", &["true"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut missing = vec![
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
    ];
    let deadline = Instant::now() + SETTLE;
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        if line.contains("ev1") {
            missing.retain(|topic| !line.contains(topic));
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    assert!(missing.is_empty(), "events not seen: {missing:?}");
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn stdin_reaches_the_task_and_its_end_too() {
    let c = containerd();
    let mut child = c
        .ctr()
        .args(["run", "--rm", "--runtime", RUNTIME, IMAGE, "in1", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello through the fifo\n").unwrap();
        // ctr (its stdin is always the task's) passes end of file on with CloseIO,
        // but only once its task exists: an end of file read earlier is lost. The
        // task runs, so it exists.
        c.eventually("in1 running", || {
            // A ctr that gave up has its reason on stderr, asserted below.
            let ended = matches!(child.try_wait(), Ok(Some(_)));
            ended || c.task_status("in1").as_deref() == Some("RUNNING")
        });
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}\n{}",
        out.status,
        text(&out.stderr),
        c.log_tail()
    );
    assert_eq!(text(&out.stdout), "hello through the fifo\n");
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn exit_codes_propagate() {
    let c = containerd();
    let out = c.run_task("seven", &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}\n{}",
        text(&out.stderr),
        c.log_tail()
    );
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err"), "{}", text(&out.stderr));
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_detached_task_is_listed_killed_and_removed() {
    let c = containerd();
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        "d1",
        "sleep",
        "1000",
    ]);
    assert_eq!(c.task_status("d1").as_deref(), Some("RUNNING"));
    let pids = c.ok(&["task", "ps", "d1"]);
    assert!(pids.lines().count() >= 2, "ctr task ps: {pids}");
    c.ok(&["task", "kill", "--signal", "SIGKILL", "d1"]);
    c.eventually("d1 stopped", || {
        c.task_status("d1").as_deref() == Some("STOPPED")
    });
    c.ok(&["task", "rm", "d1"]);
    c.ok(&["container", "rm", "d1"]);
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn exec_runs_in_a_running_task() {
    let c = containerd();
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        "x1",
        "sleep",
        "1000",
    ]);
    let out = c.ok(&["task", "exec", "--exec-id", "e1", "x1", "echo", "inside"]);
    assert_eq!(out, "inside\n");
    let out = c.run(&[
        "task",
        "exec",
        "--exec-id",
        "e2",
        "x1",
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(c.task_status("x1").as_deref(), Some("RUNNING"));
    c.ok(&["task", "kill", "--signal", "SIGKILL", "x1"]);
    c.eventually("x1 stopped", || {
        c.task_status("x1").as_deref() == Some("STOPPED")
    });
    c.ok(&["task", "rm", "x1"]);
    c.ok(&["container", "rm", "x1"]);
    c.assert_nothing_left();
}

/// The value of `metric` in `ctr task metrics`' table (`METRIC VALUE` rows).
fn metric(table: &str, metric: &str) -> Option<u64> {
    table.lines().find_map(|l| {
        let mut cols = l.split_whitespace();
        (cols.next() == Some(metric)).then(|| cols.next()?.parse().ok())?
    })
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn pause_resume_and_metrics() {
    let c = containerd();
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        "m1",
        "sleep",
        "1000",
    ]);
    c.ok(&["task", "pause", "m1"]);
    assert_eq!(c.task_status("m1").as_deref(), Some("PAUSED"));
    let out = c.run(&["task", "exec", "--exec-id", "e1", "m1", "true"]);
    assert!(!out.status.success(), "exec in a paused task succeeded");
    c.ok(&["task", "resume", "m1"]);
    assert_eq!(c.task_status("m1").as_deref(), Some("RUNNING"));
    // The cgroup v2 metrics of the task's cgroup in the guest.
    let table = c.ok(&["task", "metrics", "m1"]);
    assert!(
        metric(&table, "memory.usage").is_some_and(|n| n > 0),
        "{table}"
    );
    assert!(
        metric(&table, "pids.current").is_some_and(|n| n >= 1),
        "{table}"
    );
    // (Debian's ctr 1.6 has no `task update`: Update is not driven from here.)
    // SIGKILL reaches a paused task.
    c.ok(&["task", "pause", "m1"]);
    c.ok(&["task", "kill", "--signal", "SIGKILL", "m1"]);
    c.eventually("m1 stopped", || {
        c.task_status("m1").as_deref() == Some("STOPPED")
    });
    c.ok(&["task", "rm", "m1"]);
    c.ok(&["container", "rm", "m1"]);
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn killing_the_shim_leaves_nothing_behind() {
    let c = containerd();
    c.ok(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        IMAGE,
        "k1",
        "sleep",
        "1000",
    ]);
    let shim = shim_pid("k1").expect("the shim of k1");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    // containerd sees its shim go, runs `containerd-shim-husk-v2 delete`, and
    // marks the task stopped.
    c.eventually("k1's shim cleaned up after", || {
        c.task_status("k1").as_deref() != Some("RUNNING")
    });
    let _ = c.run(&["task", "rm", "-f", "k1"]);
    c.ok(&["container", "rm", "k1"]);
    c.assert_nothing_left();
}

/// The pid of the serving shim of task `id`.
fn shim_pid(id: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = text(&cmdline).split('\0').map(str::to_string).collect();
        let is_shim = args.first()?.ends_with(SHIM);
        let serves_id = args.windows(2).any(|w| w[0] == "-id" && w[1] == id);
        let serving = !args.iter().any(|a| a == "start" || a == "delete");
        (is_shim && serves_id && serving).then_some(pid)
    })
}
