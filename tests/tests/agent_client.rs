//! The runtime's agent client against the agent's real connection handler, in this
//! process over a Unix socket that speaks the hybrid vsock `CONNECT`/`OK` exchange:
//! the two halves of the protocol as they are built, without a VM. Runs on any
//! machine (`cargo test`); the container test needs root and a static `/bin/busybox`.

use husk_agent::{handle_connection, ConnError, ConsoleLog, Context};
use husk_protocol::console::VERSION;
use husk_protocol::diag::StreamGenerator;
use husk_protocol::ratelimit::TokenBucket;
use husk_protocol::{
    ErrorCode, RequestBody, ResponseBody, StdioStream, AGENT_PORT, PROTOCOL_VERSION,
};
use husk_runtime::agent::{open_stream, AgentClient, ClientError, StreamTarget, Timeouts};
use serde_json::json;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A socket path of its own for each test.
fn socket_path() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    std::env::temp_dir().join(format!(
        "husk-agent-client-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Serves one connection of a listener at a fresh path with `script`.
struct Fake {
    path: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Fake {
    fn start(script: impl FnOnce(UnixStream) + Send + 'static) -> Fake {
        let path = socket_path();
        let listener = UnixListener::bind(&path).unwrap();
        let thread = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            script(stream);
        });
        Fake {
            path,
            thread: Some(thread),
        }
    }

    fn join(mut self) {
        self.thread.take().unwrap().join().unwrap();
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads the `CONNECT <port>` line; gives back the port.
fn read_connect(stream: &mut UnixStream) -> u32 {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while stream.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    let line = String::from_utf8(line).unwrap();
    line.strip_prefix("CONNECT ").unwrap().parse().unwrap()
}

/// A fake whose connection is served by the agent's real handler; shutdown requests
/// arrive on the first receiver, the handler's result on the second.
type HandlerResult = Result<(), ConnError>;

fn real_agent() -> (Fake, mpsc::Receiver<()>, mpsc::Receiver<HandlerResult>) {
    let (done_tx, done_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let ctx = Context::new(move || {
        let _ = tx.lock().unwrap().send(());
    })
    .with_log(ConsoleLog::new(
        Box::new(std::io::sink()),
        TokenBucket::console(Instant::now()),
    ));
    let fake = Fake::start(move |mut stream| {
        assert_eq!(read_connect(&mut stream), AGENT_PORT);
        stream.write_all(b"OK 1073741824\n").unwrap();
        let _ = done_tx.send(handle_connection(stream, &ctx));
    });
    (fake, rx, done_rx)
}

#[test]
fn connect_and_requests_succeed_against_the_real_handler() {
    let (fake, _rx, done) = real_agent();
    let mut client = AgentClient::connect(&fake.path, AGENT_PORT, Timeouts::default()).unwrap();
    assert_eq!(client.agent_version(), VERSION);
    let health = client.health().unwrap();
    assert!(health.mem_total_kib > 0);
    assert_eq!(
        client.request(RequestBody::Version).unwrap(),
        ResponseBody::Version {
            protocol_version: PROTOCOL_VERSION,
            agent_version: VERSION.into()
        }
    );
    // An error answer leaves the connection usable.
    let err = client
        .request(RequestBody::StartContainer {
            container_id: "c1".into(),
        })
        .unwrap_err();
    assert!(
        matches!(&err, ClientError::Agent(e) if e.code == ErrorCode::NotFound),
        "{err}"
    );
    assert!(client.health().is_ok());
    drop(client);
    done.recv().unwrap().unwrap();
    fake.join();
}

#[test]
fn stream_diagnostics_round_trip_against_the_real_handler() {
    let (fake, _rx, done) = real_agent();
    let mut client = AgentClient::connect(&fake.path, AGENT_PORT, Timeouts::default()).unwrap();
    let bytes = 1u64 << 20;
    let mut data = vec![0u8; bytes as usize];
    StreamGenerator::new(3).fill(&mut data);
    let digest = client.stream_sink(bytes, &data[..]).unwrap();
    assert_eq!(digest.bytes, bytes);
    assert_eq!(client.stream_source(bytes + 5, 11).unwrap(), bytes + 5);
    assert!(client.health().is_ok());
    drop(client);
    done.recv().unwrap().unwrap();
    fake.join();
}

#[test]
fn stream_sink_with_short_data_is_an_error() {
    let (fake, _rx, done) = real_agent();
    let mut client = AgentClient::connect(&fake.path, AGENT_PORT, Timeouts::default()).unwrap();
    let err = client.stream_sink(100, &[0u8; 10][..]).unwrap_err();
    assert!(matches!(
        err,
        ClientError::SourceShort {
            expected: 100,
            got: 10
        }
    ));
    assert!(matches!(client.health(), Err(ClientError::Broken)));
    drop(client);
    // The agent sees the stream cut short.
    assert!(matches!(
        done.recv().unwrap(),
        Err(ConnError::StreamTruncated {
            expected: 100,
            got: 10
        })
    ));
    fake.join();
}

#[test]
fn shutdown_is_answered_and_passed_on() {
    let (fake, rx, done) = real_agent();
    let client = AgentClient::connect(&fake.path, AGENT_PORT, Timeouts::default()).unwrap();
    client.shutdown().unwrap();
    rx.recv().unwrap();
    done.recv().unwrap().unwrap();
    fake.join();
}

/// The real handler behind a listener serving `connections` connections.
fn real_agent_for(connections: usize) -> (PathBuf, JoinHandle<()>) {
    let path = socket_path();
    let listener = UnixListener::bind(&path).unwrap();
    let ctx = Arc::new(Context::new(|| {}).with_log(ConsoleLog::new(
        Box::new(std::io::sink()),
        TokenBucket::console(Instant::now()),
    )));
    let thread = std::thread::spawn(move || {
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().unwrap();
            assert_eq!(read_connect(&mut stream), AGENT_PORT);
            stream.write_all(b"OK 1073741824\n").unwrap();
            let ctx = Arc::clone(&ctx);
            std::thread::spawn(move || handle_connection(stream, &ctx));
        }
    });
    (path, thread)
}

/// Needs root and a static `/bin/busybox`, like the agent's container tests.
#[test]
fn a_container_runs_end_to_end_through_the_client() {
    let rootfs = std::env::temp_dir().join(format!("husk-client-rootfs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&rootfs);
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/sh"))
        .expect("this test needs a static /bin/busybox (apt-get install busybox-static)");
    let (path, listener) = real_agent_for(4);
    let mut client = AgentClient::connect(&path, AGENT_PORT, Timeouts::default()).unwrap();
    let spec = json!({"process": {"args": ["sh", "-c", "read x; echo \"[$x]\"; exit 4"]}});
    let pid = client
        .create_container("e2e", spec, rootfs.to_str().unwrap())
        .unwrap();
    let open = |stream| {
        let target = StreamTarget {
            container_id: "e2e",
            exec_id: None,
            stream,
        };
        open_stream(&path, AGENT_PORT, target, Duration::from_secs(5)).unwrap()
    };
    let mut stdin = open(StdioStream::Stdin);
    let mut stdout = open(StdioStream::Stdout);
    let mut waiter = AgentClient::connect(&path, AGENT_PORT, Timeouts::default()).unwrap();
    listener.join().unwrap();
    assert_eq!(client.start_container("e2e").unwrap(), pid);
    stdin.write_all(b"hi\n").unwrap();
    stdin.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert_eq!(out, "[hi]\n");
    let status = waiter.wait("e2e", None, None).unwrap();
    assert_eq!(status.exit_code, Some(4));
    let _ = std::fs::remove_dir_all(&rootfs);
    let _ = std::fs::remove_file(&path);
}
