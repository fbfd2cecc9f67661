//! containerd running tasks in husk microVMs through `containerd-shim-husk-v2`, end
//! to end: Debian's containerd with its own root and state
//! ([`husk_tests::containerd_daemon`]), `ctr image import` of a busybox image built
//! here (`podman import`, then `podman save` as an OCI archive), and `ctr run
//! --runtime io.containerd.husk.v2`. Needs hardware KVM: ignored by a plain `cargo
//! test`, run in the testbed by `tests/run.sh`.

use husk_tests::containerd_daemon::{
    shim_pid, text, Containerd, ScrubOnFailure, IMAGE, NAMESPACE, RUNTIME, SETTLE,
};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Instant;

/// The containerd the tests share (one daemon, one image import), and the image's
/// OCI archive.
fn shared() -> &'static (Containerd, PathBuf) {
    static WORLD: OnceLock<(Containerd, PathBuf)> = OnceLock::new();
    WORLD.get_or_init(|| {
        let c = Containerd::start(PathBuf::from(format!(
            "/run/husk-containerd-{}",
            std::process::id()
        )));
        let archive = c.build_image_archive();
        c.import_image(&archive);
        (c, archive)
    })
}

/// The shared containerd, scrubbed of what a test leaves if that test fails.
fn containerd() -> ScrubOnFailure<'static, Containerd> {
    ScrubOnFailure(&shared().0)
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn ctr_run_rm_prints_hi() {
    let c = containerd();
    let out = c.run_task("hi", &["echo", "hi"]);
    c.assert_success(&out);
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
    assert!(cmdline.contains("husk.share=sandbox"), "{cmdline}");
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
    c.assert_success(&out);
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
    c.run_detached("d1", &["sleep", "1000"]);
    let pids = c.ok(&["task", "ps", "d1"]);
    assert!(pids.lines().count() >= 2, "ctr task ps: {pids}");
    c.kill_and_remove("d1");
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn exec_runs_in_a_running_task() {
    let c = containerd();
    c.run_detached("x1", &["sleep", "1000"]);
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
    c.kill_and_remove("x1");
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
    c.run_detached("m1", &["sleep", "1000"]);
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
    c.run_detached("k1", &["sleep", "1000"]);
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

/// The terminal's size in the terminal tests.
const ROWS: u16 = 33;
const COLS: u16 = 111;
/// A task command for the terminal tests: waits (bounded) for the size ctr sets
/// with ResizePty (ctr resizes once the task runs), prints it and whether stdout is
/// a terminal, and exits with `code`.
fn terminal_probe(code: u8) -> String {
    format!(
        "i=0; while [ \"$(stty size)\" != \"{ROWS} {COLS}\" ] && [ $i -lt 200 ]; do \
         sleep 0.05; i=$((i+1)); done; stty size; test -t 1 && echo on-a-tty; exit {code}"
    )
}

/// Runs `cmd` (a `ctr` command) with a pseudo-terminal of ROWS x COLS as its
/// stdin, stdout and stderr; gives its exit code and what it wrote.
fn on_a_terminal(mut cmd: std::process::Command) -> (Option<i32>, String) {
    use std::io::Read;
    let size = nix::pty::Winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().unwrap();
    // The command's copies of the slave go: the master reads end of file (EIO)
    // once ctr is gone.
    drop(cmd);
    let master = pty.master;
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = std::fs::File::from(master).read_to_end(&mut out);
        out
    });
    let status = child.wait().unwrap();
    (status.code(), text(&reader.join().unwrap()))
}

/// Runs `ctr <args> sh -c <probe>` on a terminal: the process must see a terminal
/// of ROWS x COLS and exit with `code`.
fn assert_probe_runs_on_a_terminal(c: &Containerd, args: &[&str], code: u8) {
    let mut cmd = c.ctr();
    cmd.args(args).args(["sh", "-c", &terminal_probe(code)]);
    let (got, out) = on_a_terminal(cmd);
    assert_eq!(got, Some(i32::from(code)), "{out}\n{}", c.log_tail());
    assert!(out.contains(&format!("{ROWS} {COLS}")), "{out}");
    assert!(out.contains("on-a-tty"), "{out}");
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn ctr_run_t_gives_the_task_a_terminal() {
    let c = containerd();
    let run = ["run", "-t", "--rm", "--runtime", RUNTIME, IMAGE, "tty1"];
    assert_probe_runs_on_a_terminal(&c, &run, 5);
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn ctr_task_exec_t_gives_the_exec_a_terminal() {
    let c = containerd();
    c.run_detached("tty2", &["sleep", "1000"]);
    let exec = ["task", "exec", "-t", "--exec-id", "t1", "tty2"];
    assert_probe_runs_on_a_terminal(&c, &exec, 4);
    assert_eq!(c.task_status("tty2").as_deref(), Some("RUNNING"));
    c.kill_and_remove("tty2");
    c.assert_nothing_left();
}

/// A task's command that writes to stdout and stderr and exits with 3.
const BOTH_STREAMS: [&str; 3] = ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"];

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_file_log_uri_gets_stdout_and_stderr() {
    let c = containerd();
    let log = c.dir.join("logs").join("f1.log");
    let uri = format!("file://{}", log.display());
    let out = c.run_task_with(&["--log-uri", &uri], "f1", &BOTH_STREAMS);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        text(&out.stderr),
        c.log_tail()
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("to-out\n"), "{logged}");
    assert!(logged.contains("to-err\n"), "{logged}");
    c.assert_nothing_left();
}

/// A logging binary as containerd's contract has it: stdout on 3, stderr on 4,
/// ready once 5 is closed; it saves them and its environment under `$2`.
const LOGGER: &str = r#"#!/bin/sh
/bin/cat <&3 >"$2/stdout" 5>&- &
/bin/cat <&4 >"$2/stderr" 5>&- &
echo "$CONTAINER_ID $CONTAINER_NAMESPACE $1" >"$2/env"
exec 5>&-
wait
"#;

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_binary_log_uri_feeds_the_logging_binary() {
    use std::os::unix::fs::PermissionsExt;
    let c = containerd();
    let dir = c.dir.join("logger-b1");
    std::fs::create_dir_all(&dir).unwrap();
    let logger = dir.join("husk-test-logger");
    std::fs::write(&logger, LOGGER).unwrap();
    std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uri = format!("binary://{}?into={}", logger.display(), dir.display());
    let out = c.run_task_with(&["--log-uri", &uri], "b1", &BOTH_STREAMS);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}\n{}",
        text(&out.stderr),
        c.log_tail()
    );
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    c.eventually("the logger saved the output", || {
        read("stdout") == "to-out\n" && read("stderr") == "to-err\n"
    });
    assert_eq!(read("env"), format!("b1 {NAMESPACE} into\n"));
    // Stopped with the task.
    c.eventually("the logging binary gone", || {
        std::fs::read_dir("/proc").unwrap().flatten().all(|e| {
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            !text(&cmdline).contains("husk-test-logger")
        })
    });
    c.assert_nothing_left();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn restarting_containerd_loses_no_running_task() {
    // A containerd of its own: the restart must not disturb the shared one.
    let (_, archive) = shared();
    let own = Containerd::start(PathBuf::from(format!(
        "/run/husk-containerd-restart-{}",
        std::process::id()
    )));
    let c = ScrubOnFailure(&own);
    c.import_image(archive);
    c.run_detached("r1", &["sleep", "1000"]);
    let shim = shim_pid("r1").expect("the shim of r1");
    c.restart();
    assert_eq!(
        shim_pid("r1"),
        Some(shim),
        "the shim did not outlive containerd\n{}",
        c.log_tail()
    );
    // containerd reconnected to the shim (its address file) and asks it again.
    assert_eq!(c.task_status("r1").as_deref(), Some("RUNNING"));
    let out = c.ok(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        "r1",
        "echo",
        "still-here",
    ]);
    assert_eq!(out, "still-here\n");
    c.kill_and_remove("r1");
    c.assert_nothing_left();
    c.stop();
    let _ = std::fs::remove_dir_all(&c.dir);
}
