//! The built `husk` binary, driven as an engine would, with a temporary `--root`.
//! Nothing here boots a VM: these are the paths that end before the sandbox.

use husk_runtime::config::SandboxConfig;
use husk_runtime::state::{process_start_time, ContainerState, ProcessState, Status, Store};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(env.path("config.toml"), "virtiofsd = \"/bin/true\"\n").unwrap();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn husk(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_husk"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env("HUSK_CONFIG", self.path("config.toml"))
            .output()
            .unwrap()
    }

    /// A bundle with `config` as its config.json and, if asked, a rootfs.
    fn bundle(&self, name: &str, config: &str, rootfs: bool) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), config).unwrap();
        if rootfs {
            std::fs::create_dir_all(dir.join("rootfs")).unwrap();
        }
        dir
    }

    /// The store holds nothing at all (no container, no temporary directory).
    fn assert_store_empty(&self) {
        let left: Vec<_> = match std::fs::read_dir(self.root()) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name()).collect(),
            Err(_) => Vec::new(),
        };
        assert!(left.is_empty(), "left under --root: {left:?}");
    }

    /// Puts a container in the store directly, as a sandbox would have left it.
    fn put(&self, id: &str, status: Status, pid: Option<i32>, start: Option<u64>) {
        let store = Store::open(self.root()).unwrap();
        let state = ContainerState {
            id: id.into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            status,
            pid,
            pid_start_time: start,
            created: "2024-01-01T00:00:00Z".into(),
            owner: "root".into(),
            annotations: Default::default(),
            config: SandboxConfig {
                kernel: "/k".into(),
                initramfs: "/i".into(),
                vcpus: 1,
                memory_mib: 256,
                virtiofsd: "/v".into(),
                boot_timeout: Duration::from_secs(30),
                request_timeout: Duration::from_secs(30),
                virtiofsd_timeout: Duration::from_secs(10),
                log_level: None,
            },
            systemd_cgroup: false,
            hooks: None,
            pod: None,
            guest_pid: None,
        };
        drop(store.create(&state).unwrap());
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_fails(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(out));
    assert!(
        stderr(out).contains(needle),
        "expected {needle:?} in: {}",
        stderr(out)
    );
}

const GOOD: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
    "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;

#[test]
fn spec_then_spec_again_is_refused() {
    let env = Env::new();
    let bundle = env.path("b");
    std::fs::create_dir(&bundle).unwrap();
    let out = env.husk(&["spec", "--bundle", bundle.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], serde_json::json!(["sh"]));
    assert_eq!(spec["process"]["terminal"], true);
    assert_eq!(spec["root"]["readonly"], true);
    let out = env.husk(&["spec", "-b", bundle.to_str().unwrap()]);
    assert_fails(&out, "exists");
}

#[test]
fn state_of_unknown_container() {
    let env = Env::new();
    assert_fails(
        &env.husk(&["state", "nope"]),
        "container \"nope\" does not exist",
    );
    assert_fails(&env.husk(&["kill", "nope", "9"]), "does not exist");
    assert_fails(&env.husk(&["start", "nope"]), "does not exist");
    assert_fails(&env.husk(&["delete", "nope"]), "does not exist");
    assert!(env.husk(&["delete", "--force", "nope"]).status.success());
    assert_fails(&env.husk(&["state", "../etc"]), "invalid container id");
}

#[test]
fn malformed_config_names_file_and_position_and_leaves_nothing() {
    let env = Env::new();
    let bundle = env.bundle(
        "b",
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"root\": [\n}",
        true,
    );
    let out = env.husk(&["create", "--bundle", bundle.to_str().unwrap(), "c1"]);
    assert_fails(&out, "config.json");
    assert!(stderr(&out).contains("line 4 column"), "{}", stderr(&out));
    env.assert_store_empty();
}

#[test]
fn missing_rootfs_is_clear_and_leaves_nothing() {
    let env = Env::new();
    let bundle = env.bundle("b", GOOD, false);
    let out = env.husk(&["create", "-b", bundle.to_str().unwrap(), "c1"]);
    assert_fails(&out, "root.path");
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    env.assert_store_empty();
}

#[test]
fn failed_sandbox_create_leaves_nothing() {
    // The sandbox fails (its virtiofsd, /bin/true, exits at once): create reports
    // the error and removes the container it had recorded.
    let env = Env::new();
    let bundle = env.bundle("b", GOOD, true);
    let out = env.husk(&[
        "create",
        "-b",
        bundle.to_str().unwrap(),
        "--pid-file",
        "/dev/null",
        "c1",
    ]);
    assert_fails(&out, "virtiofsd exited during start-up");
    env.assert_store_empty();
}

#[test]
fn bad_annotation_is_named() {
    let env = Env::new();
    let config = GOOD.replace(
        "\"ociVersion\"",
        "\"annotations\":{\"io.husk.vcpus\":\"lots\"},\"ociVersion\"",
    );
    let bundle = env.bundle("b", &config, true);
    let out = env.husk(&["create", "-b", bundle.to_str().unwrap(), "c1"]);
    assert_fails(&out, "io.husk.vcpus");
    env.assert_store_empty();
}

#[test]
fn a_pod_container_without_its_sandbox_is_refused_and_leaves_nothing() {
    let env = Env::new();
    let config = GOOD.replace(
        "\"ociVersion\"",
        "\"annotations\":{\"io.kubernetes.cri.container-type\":\"container\",\
         \"io.kubernetes.cri.sandbox-id\":\"pod1\"},\"ociVersion\"",
    );
    let bundle = env.bundle("b", &config, true);
    let out = env.husk(&["create", "-b", bundle.to_str().unwrap(), "c1"]);
    assert_fails(&out, "its pod sandbox \"pod1\" does not exist");
    env.assert_store_empty();
}

#[test]
fn double_create_is_already_exists() {
    let env = Env::new();
    env.put("c1", Status::Stopped, None, None);
    let bundle = env.bundle("b", GOOD, true);
    let out = env.husk(&["create", "-b", bundle.to_str().unwrap(), "c1"]);
    assert_fails(&out, "container \"c1\" already exists");
}

#[test]
fn list_empty_and_json() {
    let env = Env::new();
    let out = env.husk(&["list"]);
    assert!(out.status.success());
    assert_eq!(
        stdout(&out)
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    );
    let out = env.husk(&["list", "--format", "json"]);
    assert_eq!(stdout(&out).trim(), "[]");
    assert!(env.husk(&["list", "-q"]).stdout.is_empty());

    env.put("b", Status::Running, Some(i32::MAX), None);
    env.put("a", Status::Stopped, None, None);
    let out = env.husk(&["list", "-f", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["id"], "a");
    assert_eq!(list[1]["id"], "b");
    assert_eq!(list[1]["status"], "stopped");
    assert_eq!(stdout(&env.husk(&["list", "-q"])), "a\nb\n");
}

#[test]
fn dead_sandbox_reads_as_stopped_and_deletes() {
    let env = Env::new();
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id() as i32;
    child.wait().unwrap();
    env.put("c1", Status::Running, Some(dead), Some(1));
    let out = env.husk(&["state", "c1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["status"], "stopped");
    assert_eq!(state["pid"], 0);
    assert_eq!(state["ociVersion"], "1.2.0");
    assert_eq!(state["owner"], "root");
    assert_fails(&env.husk(&["kill", "c1"]), "not running");
    assert!(env.husk(&["kill", "--all", "c1", "KILL"]).status.success());
    assert_fails(&env.husk(&["start", "c1"]), "stopped");
    assert!(env.husk(&["delete", "c1"]).status.success());
    env.assert_store_empty();
}

#[test]
fn running_container_needs_force_to_delete() {
    let env = Env::new();
    // A child stands in for a live sandbox process: `delete --force` kills it.
    let mut stand_in = Command::new("sleep").arg("1000").spawn().unwrap();
    let me = stand_in.id() as i32;
    let ProcessState::Alive { start_time } = process_start_time(me) else {
        panic!()
    };
    env.put("c1", Status::Running, Some(me), Some(start_time));
    let state: serde_json::Value =
        serde_json::from_slice(&env.husk(&["state", "c1"]).stdout).unwrap();
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"], me);
    assert_fails(
        &env.husk(&["delete", "c1"]),
        "cannot delete container c1 that is not stopped: running",
    );
    assert_fails(&env.husk(&["kill", "c1", "SIGNOPE"]), "invalid signal");
    assert!(env.husk(&["delete", "--force", "c1"]).status.success());
    env.assert_store_empty();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(stand_in.wait().unwrap().signal(), Some(9));
}

#[test]
fn features_is_valid_json() {
    let env = Env::new();
    let out = env.husk(&["features"]);
    assert!(out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["annotations"]["io.husk.vcpus"].is_string());
}

#[test]
fn json_log_gets_the_error_line() {
    let env = Env::new();
    let log = env.path("husk.log");
    let out = env.husk(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        "nope",
    ]);
    assert_fails(&out, "does not exist");
    let text = std::fs::read_to_string(&log).unwrap();
    let line: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "error");
    assert_eq!(line["msg"], "container \"nope\" does not exist");
    assert!(line["time"].as_str().unwrap().contains('T'));
    // Text format, appended.
    env.husk(&["--log", log.to_str().unwrap(), "delete", "nope"]);
    let text = std::fs::read_to_string(&log).unwrap();
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("time=\"")
            && last.contains("level=error msg=\"container \\\"nope\\\" does not exist\""),
        "{last}"
    );
}

#[test]
fn cgroup_commands_check_their_container_and_flags_first() {
    let env = Env::new();
    for cmd in [
        &["pause", "c"][..],
        &["resume", "c"][..],
        &["events", "--stats", "c"][..],
        &["update", "--memory", "1g", "c"][..],
    ] {
        assert_fails(&env.husk(cmd), "container \"c\" does not exist");
    }
    env.put("c1", Status::Stopped, None, None);
    assert_fails(&env.husk(&["pause", "c1"]), "container not running");
    assert_fails(&env.husk(&["resume", "c1"]), "container not paused");
    assert_fails(&env.husk(&["events", "c1"]), "is not running");
    assert_fails(
        &env.husk(&["update", "--pids-limit", "5", "c1"]),
        "container not running",
    );
    assert_fails(
        &env.husk(&["update", "--l3-cache-schema", "L3:0=f", "c1"]),
        "not supported yet: husk update --l3-cache-schema",
    );
    assert_fails(
        &env.husk(&["update", "--memory", "lots", "c1"]),
        "--memory: invalid size \"lots\"",
    );
    assert_fails(
        &env.husk(&["events", "--interval", "5", "c1"]),
        "--interval: invalid duration \"5\"",
    );
}

#[test]
fn usage_errors_exit_1_and_rootless_true_is_refused() {
    let env = Env::new();
    assert_eq!(env.husk(&["frobnicate"]).status.code(), Some(1));
    assert_eq!(env.husk(&["kill"]).status.code(), Some(1));
    assert!(env.husk(&["--help"]).status.success());
    assert_fails(
        &env.husk(&["--rootless", "true", "list"]),
        "husk runs as root",
    );
    assert!(env
        .husk(&[
            "--rootless",
            "false",
            "--systemd-cgroup",
            "--criu",
            "/x",
            "list"
        ])
        .status
        .success());
}

#[test]
fn check_quiet_prints_nothing() {
    let env = Env::new();
    std::fs::write(
        env.path("config.toml"),
        "kernel = \"/nonexistent/vmlinux\"\n",
    )
    .unwrap();
    let out = env.husk(&["check", "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let out = env.husk(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("FAIL  guest kernel present: /nonexistent/vmlinux"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_agent_that_does_not_answer_is_reported_with_the_guests_last_words() {
    let env = Env::new();
    let mut stand_in = Command::new("sleep").arg("1000").spawn().unwrap();
    let me = stand_in.id() as i32;
    let ProcessState::Alive { start_time } = process_start_time(me) else {
        panic!()
    };
    env.put("c1", Status::Created, Some(me), Some(start_time));
    // The VMM's socket takes the connection and closes it after `CONNECT`, as it
    // does when the guest answers with an RST.
    let dir = env.root().join("c1");
    let listener = std::os::unix::net::UnixListener::bind(dir.join("vsock.sock")).unwrap();
    let vmm = std::thread::spawn(move || {
        use std::io::Read;
        let (mut conn, _) = listener.accept().unwrap();
        let mut line = [0u8; 13];
        conn.read_exact(&mut line).unwrap();
        line
    });
    std::fs::write(
        dir.join("console.log"),
        "[    1.0] booted\n[    9.9] Kernel panic - not syncing: \x1b[1mtest\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sandbox.log"),
        "WARN vsock: the guest did not answer a host connection in time; closed\n",
    )
    .unwrap();
    let out = env.husk(&["start", "c1"]);
    assert_eq!(&vmm.join().unwrap(), b"CONNECT 1024\n");
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("nothing listens on guest port 1024"), "{err}");
    assert!(
        err.contains("guest console, last lines: [    1.0] booted | [    9.9] Kernel panic - not syncing: ?[1mtest"),
        "{err}"
    );
    assert!(
        err.contains("sandbox log, last lines: WARN vsock: the guest did not answer"),
        "{err}"
    );
    stand_in.kill().unwrap();
    stand_in.wait().unwrap();
}

/// Every verb that asks the agent says which verb failed on which container, then
/// why, once (the error chain), and exits 1; the shim sends the same error with the
/// code of its kind.
#[test]
fn every_verb_names_itself_when_the_agent_cannot_be_reached() {
    let env = Env::new();
    let mut stand_in = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = stand_in.id() as i32;
    let ProcessState::Alive { start_time } = process_start_time(pid) else {
        panic!()
    };
    for (args, status, action) in [
        (&["start", "c1"][..], Status::Created, "start"),
        (&["kill", "c1", "TERM"][..], Status::Running, "kill"),
        (&["pause", "c1"][..], Status::Running, "pause"),
        (&["resume", "c1"][..], Status::Paused, "resume"),
        (
            &["update", "--pids-limit", "5", "c1"][..],
            Status::Running,
            "update",
        ),
        (&["ps", "c1"][..], Status::Running, "list the processes of"),
        (
            &["events", "--stats", "c1"][..],
            Status::Running,
            "read the statistics of",
        ),
    ] {
        env.put("c1", status, Some(pid), Some(start_time));
        let out = env.husk(args);
        let socket = env.root().join("c1/vsock.sock");
        assert_fails(
            &out,
            &format!(
                "cannot {action} container \"c1\": agent socket {} does not exist",
                socket.display()
            ),
        );
        Store::open(env.root()).unwrap().remove("c1").unwrap();
    }
    stand_in.kill().unwrap();
    stand_in.wait().unwrap();
}
