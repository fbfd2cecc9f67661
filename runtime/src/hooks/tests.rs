//! Hooks as small shell scripts on this host.

use super::*;
use crate::config::SandboxConfig;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn state(hooks: Hooks) -> ContainerState {
    ContainerState {
        id: "hooked".into(),
        bundle: "/bundle".into(),
        rootfs: "/bundle/rootfs".into(),
        status: Status::Created,
        pid: Some(4242),
        pid_start_time: None,
        created: "2024-01-01T00:00:00Z".into(),
        owner: "root".into(),
        annotations: BTreeMap::from([("k".to_string(), "v".to_string())]),
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
        hooks: Some(hooks),
        pod: None,
        guest_pid: None,
    }
}

/// An executable shell script `name` in `dir` with `body`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn hook(path: &Path, args: &[&str], env: Option<&[&str]>, timeout: Option<i64>) -> Hook {
    let mut h = Hook::default();
    h.set_path(path.to_owned());
    if !args.is_empty() {
        h.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
    }
    h.set_env(env.map(|e| e.iter().map(|s| s.to_string()).collect()));
    h.set_timeout(timeout);
    h
}

fn hooks_with(phase: Phase, list: Vec<Hook>) -> Hooks {
    let mut hooks = Hooks::default();
    match phase {
        Phase::CreateRuntime => hooks.set_create_runtime(Some(list)),
        Phase::StartContainer => hooks.set_start_container(Some(list)),
        Phase::Poststop => hooks.set_poststop(Some(list)),
        other => panic!("not used here: {other}"),
    };
    hooks
}

#[test]
fn a_hook_gets_the_state_on_stdin_its_args_and_its_env() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = script(
        dir.path(),
        "h",
        &format!(
            "{{ cat; echo \"argv0=$0 args=$*\"; echo \"env=$FOO home=${{HOME-unset}}\"; }} > {}",
            out.display()
        ),
    );
    let h = hook(
        &path,
        &[path.to_str().unwrap(), "one", "two"],
        Some(&["FOO=bar"]),
        Some(5),
    );
    let st = state(hooks_with(Phase::CreateRuntime, vec![h]));
    run(&st, Phase::CreateRuntime, Status::Creating).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines = text.lines();
    let json: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(json["ociVersion"], crate::state::OCI_VERSION);
    assert_eq!(json["id"], "hooked");
    assert_eq!(json["status"], "creating");
    assert_eq!(json["pid"], 4242);
    assert_eq!(json["bundle"], "/bundle");
    assert_eq!(json["annotations"]["k"], "v");
    assert_eq!(
        lines.next(),
        Some(format!("argv0={} args=one two", path.display()).as_str())
    );
    // The spec's env replaces the runtime's environment entirely.
    assert_eq!(lines.next(), Some("env=bar home=unset"));
}

#[test]
fn without_env_a_hook_inherits_the_runtimes_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = script(
        dir.path(),
        "h",
        &format!("echo \"${{PATH:+set}}\" > {}", out.display()),
    );
    let st = state(hooks_with(
        Phase::CreateRuntime,
        vec![hook(&path, &[], None, None)],
    ));
    run(&st, Phase::CreateRuntime, Status::Creating).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "set\n");
}

#[test]
fn a_failing_hook_stops_its_phase_with_its_status_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("second-ran");
    let bad = script(dir.path(), "bad", "echo 'no network for you' >&2; exit 3");
    let second = script(dir.path(), "second", &format!("touch {}", marker.display()));
    let st = state(hooks_with(
        Phase::StartContainer,
        vec![hook(&bad, &[], None, None), hook(&second, &[], None, None)],
    ));
    let err = run(&st, Phase::StartContainer, Status::Created).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, HookError::Failed { index: 0, .. }), "{msg}");
    assert!(msg.starts_with("startContainer hook 0"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("no network for you"), "{msg}");
    assert!(!marker.exists(), "the hook after a failed one ran");
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child");
    // A child in the hook's process group that would outlive a kill of the hook alone.
    let path = script(
        dir.path(),
        "slow",
        &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
    );
    let st = state(hooks_with(
        Phase::CreateRuntime,
        vec![hook(&path, &[], None, Some(1))],
    ));
    let began = Instant::now();
    let err = run(&st, Phase::CreateRuntime, Status::Creating).unwrap_err();
    let took = began.elapsed();
    assert!(matches!(err, HookError::TimedOut { secs: 1, .. }), "{err}");
    assert!(took >= Duration::from_secs(1), "killed early: {took:?}");
    assert!(took < Duration::from_secs(10), "killed late: {took:?}");
    let child: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The sleep was killed with the group; it is reaped by init (or us) shortly.
    let deadline = Instant::now() + Duration::from_secs(5);
    while crate::state::process_start_time(child) != crate::state::ProcessState::Gone
        && crate::state::process_start_time(child) != crate::state::ProcessState::Zombie
    {
        assert!(
            Instant::now() < deadline,
            "the hook's child {child} survived"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn post_phase_failures_are_logged_and_the_other_hooks_still_run() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("second-ran");
    let bad = script(dir.path(), "bad", "exit 1");
    let second = script(dir.path(), "second", &format!("touch {}", marker.display()));
    let st = state(hooks_with(
        Phase::Poststop,
        vec![hook(&bad, &[], None, None), hook(&second, &[], None, None)],
    ));
    run_logged(&st, Phase::Poststop, Status::Stopped);
    assert!(marker.exists());
}

#[test]
fn a_hook_that_does_not_read_its_stdin_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = script(dir.path(), "quiet", "exec 0<&-; exit 0");
    let mut st = state(hooks_with(
        Phase::CreateRuntime,
        vec![hook(&path, &[], None, Some(5))],
    ));
    // More than a pipe holds.
    for i in 0..20_000 {
        st.annotations.insert(format!("key-{i}"), "x".repeat(8));
    }
    run(&st, Phase::CreateRuntime, Status::Creating).unwrap();
}

#[test]
fn a_missing_program_is_named() {
    let st = state(hooks_with(
        Phase::CreateRuntime,
        vec![hook(Path::new("/nonexistent/hook"), &[], None, None)],
    ));
    let err = run(&st, Phase::CreateRuntime, Status::Creating).unwrap_err();
    let msg = husk_protocol::error_chain(&err);
    assert!(msg.contains("/nonexistent/hook"), "{msg}");
    assert!(msg.contains("cannot start it: No such file"), "{msg}");
    assert!(
        !err.to_string().contains("No such file"),
        "said twice: {msg}"
    );
}

#[test]
fn validate_refuses_relative_paths_and_non_positive_timeouts() {
    let rel = hooks_with(
        Phase::Poststop,
        vec![hook(Path::new("bin/hook"), &[], None, None)],
    );
    let msg = validate(&rel).unwrap_err().to_string();
    assert_eq!(msg, "poststop hook 0: path \"bin/hook\" is not absolute");
    let zero = hooks_with(
        Phase::CreateRuntime,
        vec![hook(Path::new("/bin/true"), &[], None, Some(0))],
    );
    let msg = validate(&zero).unwrap_err().to_string();
    assert!(msg.contains("timeout 0 must be more than 0"), "{msg}");
    let fine = hooks_with(
        Phase::CreateRuntime,
        vec![hook(Path::new("/bin/true"), &[], None, Some(3))],
    );
    validate(&fine).unwrap();
}

#[test]
fn a_container_without_hooks_runs_none() {
    let mut st = state(Hooks::default());
    st.hooks = None;
    run(&st, Phase::CreateRuntime, Status::Creating).unwrap();
    run_logged(&st, Phase::Poststop, Status::Stopped);
}
