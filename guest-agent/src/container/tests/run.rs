//! Processes that run: output, exit codes, signals, stdin, terminals, exec.

use super::*;
use std::io::Write;
use std::net::Shutdown;

#[test]
fn output_streams_and_exit_code_reach_every_waiter() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    let script = "echo out; echo err >&2; exit 7";
    let pid = client
        .create("c1", spec(&["sh", "-c", script]), rootfs.path())
        .unwrap();
    assert!(pid > 1);
    // Waiters before the start, on connections of their own.
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let mut waiter = Client::new(&ctx);
            std::thread::spawn(move || waiter.wait("c1", None))
        })
        .collect();
    let stdout = stream(&ctx, "c1", None, StdioStream::Stdout).unwrap();
    let stderr = stream(&ctx, "c1", None, StdioStream::Stderr).unwrap();
    assert_eq!(client.start("c1").unwrap(), pid);
    assert_eq!(read_all(stdout), "out\n");
    assert_eq!(read_all(stderr), "err\n");
    for waiter in waiters {
        assert_eq!(waiter.join().unwrap().unwrap(), exited(7));
    }
    // After the exit: answered at once, and signals are refused.
    assert_eq!(client.wait("c1", None).unwrap(), exited(7));
    assert!(gone(pid));
    let err = client.signal("c1", None, 15).unwrap_err();
    assert_eq!(err.code, ErrorCode::FailedPrecondition, "{err:?}");
    let err = client.start("c1").unwrap_err();
    assert_eq!(err.code, ErrorCode::FailedPrecondition, "{err:?}");
}

#[test]
fn output_written_before_the_stream_attaches_waits_in_the_pipe() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    client
        .create("early", spec(&["echo", "kept"]), rootfs.path())
        .unwrap();
    client.start("early").unwrap();
    assert_eq!(client.wait("early", None).unwrap(), exited(0));
    let stdout = stream(&ctx, "early", None, StdioStream::Stdout).unwrap();
    assert_eq!(read_all(stdout), "kept\n");
}

#[test]
fn a_signal_kills_and_stats_count_the_process() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    client
        .create("k", spec(&["sleep", "1000"]), rootfs.path())
        .unwrap();
    let started = client.start("k").unwrap();
    // `start` returns once the process is released, maybe before its exec is done:
    // while the kernel swaps its memory for sleep's, and until sleep touches its
    // first pages, its RSS can read 0 (even with `comm` already "sleep").
    let comm = format!("/proc/{started}/comm");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let stats = loop {
        let stats = client.ask(RequestBody::Stats {
            container_id: "k".into(),
        });
        let Ok(ResponseBody::Stats(stats)) = stats else {
            panic!("stats answered {stats:?}");
        };
        let ran = std::fs::read_to_string(&comm).unwrap_or_default().trim() == "sleep";
        if ran && stats.memory_bytes > 0 {
            break stats;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sleep never ran with memory: {stats:?}"
        );
        std::thread::yield_now();
    };
    assert_eq!(stats.pids, 1);
    let pid = i32::try_from(started).unwrap();
    let listed = client.ask(RequestBody::Processes {
        container_id: "k".into(),
    });
    assert_eq!(listed, Ok(ResponseBody::Processes { pids: vec![pid] }));
    let err = client.signal("k", None, 4242).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    client.signal("k", None, 9).unwrap();
    assert_eq!(client.wait("k", None).unwrap(), killed(9));
}

#[test]
fn stdin_is_relayed_until_the_host_shuts_down_its_side() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    client.create("cat", spec(&["cat"]), rootfs.path()).unwrap();
    let mut stdin = stream(&ctx, "cat", None, StdioStream::Stdin).unwrap();
    let stdout = stream(&ctx, "cat", None, StdioStream::Stdout).unwrap();
    client.start("cat").unwrap();
    stdin.write_all(b"hello\nworld\n").unwrap();
    stdin.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_all(stdout), "hello\nworld\n");
    assert_eq!(client.wait("cat", None).unwrap(), exited(0));
}

#[test]
fn close_stdin_ends_input_attached_or_not() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    let close = |client: &mut Client, id: &str| {
        let body = RequestBody::CloseStdin {
            container_id: id.into(),
            exec_id: None,
        };
        assert_eq!(client.ask(body), Ok(ResponseBody::Done));
    };
    // Never attached.
    client.create("a", spec(&["cat"]), rootfs.path()).unwrap();
    client.start("a").unwrap();
    close(&mut client, "a");
    assert_eq!(client.wait("a", None).unwrap(), exited(0));
    // Attached, the host keeping its side open.
    client.create("b", spec(&["cat"]), rootfs.path()).unwrap();
    let mut stdin = stream(&ctx, "b", None, StdioStream::Stdin).unwrap();
    let stdout = stream(&ctx, "b", None, StdioStream::Stdout).unwrap();
    client.start("b").unwrap();
    stdin.write_all(b"typed\n").unwrap();
    close(&mut client, "b");
    close(&mut client, "b");
    assert_eq!(client.wait("b", None).unwrap(), exited(0));
    // What was written before the close may or may not have reached cat; the
    // stream ends either way.
    let out = read_all(stdout);
    assert!(out.is_empty() || out == "typed\n", "{out:?}");
    let err = stream(&ctx, "b", None, StdioStream::Stdin).unwrap_err();
    assert_eq!(err.code, ErrorCode::FailedPrecondition);
}

#[test]
fn a_terminal_process_talks_over_one_pty_stream() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    let mut spec = spec(&["sh", "-c", "read line; echo \"got $line\"; stty size"]);
    spec["process"]["terminal"] = json!(true);
    spec["process"]["consoleSize"] = json!({"height": 24, "width": 80});
    client.create("tty", spec, rootfs.path()).unwrap();
    for refused in [StdioStream::Stdin, StdioStream::Stdout] {
        let err = stream(&ctx, "tty", None, refused).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{err:?}");
    }
    let mut pty = stream(&ctx, "tty", None, StdioStream::Pty).unwrap();
    let err = stream(&ctx, "tty", None, StdioStream::Pty).unwrap_err();
    assert_eq!(err.code, ErrorCode::FailedPrecondition, "{err:?}");
    client.start("tty").unwrap();
    let resize = RequestBody::ResizeTty {
        container_id: "tty".into(),
        exec_id: None,
        rows: 30,
        cols: 100,
    };
    assert_eq!(client.ask(resize), Ok(ResponseBody::Done));
    pty.write_all(b"abc\n").unwrap();
    let out = read_all(pty);
    // The terminal echoes the input and ends lines with CR LF.
    assert!(out.contains("got abc\r\n"), "{out:?}");
    assert!(out.contains("30 100\r\n"), "{out:?}");
    assert_eq!(client.wait("tty", None).unwrap(), exited(0));
}

#[test]
fn the_process_spec_is_applied() {
    let ctx = agent();
    let rootfs = Rootfs::new(true);
    let mut client = Client::new(&ctx);
    let script = "echo $FOO; pwd; hostname; id -u; id -g; id -G; umask; \
                  test -e /proc/self/stat && echo proc; cat /marker";
    let spec = json!({
        "ociVersion": "1.0.2",
        "hostname": "box1",
        "process": {
            "args": ["sh", "-c", script],
            "env": ["PATH=/bin", "FOO=bar"],
            "cwd": "/tmp",
            "user": {"uid": 1000, "gid": 1001, "additionalGids": [5], "umask": 23},
        }
    });
    client.create("spec", spec, rootfs.path()).unwrap();
    let stdout = stream(&ctx, "spec", None, StdioStream::Stdout).unwrap();
    let stderr = stream(&ctx, "spec", None, StdioStream::Stderr).unwrap();
    client.start("spec").unwrap();
    assert_eq!(
        read_all(stdout),
        "bar\n/tmp\nbox1\n1000\n1001\n1001 5\n0027\nproc\ninside\n"
    );
    assert_eq!(read_all(stderr), "");
    assert_eq!(client.wait("spec", None).unwrap(), exited(0));
    // The agent's own hostname is untouched.
    assert_ne!(nix::unistd::gethostname().unwrap(), "box1");
}

#[test]
fn exec_runs_inside_a_running_container() {
    let ctx = agent();
    let rootfs = Rootfs::new(true);
    let mut client = Client::new(&ctx);
    let mut spec = spec(&["sleep", "1000"]);
    spec["hostname"] = json!("inner");
    client.create("ex", spec, rootfs.path()).unwrap();
    let early = client
        .exec("ex", "e0", json!({"args": ["true"]}))
        .unwrap_err();
    assert_eq!(early.code, ErrorCode::FailedPrecondition, "{early:?}");
    client.start("ex").unwrap();
    let process = json!({
        "args": ["sh", "-c", "cat /marker; echo $FOO; hostname; pwd; test -e /proc/self/stat && echo proc; exit 3"],
        "env": ["FOO=bar"],
        "cwd": "/tmp",
    });
    let pid = client.exec("ex", "e1", process.clone()).unwrap();
    assert!(pid > 1);
    // The output waited in the pipe until now.
    let stdout = stream(&ctx, "ex", Some("e1"), StdioStream::Stdout).unwrap();
    assert_eq!(read_all(stdout), "inside\nbar\ninner\n/tmp\nproc\n");
    assert_eq!(client.wait("ex", Some("e1")).unwrap(), exited(3));
    let err = client.exec("ex", "e1", process).unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists, "{err:?}");
    let err = client
        .exec("ex", "e2", json!({"args": ["/bin/nope"]}))
        .unwrap_err();
    assert_eq!(err.message, "exec \"/bin/nope\": No such file or directory");
    client.signal("ex", None, 9).unwrap();
    assert_eq!(client.wait("ex", None).unwrap(), killed(9));
    let err = client
        .exec("ex", "e3", json!({"args": ["true"]}))
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::FailedPrecondition, "{err:?}");
}
