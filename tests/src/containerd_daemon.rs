//! A scratch containerd for the containerd suite: Debian's containerd with its root,
//! state, socket and husk's shim state under one directory in `/run` (a tmpfs in
//! the testbed: the overlayfs snapshotter cannot stack on the test host's overlaid
//! `/tmp`), the CRI plugin off, `containerd-shim-husk-v2` on its `PATH`, and `ctr`
//! to drive it; plus the checks the suite makes after each test (nothing of husk's
//! left behind).

use crate::bundle::husk_config;
use crate::guest_image::workspace_bin;
use crate::scrub::Scrub;
pub use crate::scrub::ScrubOnFailure;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The image the suite imports.
pub const IMAGE: &str = "localhost/husk-busybox:latest";
/// husk's runtime name.
pub const RUNTIME: &str = "io.containerd.husk.v2";
/// The containerd namespace the suite works in.
pub const NAMESPACE: &str = "husk-e2e";
/// The containerd namespace of the CRI plugin (Kubernetes' pods).
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The image a CRI pod's sandbox (pause) container runs: busybox waiting for SIGTERM.
pub const PAUSE_IMAGE: &str = "localhost/husk-pause:latest";
/// The CRI runtime handler that selects husk.
pub const CRI_HANDLER: &str = "husk";
/// The bridge and subnet of the CRI suite's pod network (CNI).
const CRI_BRIDGE: &str = "husk-cri0";
const CRI_SUBNET: &str = "10.89.0.0/24";
/// The shim's binary name.
pub const SHIM: &str = "containerd-shim-husk-v2";
/// The longest one `ctr` command may take (a VM boots under nested emulation).
const CTR_TIMEOUT_SECS: u32 = 300;
/// The bound on each of [`Containerd`]'s scrub `ctr` calls: a daemon that does not
/// answer must not hold the suite past its testbed timeout.
const SCRUB_CTR_TIMEOUT_SECS: u32 = 20;
/// How long containerd may take to answer, and cleanups to finish.
pub const SETTLE: Duration = Duration::from_secs(60);

/// Bytes as text, lossily.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// One containerd daemon and its directory.
#[derive(Debug)]
pub struct Containerd {
    /// Everything of this daemon's lives here.
    pub dir: PathBuf,
    daemon: Mutex<Option<Child>>,
    /// The namespace `ctr` works in and the shim's store is kept for.
    namespace: &'static str,
}

impl Containerd {
    /// Starts a containerd whose world is `dir` (emptied first) and waits until it
    /// answers.
    pub fn start(dir: PathBuf) -> Containerd {
        Containerd::start_with(dir, false)
    }

    /// Starts a containerd with its CRI plugin on, as the kubelet's node has it: pods
    /// on a CNI bridge, runc the default runtime and husk the handler
    /// [`CRI_HANDLER`]; `ctr` works in the CRI's namespace.
    pub fn start_cri(dir: PathBuf) -> Containerd {
        Containerd::start_with(dir, true)
    }

    fn start_with(dir: PathBuf, cri: bool) -> Containerd {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::os::unix::fs::symlink(workspace_bin(SHIM), dir.join("bin").join(SHIM)).unwrap();
        let config = if cri {
            std::fs::create_dir_all(dir.join("cni")).unwrap();
            std::fs::write(dir.join("cni").join("10-husk-cri.conflist"), cni_config()).unwrap();
            cri_config(&dir)
        } else {
            config(&dir)
        };
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let c = Containerd {
            dir,
            daemon: Mutex::new(None),
            namespace: if cri { CRI_NAMESPACE } else { NAMESPACE },
        };
        c.spawn_daemon();
        c
    }

    fn spawn_daemon(&self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("containerd.log"))
            .unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(self.dir.join("config.toml"))
            .env("PATH", search_path(&self.dir))
            .env("HUSK_CONFIG", husk_config(&self.dir.join("husk.toml")))
            .env("HUSK_SHIM_ROOT", self.dir.join("husk-shim"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let daemon = spawn_tied_to_this_process(cmd)
            .expect("containerd (Debian's containerd; tests/setup.sh installs it)");
        *self.daemon.lock().unwrap() = Some(daemon);
        self.wait_ready();
    }

    /// Stops the daemon with SIGTERM, as a service manager does, and waits for it
    /// to exit.
    pub fn stop(&self) {
        let Some(mut daemon) = self.daemon.lock().unwrap().take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + SETTLE;
        while daemon.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "containerd did not exit within {SETTLE:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the daemon and starts it again on the same root, state and address.
    pub fn restart(&self) {
        self.stop();
        self.spawn_daemon();
    }

    /// `ctr` for this daemon, in the suite's namespace, stdin /dev/null.
    pub fn ctr(&self) -> Command {
        self.ctr_within(CTR_TIMEOUT_SECS)
    }

    /// [`Containerd::ctr`], killed after `secs` seconds.
    fn ctr_within(&self, secs: u32) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.arg(secs.to_string())
            .arg("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .arg("--namespace")
            .arg(self.namespace)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ctr args`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.ctr().args(args).output().unwrap()
    }

    /// Runs `ctr args`, which must succeed; gives its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
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

    /// `ctr run --rm` of `cmd` in task `id`, with `options` before the image.
    pub fn run_task_with(&self, options: &[&str], id: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["run", "--rm", "--runtime", RUNTIME];
        args.extend_from_slice(options);
        args.extend_from_slice(&[IMAGE, id]);
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// `ctr run --rm` of `cmd` in task `id`.
    pub fn run_task(&self, id: &str, cmd: &[&str]) -> Output {
        self.run_task_with(&[], id, cmd)
    }

    /// Starts task `id` running `cmd` detached (`ctr run -d`); it must be running.
    pub fn run_detached(&self, id: &str, cmd: &[&str]) {
        let mut args = vec!["run", "-d", "--runtime", RUNTIME, IMAGE, id];
        args.extend_from_slice(cmd);
        self.ok(&args);
        assert_eq!(self.task_status(id).as_deref(), Some("RUNNING"));
    }

    /// Kills task `id` with SIGKILL, waits until it stopped, and removes the task
    /// and its container.
    pub fn kill_and_remove(&self, id: &str) {
        self.ok(&["task", "kill", "--signal", "SIGKILL", id]);
        self.eventually(&format!("{id} stopped"), || {
            self.task_status(id).as_deref() == Some("STOPPED")
        });
        self.ok(&["task", "rm", id]);
        self.ok(&["container", "rm", id]);
    }

    /// Asserts that `out` (of a ctr command) succeeded; says why not, with the log.
    pub fn assert_success(&self, out: &Output) {
        assert!(
            out.status.success(),
            "{}: {}\n{}",
            out.status,
            text(&out.stderr),
            self.log_tail()
        );
    }

    /// The end of containerd's log (with the shim's lines), for failure messages.
    pub fn log_tail(&self) -> String {
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

    /// Builds the busybox image with podman (its own vfs storage under `dir`) and
    /// saves it as an OCI archive; gives the archive's path.
    pub fn build_image_archive(&self) -> PathBuf {
        self.build_busybox_archive(IMAGE, &[])
    }

    /// Builds an image `name` of busybox with Dockerfile-style `changes` (`CMD …`)
    /// and saves it as an OCI archive; gives the archive's path.
    pub fn build_busybox_archive(&self, name: &str, changes: &[&str]) -> PathBuf {
        let tar = self.dir.join("image.tar");
        if !tar.exists() {
            crate::busybox_image::rootfs_tar(&self.dir);
        }
        let file = name.replace(['/', ':'], "_");
        let archive = self.dir.join(format!("{file}.oci.tar"));
        let mut import = vec!["import"];
        for change in changes {
            import.extend_from_slice(&["--change", change]);
        }
        import.extend_from_slice(&[tar.to_str().unwrap(), name]);
        self.podman(&import);
        self.podman(&[
            "save",
            "--format",
            "oci-archive",
            "-o",
            archive.to_str().unwrap(),
            name,
        ]);
        archive
    }

    /// Imports the image from `archive` (`ctr image import`).
    pub fn import_image(&self, archive: &Path) {
        self.import_image_as(archive, IMAGE);
    }

    /// Imports image `name` from `archive`.
    pub fn import_image_as(&self, archive: &Path, name: &str) {
        let base = name.rsplit_once(':').map_or(name, |(base, _)| base);
        self.ok(&[
            "image",
            "import",
            "--base-name",
            base,
            archive.to_str().unwrap(),
        ]);
        let images = self.ok(&["image", "ls", "-q"]);
        assert!(
            images.lines().any(|l| l == name),
            "{name} not imported: {images}"
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
    pub fn task_status(&self, id: &str) -> Option<String> {
        let out = self.ok(&["task", "ls"]);
        out.lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cols| cols.first() == Some(&id))
            .and_then(|cols| cols.last().map(|s| s.to_string()))
    }

    /// Waits until `check` holds, or fails with `what`.
    pub fn eventually(&self, what: &str, mut check: impl FnMut() -> bool) {
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

    /// What husk left: sandbox processes, exec relays, virtiofsd, shims, mounts of
    /// containerd's bundles, entries of the shim's store. Empty when all is clean.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = husk_processes()
            .into_iter()
            .map(|(_, what)| format!("process: {what}"))
            .collect();
        left.extend(self.bundle_mounts().map(|m| format!("mount: {m}")));
        left.extend(
            self.store_entries()
                .map(|e| format!("state: {}", e.display())),
        );
        left
    }

    /// The mount points under containerd's state directory (its bundles' rootfs) and
    /// under the shim's store (a pod's member directory).
    fn bundle_mounts(&self) -> impl Iterator<Item = String> {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let state = self.dir.join("state").display().to_string();
        let store = self.dir.join("husk-shim").display().to_string();
        mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
            .filter(|point| point.starts_with(&state) || point.starts_with(&store))
            .collect::<Vec<_>>()
            .into_iter()
    }

    /// The task directories in the shim's store.
    fn store_entries(&self) -> impl Iterator<Item = PathBuf> {
        let store = self.dir.join("husk-shim").join(self.namespace);
        std::fs::read_dir(store)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
    }

    /// Waits (bounded) until nothing of husk's is left.
    pub fn assert_nothing_left(&self) {
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
}

impl Scrub for Containerd {
    /// After a failed test: prints the logs of the sandboxes it left (the guest's
    /// console and the sandbox process's log), then removes everything it left, so
    /// that the tests after it start clean and fail only for their own reasons.
    ///
    /// What it prints goes straight to this process's stderr, past the test
    /// harness's capture: a suite that then runs into its testbed timeout still
    /// shows it. Each `ctr` call here is bounded by [`SCRUB_CTR_TIMEOUT_SECS`].
    fn scrub(&self) {
        let mut report = String::new();
        for dir in self.store_entries() {
            for log in ["sandbox.log", "console.log"] {
                let text = std::fs::read_to_string(dir.join(log)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(40);
                report += &format!(
                    "--- {} (end) ---\n{}\n",
                    dir.join(log).display(),
                    lines[from..].join("\n")
                );
            }
        }
        report += &self.log_tail();
        uncaptured(&format!("scrub: after a failed test\n{report}\n"));
        let ctr = |args: &[&str]| self.ctr_within(SCRUB_CTR_TIMEOUT_SECS).args(args).output();
        let ids = |what: &str| -> Vec<String> {
            ctr(&[what, "ls", "-q"])
                .map(|out| text(&out.stdout).lines().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        for id in ids("task") {
            let _ = ctr(&["task", "kill", "--signal", "SIGKILL", &id]);
            let _ = ctr(&["task", "rm", "--force", &id]);
        }
        for id in ids("container") {
            let _ = ctr(&["container", "rm", &id]);
        }
        for (pid, what) in husk_processes() {
            uncaptured(&format!("scrub: SIGKILL {pid} ({what})\n"));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for point in self.bundle_mounts() {
            let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        for dir in self.store_entries() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The resident memory (VmRSS, KiB) of each of husk's processes now, by kind:
/// `shim`, `sandbox` (the VMM, guest memory it touched included), `relay`,
/// `virtiofsd`.
pub fn husk_process_memory() -> Vec<(&'static str, u64)> {
    husk_processes()
        .into_iter()
        .filter_map(|(pid, cmdline)| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            let kind = if cmdline.contains("__sandbox") {
                "sandbox"
            } else if cmdline.contains("__exec") {
                "relay"
            } else if cmdline.contains(SHIM) {
                "shim"
            } else {
                "virtiofsd"
            };
            Some((kind, rss))
        })
        .collect()
}

/// Processes of husk's: sandbox processes, exec relays, shims, virtiofsd; with
/// their command lines.
fn husk_processes() -> Vec<(i32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = text(&cmdline).replace('\0', " ");
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if ["__sandbox", "__exec", SHIM]
            .iter()
            .any(|w| cmdline.contains(w))
            || comm.trim() == "virtiofsd"
        {
            found.push((pid, cmdline));
        }
    }
    found
}

/// The pid of the serving shim of task `id`.
pub fn shim_pid(id: &str) -> Option<i32> {
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

/// containerd's configuration: everything under `dir`, the CRI plugin off (the
/// suite drives containerd with `ctr`), husk registered as a runtime for CRI users
/// as docs/containerd.md shows.
/// The CRI suite's configuration: [`config`]'s paths, the CRI plugin on.
fn cri_config(dir: &Path) -> String {
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"

[grpc]
  address = "{sock}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{CRI_HANDLER}]
      runtime_type = "{RUNTIME}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        sock = dir.join("containerd.sock").display(),
        cni = dir.join("cni").display(),
    )
}

/// The pod network: a bridge with host-local addresses, as a kubeadm node's
/// simplest CNI set-up.
fn cni_config() -> String {
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "husk-cri",
        "plugins": [{
            "type": "bridge",
            "bridge": CRI_BRIDGE,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": CRI_SUBNET}]],
                "routes": [{"dst": "0.0.0.0/0"}]
            }
        }, {"type": "portmap", "capabilities": {"portMappings": true}}]
    })
    .to_string()
}

fn config(dir: &Path) -> String {
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

/// Writes `text` to this process's stderr directly, not through the test harness's
/// capture of `eprintln!`.
fn uncaptured(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
