//! Containers served over the real connection handler, on a busybox root filesystem.
//!
//! These tests need root (namespaces, `chroot`) and a static `/bin/busybox` (Debian's
//! `busybox-static`, installed by `tests/setup.sh`). The test process reaps with the
//! agent's reap-all reaper as a child subreaper, as PID 1 would.

mod errors;
mod mounts;
mod namespaces;
mod run;
mod security;

use crate::container::Reaper;
use crate::server::log::ConsoleLog;
use crate::server::{handle_connection, Context};
use husk_protocol::ratelimit::TokenBucket;
use husk_protocol::*;
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a test waits on a socket before it fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(20);

/// busybox applets linked in every test root filesystem.
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "true", "sleep", "id", "hostname", "pwd", "test", "stty", "ls", "tr",
];

/// An agent context reaping like PID 1, with a quiet log.
fn agent() -> Arc<Context> {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let reaper = Reaper::reap_all().unwrap();
    Arc::new(
        Context::new(|| {})
            .with_log(ConsoleLog::new(
                Box::new(std::io::sink()),
                TokenBucket::console(Instant::now()),
            ))
            .with_reaper(reaper),
    )
}

/// A root filesystem with busybox, `/tmp`, `/marker` and optionally `/proc`; removed
/// when dropped.
struct Rootfs(PathBuf);

impl Rootfs {
    fn new(with_proc: bool) -> Rootfs {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "husk-rootfs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        if with_proc {
            std::fs::create_dir_all(dir.join("proc")).unwrap();
        }
        let busybox = dir.join("bin/busybox");
        if std::fs::hard_link("/bin/busybox", &busybox).is_err() {
            std::fs::copy("/bin/busybox", &busybox)
                .expect("these tests need a static /bin/busybox (apt-get install busybox-static)");
        }
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
        }
        std::fs::write(dir.join("marker"), "inside\n").unwrap();
        Rootfs(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for Rootfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A request connection to the handler.
struct Client {
    stream: UnixStream,
    next_id: u64,
}

impl Client {
    fn new(ctx: &Arc<Context>) -> Client {
        let (mut stream, agent) = UnixStream::pair().unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let ctx = Arc::clone(ctx);
        std::thread::spawn(move || handle_connection(agent, &ctx));
        write_frame(&mut stream, &Hello::new("test")).unwrap();
        let reply: HelloReply = read_frame(&mut stream).unwrap();
        assert!(matches!(reply, HelloReply::HelloAck(_)), "{reply:?}");
        Client { stream, next_id: 1 }
    }

    fn ask(&mut self, body: RequestBody) -> Result<ResponseBody, AgentError> {
        let id = self.next_id;
        self.next_id += 1;
        write_frame(&mut self.stream, &Request { id, body }).unwrap();
        let response: Response = read_frame(&mut self.stream).unwrap();
        assert_eq!(response.id, id);
        response.result
    }

    fn create(&mut self, id: &str, spec: Value, rootfs: &str) -> Result<u32, AgentError> {
        let body = RequestBody::CreateContainer {
            container_id: id.into(),
            bundle_spec: spec,
            rootfs: rootfs.into(),
        };
        self.ask(body).map(|answer| match answer {
            ResponseBody::Created { pid } => pid,
            other => panic!("create answered {other:?}"),
        })
    }

    fn start(&mut self, id: &str) -> Result<u32, AgentError> {
        let body = RequestBody::StartContainer {
            container_id: id.into(),
        };
        self.ask(body).map(started)
    }

    fn exec(&mut self, id: &str, exec_id: &str, process: Value) -> Result<u32, AgentError> {
        let body = RequestBody::Exec {
            container_id: id.into(),
            exec_id: exec_id.into(),
            process,
        };
        self.ask(body).map(started)
    }

    fn signal(&mut self, id: &str, exec_id: Option<&str>, signal: i32) -> Result<(), AgentError> {
        let body = RequestBody::Signal {
            container_id: id.into(),
            exec_id: exec_id.map(Into::into),
            signal,
        };
        self.ask(body)
            .map(|answer| assert_eq!(answer, ResponseBody::Done))
    }

    fn wait(&mut self, id: &str, exec_id: Option<&str>) -> Result<ExitStatus, AgentError> {
        let body = RequestBody::Wait {
            container_id: id.into(),
            exec_id: exec_id.map(Into::into),
        };
        self.ask(body).map(|answer| match answer {
            ResponseBody::Exited(status) => status,
            other => panic!("wait answered {other:?}"),
        })
    }
}

fn started(answer: ResponseBody) -> u32 {
    match answer {
        ResponseBody::Started { pid } => pid,
        other => panic!("expected started, got {other:?}"),
    }
}

/// Opens a stdio stream connection; the agent's answer or the stream.
fn stream(
    ctx: &Arc<Context>,
    id: &str,
    exec_id: Option<&str>,
    which: StdioStream,
) -> Result<UnixStream, AgentError> {
    let (mut stream, agent) = UnixStream::pair().unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let ctx = Arc::clone(ctx);
    std::thread::spawn(move || handle_connection(agent, &ctx));
    let hello = StreamHelloFrame::StreamHello(StreamHello {
        version: PROTOCOL_VERSION,
        container_id: id.into(),
        exec_id: exec_id.map(Into::into),
        stream: which,
    });
    write_frame(&mut stream, &hello).unwrap();
    match read_frame(&mut stream).unwrap() {
        StreamHelloReply::Ok => Ok(stream),
        StreamHelloReply::Refused(e) => Err(e),
    }
}

/// Everything a stream carries until end of file.
fn read_all(mut stream: UnixStream) -> String {
    let mut out = String::new();
    stream.read_to_string(&mut out).unwrap();
    out
}

/// A `config.json` running `args`.
fn spec(args: &[&str]) -> Value {
    json!({"ociVersion": "1.0.2", "process": {"args": args, "cwd": "/"}})
}

fn exited(code: i32) -> ExitStatus {
    ExitStatus {
        exit_code: Some(code),
        signal: None,
    }
}

fn killed(signal: i32) -> ExitStatus {
    ExitStatus {
        exit_code: None,
        signal: Some(signal),
    }
}

/// Whether `pid` is gone (reaped): no `/proc/<pid>`.
fn gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}
