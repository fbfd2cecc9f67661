//! The client against fake agents on a Unix socket that speak the hybrid vsock
//! `CONNECT`/`OK` exchange (the client against the agent's real connection handler
//! is tested in the `husk-tests` crate, `tests/agent_client.rs`).

use super::*;
use husk_protocol::*;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
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

/// `CONNECT`/`OK`, then the hello is read (and returned) but not answered.
fn accept_connect(stream: &mut UnixStream) -> Hello {
    assert_eq!(read_connect(stream), AGENT_PORT);
    stream.write_all(b"OK 1073741824\n").unwrap();
    read_frame(stream).unwrap()
}

/// `CONNECT`/`OK` and a successful handshake.
fn handshake(stream: &mut UnixStream) {
    let hello = accept_connect(stream);
    assert_eq!(hello.version, PROTOCOL_VERSION);
    assert!(hello.client.starts_with("husk-runtime "));
    let ack = HelloReply::HelloAck(HelloAck {
        version: PROTOCOL_VERSION,
        agent_version: "9.9.9".into(),
    });
    write_frame(stream, &ack).unwrap();
}

fn short() -> Timeouts {
    Timeouts {
        connect: Duration::from_millis(200),
        request: Duration::from_millis(200),
    }
}

#[test]
fn shutdown_answered_by_closing_counts_as_done() {
    let fake = Fake::start(|mut stream| {
        handshake(&mut stream);
        let _: Request = read_frame(&mut stream).unwrap();
    });
    let client = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap();
    client.shutdown().unwrap();
    fake.join();
}

#[test]
fn missing_socket_names_the_path() {
    let path = socket_path();
    let err = AgentClient::connect(&path, AGENT_PORT, short()).unwrap_err();
    assert!(matches!(&err, ClientError::SocketMissing { path: p, .. } if *p == path));
    assert!(err.to_string().contains(&path.display().to_string()));
}

#[test]
fn refused_connect_names_the_port() {
    let fake = Fake::start(|mut stream| {
        assert_eq!(read_connect(&mut stream), 1234);
        // Nothing listens on that guest port: the VMM closes the socket.
    });
    let err = AgentClient::connect(&fake.path, 1234, short()).unwrap_err();
    assert!(matches!(err, ClientError::ConnectRefused { port: 1234 }));
    assert_eq!(
        err.to_string(),
        "nothing listens on guest port 1234 — is the agent running?"
    );
    fake.join();
}

#[test]
fn a_bad_ok_line_is_unexpected() {
    let fake = Fake::start(|mut stream| {
        read_connect(&mut stream);
        stream.write_all(b"NOPE\n").unwrap();
    });
    let err = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap_err();
    assert!(
        matches!(&err, ClientError::Unexpected { during: "CONNECT", detail } if detail.contains("NOPE")),
        "{err}"
    );
    fake.join();
}

#[test]
fn a_silent_guest_times_out_during_the_handshake() {
    let (release, wait) = mpsc::channel::<()>();
    let fake = Fake::start(move |mut stream| {
        accept_connect(&mut stream);
        // Hold the connection open, unanswered, until the test is done.
        let _ = wait.recv();
    });
    let err = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { during: "handshake", after } if after == short().connect),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("the guest did not answer within 0.2 s"));
    drop(release);
    fake.join();
}

#[test]
fn a_silent_guest_times_out_on_a_request() {
    let (release, wait) = mpsc::channel::<()>();
    let fake = Fake::start(move |mut stream| {
        handshake(&mut stream);
        let _: Request = read_frame(&mut stream).unwrap();
        let _ = wait.recv();
    });
    let mut client = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap();
    let err = client.health().unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    assert!(matches!(client.health(), Err(ClientError::Broken)));
    drop(release);
    fake.join();
}

#[test]
fn a_response_to_another_request_is_refused() {
    let fake = Fake::start(|mut stream| {
        handshake(&mut stream);
        let request: Request = read_frame(&mut stream).unwrap();
        let wrong = Response {
            id: request.id + 1,
            result: Ok(ResponseBody::Done),
        };
        write_frame(&mut stream, &wrong).unwrap();
    });
    let mut client = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap();
    let err = client.health().unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::IdMismatch {
                expected: 1,
                got: 2
            }
        ),
        "{err}"
    );
    fake.join();
}

#[test]
fn malformed_and_oversize_replies_are_refused() {
    for reply in [
        b"\x00\x00\x00\x02{]".to_vec(),
        u32::MAX.to_be_bytes().to_vec(),
    ] {
        let fake = Fake::start(move |mut stream| {
            handshake(&mut stream);
            let _: Request = read_frame(&mut stream).unwrap();
            stream.write_all(&reply).unwrap();
        });
        let mut client = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap();
        let err = client.health().unwrap_err();
        assert!(matches!(err, ClientError::Malformed { .. }), "{err}");
        fake.join();
    }
}

#[test]
fn version_mismatch_is_reported_both_ways() {
    // The agent refuses the client's version.
    let fake = Fake::start(|mut stream| {
        accept_connect(&mut stream);
        let refused = HelloReply::Refused(AgentError::new(
            ErrorCode::VersionMismatch,
            "client speaks protocol version 1, agent 2.0.0 speaks version 2",
        ));
        write_frame(&mut stream, &refused).unwrap();
    });
    let err = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap_err();
    assert!(
        matches!(&err, ClientError::VersionMismatch { detail } if detail.contains("version 2")),
        "{err}"
    );
    fake.join();
    // The agent acknowledges with a version the client does not speak.
    let fake = Fake::start(|mut stream| {
        accept_connect(&mut stream);
        let ack = HelloReply::HelloAck(HelloAck {
            version: 3,
            agent_version: "3.0.0".into(),
        });
        write_frame(&mut stream, &ack).unwrap();
    });
    let err = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap_err();
    assert!(matches!(err, ClientError::VersionMismatch { .. }), "{err}");
    assert!(err.to_string().contains("version 2") && err.to_string().contains("version 3"));
    fake.join();
}

#[test]
fn a_busy_agent_refusal_is_reported() {
    let fake = Fake::start(|mut stream| {
        accept_connect(&mut stream);
        let refused = HelloReply::Refused(AgentError::new(ErrorCode::Busy, "64 connections"));
        write_frame(&mut stream, &refused).unwrap();
    });
    let err = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap_err();
    assert!(matches!(
        err,
        ClientError::Refused(AgentError {
            code: ErrorCode::Busy,
            ..
        })
    ));
    fake.join();
}

/// A guest's error message reaches the operator's terminal escaped and bounded: no
/// terminal escape sequence, no 4 MiB error line.
#[test]
fn a_hostile_error_message_is_escaped_and_bounded() {
    let fake = Fake::start(|mut stream| {
        handshake(&mut stream);
        let request: Request = read_frame(&mut stream).unwrap();
        let message = format!("\x1b]0;owned\x07\x1b[2J{}", "x".repeat(1 << 20));
        let answer = Response {
            id: request.id,
            result: Err(AgentError::new(ErrorCode::Internal, message)),
        };
        write_frame(&mut stream, &answer).unwrap();
    });
    let mut client = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap();
    let err = client.health().unwrap_err();
    let shown = husk_protocol::error_chain(&err);
    assert!(!shown.chars().any(char::is_control), "{:?}", &shown[..80]);
    assert!(shown.len() < 4096, "{} bytes", shown.len());
    assert!(shown.contains("\\u{1b}]0;owned"), "{:?}", &shown[..80]);
    fake.join();
}

mod containers;
