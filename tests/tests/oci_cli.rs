//! The `husk` OCI CLI driven as engines drive runc: create, start, state, kill,
//! delete, exec, terminal mode, and bad input. Needs hardware KVM: ignored by a
//! plain `cargo test`, run in the testbed by `tests/run.sh`.
//!
//! The test process is a child subreaper (as conmon is), so a sandbox process, which
//! `husk create` leaves behind, becomes its child and its exit status can be read.

use husk_tests::bundle::{husk_config, spec, Bundle};
use husk_tests::guest_image::workspace_bin;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A scratch world: a state root, a configuration, bundles.
struct World {
    dir: PathBuf,
    root: PathBuf,
    config: PathBuf,
}

impl World {
    fn new(name: &str) -> World {
        nix::sys::prctl::set_child_subreaper(true).unwrap();
        let dir = std::env::temp_dir().join(format!("husk-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = husk_config(&dir.join("config.toml"));
        World {
            root: dir.join("state"),
            dir,
            config,
        }
    }

    fn husk(&self) -> Command {
        let mut cmd = Command::new(workspace_bin("husk"));
        cmd.env("HUSK_CONFIG", &self.config)
            .arg("--root")
            .arg(&self.root);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.husk()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "husk {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `husk create` as conmon runs it: the sandbox process it leaves behind keeps
    /// its stdio, so stdout and stderr go to files (`output()` would wait for the
    /// sandbox's end). Gives back whether it succeeded and its stderr.
    fn create(&self, args: &[&str]) -> (bool, String) {
        let n = self.dir.read_dir().map_or(0, |d| d.count());
        let out = self.dir.join(format!("create-{n}.out"));
        let err = self.dir.join(format!("create-{n}.err"));
        let status = self
            .husk()
            .arg("create")
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        (
            status.success(),
            std::fs::read_to_string(&err).unwrap_or_default(),
        )
    }

    /// `create_ok` of `bundle` as `id` with a pid file; gives back the pid in it.
    fn create_with_pid(&self, bundle: &Bundle, id: &str) -> i32 {
        let pid_file = self.dir.join("pid");
        self.create_ok(&[
            "--bundle",
            bundle.dir.to_str().unwrap(),
            "--pid-file",
            pid_file.to_str().unwrap(),
            id,
        ]);
        std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// `husk create` of `bundle` as `id` with a pid file, the container's stdout and
    /// stderr going to files; gives back the pid and the two files.
    fn create_logged(&self, bundle: &Bundle, id: &str, stdin: Stdio) -> (i32, PathBuf, PathBuf) {
        let out_path = self.dir.join(format!("{id}.stdout"));
        let err_path = self.dir.join(format!("{id}.stderr"));
        let pid_file = self.dir.join(format!("{id}.pid"));
        let status = self
            .husk()
            .args(["create", "--bundle"])
            .arg(&bundle.dir)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(id)
            .stdin(stdin)
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "create: {}",
            std::fs::read_to_string(&err_path).unwrap()
        );
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        (pid, out_path, err_path)
    }

    fn create_ok(&self, args: &[&str]) {
        let (ok, err) = self.create(args);
        assert!(ok, "husk create {args:?}: {err}");
    }

    fn create_fails(&self, args: &[&str]) -> String {
        let (ok, err) = self.create(args);
        assert!(!ok, "husk create {args:?} should fail");
        err
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(1), "husk {args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn bundle(&self, name: &str, args: &[&str], terminal: bool) -> Bundle {
        Bundle::new(&self.dir.join(name), args, terminal)
    }

    fn state(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    /// Nothing of `id` is left: no state directory, no process of it.
    fn assert_clean(&self, id: &str, pids: &[i32]) {
        assert!(!self.root.join(id).exists(), "state directory of {id} left");
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z")),
                "process {pid} of {id} left"
            );
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_exit(pid: i32) -> WaitStatus {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => return other.unwrap(),
        }
    }
}

/// The live virtiofsd processes on the machine. Dead ones are zombies until reaped,
/// and this test process, a subreaper, inherits the orphans of sandbox processes.
fn virtiofsd_count() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .is_ok_and(|s| s.contains("(virtiofsd) ") && !s.contains("(virtiofsd) Z"))
        })
        .count()
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn lifecycle_output_exit_code_and_clean_delete() {
    let world = World::new("life");
    let bundle = world.bundle(
        "b",
        &["sh", "-c", "read x; echo got $x; echo err >&2; exit 7"],
        false,
    );
    let (stdin_read, stdin_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    let (pid, out_path, err_path) = world.create_logged(&bundle, "c1", Stdio::from(stdin_read));
    let state = world.state("c1");
    assert_eq!(state["status"], "created");
    assert_eq!(state["pid"], pid);
    // A second create of the same id is refused, and leaves the first alone.
    let err = world.create_fails(&["--bundle", bundle.dir.to_str().unwrap(), "c1"]);
    assert!(err.contains("already exists"), "{err}");

    world.ok(&["start", "c1"]);
    assert_eq!(world.state("c1")["status"], "running");
    let mut stdin = std::fs::File::from(stdin_write);
    stdin.write_all(b"hello\n").unwrap();
    drop(stdin);
    assert_eq!(wait_exit(pid), WaitStatus::Exited(Pid::from_raw(pid), 7));
    assert_eq!(std::fs::read_to_string(&out_path).unwrap(), "got hello\n");
    assert!(std::fs::read_to_string(&err_path)
        .unwrap()
        .contains("err\n"));
    assert_eq!(world.state("c1")["status"], "stopped");
    world.ok(&["delete", "c1"]);
    world.assert_clean("c1", &[pid]);
    assert_eq!(virtiofsd_count(), 0, "virtiofsd left");
    let err = world.fails(&["state", "c1"]);
    assert!(err.contains("does not exist"), "{err}");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn kill_exec_and_force_delete() {
    let world = World::new("kill");
    let bundle = world.bundle("b", &["sleep", "1000"], false);
    let pid = world.create_with_pid(&bundle, "k1");
    world.ok(&["start", "k1"]);

    // exec: output and exit status come back.
    let out = world.run(&["exec", "k1", "sh", "-c", "echo from exec; exit 5"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from exec\n");
    let ps = world.ok(&["ps", "--format", "json", "k1"]);
    let pids: Vec<u32> = serde_json::from_str(&ps).unwrap();
    assert!(!pids.is_empty(), "{ps}");

    // delete of a running container needs --force.
    let err = world.fails(&["delete", "k1"]);
    assert!(err.contains("running"), "{err}");
    world.ok(&["kill", "k1", "KILL"]);
    assert_eq!(
        wait_exit(pid),
        WaitStatus::Signaled(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL, false)
    );
    assert_eq!(world.state("k1")["status"], "stopped");
    world.ok(&["delete", "k1"]);
    world.assert_clean("k1", &[pid]);

    // --force on a running one; and after kill -9 of the sandbox process itself.
    for (id, brutal) in [("k2", false), ("k3", true)] {
        let pid = world.create_with_pid(&bundle, id);
        world.ok(&["start", id]);
        if brutal {
            nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
            wait_exit(pid);
            assert_eq!(world.state(id)["status"], "stopped");
            world.ok(&["delete", id]);
        } else {
            world.ok(&["delete", "--force", id]);
            wait_exit(pid);
        }
        world.assert_clean(id, &[pid]);
    }
    assert_eq!(virtiofsd_count(), 0, "virtiofsd left");
}

/// Receives the terminal master runc-style from a console socket.
fn receive_master(listener: &UnixListener) -> OwnedFd {
    let (conn, _) = listener.accept().unwrap();
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut buf = [0u8; 256];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the descriptor just arrived and nothing else owns it.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor on the console socket");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn terminal_mode_sends_a_working_master() {
    let world = World::new("tty");
    let bundle = world.bundle(
        "b",
        &["sh", "-c", "tty; stty size; read x; echo typed $x"],
        true,
    );
    let mut config = spec(&["sh", "-c", "tty; stty size; read x; echo typed $x"], true);
    config["process"]["consoleSize"] = serde_json::json!({ "height": 25, "width": 90 });
    bundle.write_config(&config);
    let socket = world.dir.join("console.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    let pid_file = world.dir.join("pid");
    let args: Vec<String> = [
        "--bundle",
        bundle.dir.to_str().unwrap(),
        "--console-socket",
        socket.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        "t1",
    ]
    .map(String::from)
    .to_vec();
    let creator = World {
        dir: world.dir.clone(),
        root: world.root.clone(),
        config: world.config.clone(),
    };
    let create = std::thread::spawn(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let result = creator.create(&args);
        // The world is the test's; this copy must not clean it up.
        std::mem::forget(creator);
        result
    });
    let master = receive_master(&listener);
    let (created, err) = create.join().unwrap();
    assert!(created, "create: {err}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    world.ok(&["start", "t1"]);
    let mut term = std::fs::File::from(master);
    term.write_all(b"abc\n").unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("typed abc") {
        let n = term.read(&mut buf).unwrap_or(0);
        assert!(
            n > 0,
            "terminal ended: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    // The size set from consoleSize. (`tty` itself says "not a tty": the container
    // has no /dev/pts of its own until OCI mounts are applied in the guest.)
    assert!(text.contains("25 90"), "{text}");
    assert_eq!(wait_exit(pid), WaitStatus::Exited(Pid::from_raw(pid), 0));
    world.ok(&["delete", "t1"]);
    world.assert_clean("t1", &[pid]);
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn bad_input_is_named_and_leaves_nothing() {
    let world = World::new("bad");
    let err = world.fails(&["start", "nope"]);
    assert!(err.contains("\"nope\" does not exist"), "{err}");
    let bundle = world.bundle("b", &["true"], false);
    std::fs::write(
        bundle.dir.join("config.json"),
        "{\"ociVersion\": \"1.0.2\",\n  \"process\": [}",
    )
    .unwrap();
    let err = world.create_fails(&["--bundle", bundle.dir.to_str().unwrap(), "m1"]);
    assert!(
        err.contains("config.json") && err.contains("line 2"),
        "{err}"
    );
    world.assert_clean("m1", &[]);
    let bundle = world.bundle("b2", &["true"], false);
    std::fs::remove_dir_all(bundle.dir.join("rootfs")).unwrap();
    let err = world.create_fails(&["--bundle", bundle.dir.to_str().unwrap(), "m2"]);
    assert!(err.contains("rootfs"), "{err}");
    world.assert_clean("m2", &[]);
    // A program that does not exist in the image: create fails naming it, cleanly.
    let bundle = world.bundle("b3", &["/bin/nope"], false);
    let (created, err) = world.create(&["--bundle", bundle.dir.to_str().unwrap(), "m3"]);
    if created {
        let err = world.fails(&["start", "m3"]);
        assert!(err.contains("/bin/nope"), "{err}");
        world.ok(&["delete", "--force", "m3"]);
    } else {
        assert!(err.contains("/bin/nope"), "{err}");
    }
    world.assert_clean("m3", &[]);
    assert_eq!(virtiofsd_count(), 0, "virtiofsd left");
}

/// An initramfs whose init says one line on the console and then sleeps: the guest
/// boots, but no agent ever answers.
fn silent_initramfs(dir: &Path) -> PathBuf {
    let tree = dir.join("silent-init");
    std::fs::create_dir_all(tree.join("dev")).unwrap();
    std::fs::copy("/bin/busybox", tree.join("busybox")).unwrap();
    let init = tree.join("init");
    std::fs::write(
        &init,
        "#!/busybox sh\n/busybox mount -t devtmpfs dev /dev\n\
         echo 'husk-test: this init starts no agent' > /dev/console\n\
         exec /busybox sleep 100000\n",
    )
    .unwrap();
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cpio = dir.join("silent.cpio");
    let status = Command::new("sh")
        .arg("-c")
        .arg("find . | cpio -o -H newc --quiet > \"$0\"")
        .arg(&cpio)
        .current_dir(&tree)
        .status()
        .unwrap();
    assert!(status.success(), "cpio: {status}");
    cpio
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_guest_that_never_answers_fails_create_saying_where_it_was() {
    let world = World::new("silent");
    let initramfs = silent_initramfs(&world.dir);
    let config = std::fs::read_to_string(&world.config).unwrap();
    let config: String = config
        .lines()
        .map(|line| {
            if line.starts_with("initramfs =") {
                format!("initramfs = {:?}", initramfs.display().to_string())
            } else if line.starts_with("boot_timeout_secs =") {
                "boot_timeout_secs = 10".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&world.config, config).unwrap();
    let bundle = world.bundle("b", &["true"], false);
    let err = world.create_fails(&["--bundle", bundle.dir.to_str().unwrap(), "s1"]);
    assert!(
        err.contains("the guest did not boot within 10s (vCPU 0: rip=0x"),
        "{err}"
    );
    let console = err
        .split_once("guest console, last lines: ")
        .map(|(_, c)| c);
    assert!(
        console.is_some_and(|c| c.contains("husk-test: this init starts no agent")),
        "{err}"
    );
    world.assert_clean("s1", &[]);
    assert_eq!(virtiofsd_count(), 0, "virtiofsd left");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_failing_create_hook_fails_create_and_leaves_nothing() {
    let world = World::new("hook");
    let bundle = world.bundle("b", &["true"], false);
    let record = world.dir.join("records");
    std::fs::create_dir_all(&record).unwrap();
    let hook = |name: &str, status: i32| {
        serde_json::json!({
            "path": "/bin/sh",
            "args": ["sh", "-c", format!("cat > {}/{name}; exit {status}", record.display())],
            "timeout": 30
        })
    };
    let mut spec = spec(&["true"], false);
    spec["hooks"] = serde_json::json!({
        "createRuntime": [hook("createRuntime", 3)],
        "poststop": [hook("poststop", 0)]
    });
    bundle.write_config(&spec);
    let err = world.create_fails(&["--bundle", bundle.dir.to_str().unwrap(), "h1"]);
    assert!(
        err.contains("createRuntime hook 0") && err.contains("exit status: 3"),
        "{err}"
    );
    // The hook ran with the sandbox up: its state names the sandbox process.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("createRuntime")).unwrap())
            .unwrap();
    assert_eq!(state["id"], "h1");
    assert_eq!(state["status"], "creating");
    let pid = state["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0, "{state}");
    // The spec goes on at delete after a failed create: poststop ran.
    let post: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(record.join("poststop")).unwrap()).unwrap();
    assert_eq!(post["status"], "stopped");
    world.assert_clean("h1", &[pid]);
    assert_eq!(virtiofsd_count(), 0, "virtiofsd left");
}

/// The counter a container writes to its `/tmp/count` (on the virtio-fs root, so
/// the host reads the file the guest writes); `None` while the file is being
/// rewritten (empty) or not there yet.
fn counter(bundle: &Bundle) -> Option<u64> {
    std::fs::read_to_string(bundle.dir.join("rootfs/tmp/count"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
}

/// Polls `counter` until it exceeds `above`, for at most `limit`.
fn counter_passes(bundle: &Bundle, above: u64, limit: std::time::Duration) -> Option<u64> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(n) = counter(bundle).filter(|&n| n > above) {
            return Some(n);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    None
}

/// `husk events --stats ID` parsed.
fn stats(world: &World, id: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&world.ok(&["events", "--stats", id])).unwrap();
    assert_eq!(
        (v["type"].as_str(), v["id"].as_str()),
        (Some("stats"), Some(id)),
        "{v}"
    );
    v["data"].clone()
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn cgroup_pause_resume_update_and_stats() {
    let world = World::new("pause");
    // A counter ticking every 100 ms.
    let bundle = world.bundle(
        "b",
        &[
            "sh",
            "-c",
            "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done",
        ],
        false,
    );
    let pid = world.create_with_pid(&bundle, "p1");
    let err = world.fails(&["pause", "p1"]);
    assert!(err.contains("not started"), "{err}");
    world.ok(&["start", "p1"]);
    let patience = std::time::Duration::from_secs(60);
    let running = counter_passes(&bundle, 2, patience).expect("the counter never ran");

    world.ok(&["pause", "p1"]);
    assert_eq!(world.state("p1")["status"], "paused");
    assert!(world.ok(&["list"]).contains("paused"));
    // Frozen means every task of the cgroup stopped in the kernel's freezer, so the
    // last write has landed: the value read now must not move. Over 2 s a running
    // counter ticks about 20 times (several even when the emulated guest runs 5x
    // slow), so a still value says the freeze holds, not that we looked too soon.
    let frozen = counter(&bundle).expect("the counter file is readable");
    assert!(frozen >= running);
    let still = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < still {
        assert_eq!(
            counter(&bundle),
            Some(frozen),
            "the counter moved while paused"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let err = world.fails(&["exec", "p1", "true"]);
    assert!(err.contains("paused"), "{err}");
    let err = world.fails(&["pause", "p1"]);
    assert!(err.contains("paused already"), "{err}");
    // Stats read while paused, in runc's shape.
    let data = stats(&world, "p1");
    assert!(
        data["memory"]["usage"]["usage"].as_u64().unwrap() > 0,
        "{data}"
    );
    assert!(data["pids"]["current"].as_u64().unwrap() >= 1, "{data}");
    assert!(
        data["cpu"]["usage"]["total"].as_u64().unwrap() > 0,
        "{data}"
    );

    world.ok(&["resume", "p1"]);
    assert_eq!(world.state("p1")["status"], "running");
    counter_passes(&bundle, frozen, patience).expect("the counter did not resume");
    let err = world.fails(&["resume", "p1"]);
    assert!(err.contains("not paused"), "{err}");

    // update: the new limits are what the guest's cgroup says.
    world.ok(&[
        "update",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cpu-share",
        "512",
        "p1",
    ]);
    let data = stats(&world, "p1");
    assert_eq!(data["memory"]["usage"]["limit"], 64 << 20, "{data}");
    assert_eq!(data["pids"]["limit"], 50, "{data}");
    let err = world.fails(&["update", "--blkio-weight", "10", "p1"]);
    assert!(
        err.contains("not supported yet") && err.contains("--blkio-weight"),
        "{err}"
    );
    let resources = world.dir.join("r.json");
    std::fs::write(
        &resources,
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}"#,
    )
    .unwrap();
    let err = world.fails(&["update", "-r", resources.to_str().unwrap(), "p1"]);
    assert!(err.contains("hugepageLimits"), "{err}");

    // SIGKILL reaches a paused container.
    world.ok(&["pause", "p1"]);
    world.ok(&["kill", "p1", "KILL"]);
    assert_eq!(
        wait_exit(pid),
        WaitStatus::Signaled(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL, false)
    );
    assert_eq!(world.state("p1")["status"], "stopped");
    let err = world.fails(&["pause", "p1"]);
    assert!(err.contains("not running"), "{err}");
    world.ok(&["delete", "p1"]);
    world.assert_clean("p1", &[pid]);
    assert_eq!(virtiofsd_count(), 0, "virtiofsd left");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn cgroup_an_oom_kill_is_an_event_and_ends_the_container() {
    let world = World::new("oom");
    // A shell string doubling until the 32 MiB limit stops it.
    let hog = ["sh", "-c", "x=0123456789abcdef; while :; do x=$x$x; done"];
    let bundle = world.bundle("b", &hog, false);
    let mut config = spec(&hog, false);
    config["linux"]["resources"] = serde_json::json!({"memory": {"limit": 32 << 20}});
    bundle.write_config(&config);
    let pid = world.create_with_pid(&bundle, "o1");
    assert_eq!(stats(&world, "o1")["memory"]["usage"]["limit"], 32 << 20);
    // The stream runs until the container stops.
    let events = world
        .husk()
        .args(["events", "--interval", "1s", "o1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    world.ok(&["start", "o1"]);
    assert_eq!(
        wait_exit(pid),
        WaitStatus::Signaled(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL, false)
    );
    let out = events.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "events: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l == &serde_json::json!({"type": "oom", "id": "o1"})),
        "{stdout}"
    );
    assert!(lines.iter().any(|l| l["type"] == "stats"), "{stdout}");
    world.ok(&["delete", "o1"]);
    world.assert_clean("o1", &[pid]);
}

/// The spec's mounts reach the guest: a tmpfs, read-only host binds of a file and of
/// a directory (read, not written), devpts and the devices of a tmpfs `/dev`, a bind
/// onto `/dev/shm` (a guest tmpfs), a masked path. A missing bind source is named and
/// leaves nothing; no mount of the share is seen on the host.
#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn mounts_binds_devices_and_masked_paths() {
    let world = World::new("mounts");
    let host = world.dir.join("host");
    std::fs::create_dir_all(host.join("data")).unwrap();
    std::fs::write(host.join("data/inner"), "inner\n").unwrap();
    std::fs::write(host.join("hosts"), "10.88.0.7 box\n").unwrap();
    let script = "cat /etc/hosts /data/inner; \
                  (echo x > /etc/hosts) 2>/dev/null || echo hosts-ro; \
                  (echo x > /data/new) 2>/dev/null || echo data-ro; \
                  echo t > /scratch/f && cat /scratch/f; \
                  echo gone > /dev/null && test -c /dev/null && echo devnull; \
                  test -c /dev/pts/ptmx && echo devpts; \
                  echo s > /dev/shm/s && cat /dev/shm/s; \
                  cat /etc/secret; echo end";
    let bundle = world.bundle("b", &["sh", "-c", script], false);
    std::fs::write(bundle.dir.join("rootfs/etc/secret"), "secret\n").unwrap();
    let mut config = spec(&["sh", "-c", script], false);
    config["mounts"] = serde_json::json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "bind", "source": host.join("data"),
         "options": ["rbind", "nosuid", "noexec", "nodev"]},
        {"destination": "/scratch", "type": "tmpfs", "options": ["nodev"]},
        {"destination": "/etc/hosts", "type": "bind", "source": host.join("hosts"),
         "options": ["rbind", "ro"]},
        {"destination": "/data", "type": "bind", "source": host.join("data"),
         "options": ["rbind", "ro"]},
    ]);
    config["linux"]["maskedPaths"] = serde_json::json!(["/etc/secret", "/proc/kcore"]);
    bundle.write_config(&config);
    let out = world.run(&["run", "--bundle", bundle.dir.to_str().unwrap(), "m1"]);
    assert!(
        out.status.success(),
        "run: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "10.88.0.7 box\ninner\nhosts-ro\ndata-ro\nt\ndevnull\ndevpts\ns\nend\n"
    );
    // The shm bind was a guest tmpfs: nothing reached the host directory.
    assert!(!host.join("data/s").exists() && !host.join("data/new").exists());
    assert_eq!(
        std::fs::read_to_string(host.join("hosts")).unwrap(),
        "10.88.0.7 box\n"
    );
    // `run` deleted the container when it exited.
    world.assert_clean("m1", &[]);

    // A bind of a host path that does not exist: named, and nothing is left.
    config["mounts"][5]["source"] = serde_json::json!(host.join("absent"));
    bundle.write_config(&config);
    let err = world.create_fails(&["--bundle", bundle.dir.to_str().unwrap(), "m2"]);
    assert!(
        err.contains("mount 5") && err.contains("/etc/hosts") && err.contains("absent"),
        "{err}"
    );
    world.assert_clean("m2", &[]);
    assert_eq!(virtiofsd_count(), 0, "virtiofsd left");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(world.dir.to_str().unwrap()),
        "a mount of the share is visible on the host: {mountinfo}"
    );
}

/// What the container's script prints about itself (see
/// `process_and_security_fields_are_applied`), for the first process and an exec.
const SELF_REPORT: &str = "while read l; do case \"$l\" in \
     CapBnd*|CapPrm*|CapEff*|NoNewPrivs*) echo \"$l\";; esac; done < /proc/self/status; \
     echo nofile=$(ulimit -n); echo oom=$(cat /proc/self/oom_score_adj); \
     echo mkdir=$(busybox mkdir /tmp/denied 2>&1); \
     echo hi > /tmp/allowed && echo write=$(cat /tmp/allowed)";

/// Polls `path` until it contains `marker`, for at most `limit`.
fn wait_for_text(path: &Path, marker: &str, limit: std::time::Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(marker) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn process_and_security_fields_are_applied() {
    let world = World::new("procsec");
    let script = format!(
        "{SELF_REPORT}; echo domain=$(cat /proc/sys/kernel/domainname); \
         echo shmmax=$(cat /proc/sys/kernel/shmmax); echo done; exec sleep 1000"
    );
    let bundle = world.bundle("b", &["sh", "-c", &script], false);
    let mut config = spec(&["sh", "-c", &script], false);
    config["domainname"] = "husk.example".into();
    config["process"]["capabilities"] = serde_json::json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_CHOWN", "CAP_KILL"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": [],
        "ambient": []
    });
    config["process"]["noNewPrivileges"] = true.into();
    config["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_NOFILE", "soft": 1234, "hard": 2048}]);
    config["process"]["oomScoreAdj"] = 123.into();
    config["linux"]["namespaces"] =
        serde_json::json!([{"type": "mount"}, {"type": "uts"}, {"type": "ipc"}]);
    config["linux"]["sysctl"] = serde_json::json!({"kernel.shmmax": "12345678"});
    config["linux"]["seccomp"] = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    bundle.write_config(&config);
    let (pid, out_path, _) = world.create_logged(&bundle, "s1", Stdio::null());
    world.ok(&["start", "s1"]);
    let out = wait_for_text(&out_path, "done\n", std::time::Duration::from_secs(60));
    // Root's execve would raise the permitted and effective sets to the bounding set;
    // noNewPrivileges keeps them to what the process had.
    let denied = "mkdir=mkdir: can't create directory '/tmp/denied': Operation not permitted";
    for expected in [
        "CapPrm:\t0000000000000021",
        "CapEff:\t0000000000000021",
        "CapBnd:\t0000000000000421",
        "NoNewPrivs:\t1",
        "nofile=1234",
        "oom=123",
        denied,
        "write=hi",
        "domain=husk.example",
        "shmmax=12345678",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
    // An exec'd process gets the container's filter, and the capabilities and
    // noNewPrivileges `husk exec` takes from config.json.
    let exec = world.ok(&["exec", "s1", "sh", "-c", SELF_REPORT]);
    for expected in [
        "CapEff:\t0000000000000021",
        "NoNewPrivs:\t1",
        denied,
        "write=hi",
    ] {
        assert!(exec.contains(expected), "{expected:?} not in:\n{exec}");
    }
    world.ok(&["kill", "s1", "KILL"]);
    wait_exit(pid);
    world.ok(&["delete", "s1"]);
    world.assert_clean("s1", &[pid]);

    // A bad field is named at create, and leaves nothing behind.
    config["process"]["rlimits"] =
        serde_json::json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    bundle.write_config(&config);
    let err = world.create_fails(&["--bundle", bundle.dir.to_str().unwrap(), "s2"]);
    assert!(err.contains("RLIMIT_BOGUS"), "{err}");
    world.assert_clean("s2", &[]);
    assert_eq!(virtiofsd_count(), 0, "virtiofsd left");
}
