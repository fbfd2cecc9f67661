//! The connection handler, driven over a Unix socket pair.

use super::*;
use husk_protocol::diag::{StreamGenerator, StreamHasher};
use husk_protocol::ratelimit::TokenBucket;
use husk_protocol::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

/// A fake `/proc` with known values.
fn fake_proc() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "husk-agent-proc-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("uptime"), "5.25 10.00\n").unwrap();
    std::fs::write(dir.join("loadavg"), "0.50 0.25 0.10 1/50 99\n").unwrap();
    std::fs::write(
        dir.join("meminfo"),
        "MemTotal:  2048 kB\nMemFree: 1000 kB\nMemAvailable:  1024 kB\n",
    )
    .unwrap();
    dir
}

/// A context on a fake `/proc` with a quiet log; shutdown requests go to the receiver.
fn context(proc_root: &Path) -> (Arc<Context>, mpsc::Receiver<()>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let ctx = Context::new(move || {
        let _ = tx.lock().unwrap().send(());
    })
    .with_proc_root(proc_root.to_owned())
    .with_log(ConsoleLog::new(
        Box::new(std::io::sink()),
        TokenBucket::console(Instant::now()),
    ));
    (Arc::new(ctx), rx)
}

/// Starts the handler on one end of a socket pair; gives back the other end.
fn start(ctx: &Arc<Context>) -> (UnixStream, JoinHandle<Result<(), ConnError>>) {
    let (client, agent) = UnixStream::pair().unwrap();
    let ctx = Arc::clone(ctx);
    let handle = std::thread::spawn(move || handle_connection(agent, &ctx));
    (client, handle)
}

/// Starts the handler and completes the handshake.
fn connected(ctx: &Arc<Context>) -> (UnixStream, JoinHandle<Result<(), ConnError>>) {
    let (mut client, handle) = start(ctx);
    write_frame(&mut client, &Hello::new("test")).unwrap();
    let reply: HelloReply = read_frame(&mut client).unwrap();
    assert!(matches!(
        reply,
        HelloReply::HelloAck(HelloAck { version: 2, .. })
    ));
    (client, handle)
}

fn ask(client: &mut UnixStream, id: u64, body: RequestBody) -> Result<ResponseBody, AgentError> {
    write_frame(client, &Request { id, body }).unwrap();
    let response: Response = read_frame(client).unwrap();
    assert_eq!(response.id, id);
    response.result
}

#[test]
fn version_and_health_are_answered() {
    let proc_root = fake_proc();
    let (ctx, _rx) = context(&proc_root);
    let (mut client, handle) = connected(&ctx);
    assert_eq!(
        ask(&mut client, 1, RequestBody::Version),
        Ok(ResponseBody::Version {
            protocol_version: PROTOCOL_VERSION,
            agent_version: husk_protocol::console::VERSION.into()
        })
    );
    assert_eq!(
        ask(&mut client, 2, RequestBody::Health),
        Ok(ResponseBody::Health(Health {
            uptime_ms: 5250,
            load_avg: [0.5, 0.25, 0.1],
            mem_total_kib: 2048,
            mem_available_kib: 1024,
            // The handler was started directly, without taking a slot.
            connections: 0,
        }))
    );
    drop(client);
    handle.join().unwrap().unwrap();
    std::fs::remove_dir_all(proc_root).unwrap();
}

#[test]
fn unreadable_proc_is_an_internal_error() {
    let (ctx, _rx) = context(Path::new("/nonexistent/husk-proc"));
    let (mut client, _handle) = connected(&ctx);
    let err = ask(&mut client, 1, RequestBody::Health).unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(
        err.message.contains("/nonexistent/husk-proc"),
        "{}",
        err.message
    );
}

#[test]
fn stream_sink_digest_matches() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = connected(&ctx);
    let bytes = 1u64 << 20;
    assert_eq!(
        ask(&mut client, 1, RequestBody::StreamSink { bytes }),
        Ok(ResponseBody::Ready)
    );
    let mut data = vec![0u8; bytes as usize];
    StreamGenerator::new(5).fill(&mut data);
    let mut expected = StreamHasher::new();
    expected.update(&data);
    // The agent reads while this thread writes: no deadlock on the socket buffer.
    client.write_all(&data).unwrap();
    let done: Response = read_frame(&mut client).unwrap();
    assert_eq!(done.id, 1);
    assert_eq!(done.result, Ok(ResponseBody::SinkDigest(expected.finish())));
    // The connection goes on with requests.
    assert!(ask(&mut client, 2, RequestBody::Version).is_ok());
    drop(client);
    handle.join().unwrap().unwrap();
}

#[test]
fn stream_sink_cut_short_ends_the_connection() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = connected(&ctx);
    assert!(ask(&mut client, 1, RequestBody::StreamSink { bytes: 100 }).is_ok());
    client.write_all(&[1; 10]).unwrap();
    drop(client);
    assert!(matches!(
        handle.join().unwrap(),
        Err(ConnError::StreamTruncated {
            expected: 100,
            got: 10
        })
    ));
}

#[test]
fn stream_source_matches_the_generator() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = connected(&ctx);
    let bytes = (1u64 << 20) + 3;
    assert_eq!(
        ask(
            &mut client,
            1,
            RequestBody::StreamSource { bytes, seed: 42 }
        ),
        Ok(ResponseBody::Ready)
    );
    let mut got = vec![0u8; bytes as usize];
    client.read_exact(&mut got).unwrap();
    let mut expected = vec![0u8; bytes as usize];
    StreamGenerator::new(42).fill(&mut expected);
    assert!(got == expected, "stream differs");
    // Nothing else follows but the next answer.
    assert!(ask(&mut client, 2, RequestBody::Version).is_ok());
    drop(client);
    handle.join().unwrap().unwrap();
}

#[test]
fn shutdown_is_answered_then_passed_on() {
    let (ctx, rx) = context(Path::new("/proc"));
    let (mut client, handle) = connected(&ctx);
    assert_eq!(
        ask(&mut client, 1, RequestBody::Shutdown),
        Ok(ResponseBody::Done)
    );
    rx.recv().unwrap();
    drop(client);
    handle.join().unwrap().unwrap();
}

#[test]
fn version_mismatch_is_refused_and_closed() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = start(&ctx);
    write_frame(
        &mut client,
        &Hello {
            version: 3,
            client: "future".into(),
        },
    )
    .unwrap();
    let reply: HelloReply = read_frame(&mut client).unwrap();
    let HelloReply::Refused(err) = reply else {
        panic!("expected a refusal, got {reply:?}");
    };
    assert_eq!(err.code, ErrorCode::VersionMismatch);
    assert!(err.message.contains("version 3") && err.message.contains("version 2"));
    assert!(matches!(
        read_frame::<_, Response>(&mut client),
        Err(FrameError::Eof)
    ));
    assert!(matches!(
        handle.join().unwrap(),
        Err(ConnError::VersionMismatch { version: 3, .. })
    ));
}

#[test]
fn a_bad_first_frame_is_refused() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = start(&ctx);
    write_frame(&mut client, &serde_json::json!({"hi": true})).unwrap();
    let reply: HelloReply = read_frame(&mut client).unwrap();
    assert!(matches!(
        reply,
        HelloReply::Refused(AgentError {
            code: ErrorCode::InvalidArgument,
            ..
        })
    ));
    assert!(matches!(
        handle.join().unwrap(),
        Err(ConnError::BadHello(_))
    ));
}

#[test]
fn a_stream_for_an_unknown_container_is_refused() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = start(&ctx);
    let hello = StreamHelloFrame::StreamHello(StreamHello {
        version: PROTOCOL_VERSION,
        container_id: "c1".into(),
        exec_id: None,
        stream: StdioStream::Stdout,
    });
    write_frame(&mut client, &hello).unwrap();
    let reply: StreamHelloReply = read_frame(&mut client).unwrap();
    assert!(matches!(
        reply,
        StreamHelloReply::Refused(AgentError {
            code: ErrorCode::NotFound,
            ..
        })
    ));
    handle.join().unwrap().unwrap();
}

#[test]
fn malformed_request_gets_invalid_argument_then_close() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = connected(&ctx);
    let bad = serde_json::json!({"id": 9, "body": {"type": "reboot"}});
    write_frame(&mut client, &bad).unwrap();
    let response: Response = read_frame(&mut client).unwrap();
    assert_eq!(response.id, 9);
    assert_eq!(
        response.result.unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert!(matches!(
        read_frame::<_, Response>(&mut client),
        Err(FrameError::Eof)
    ));
    assert!(matches!(
        handle.join().unwrap(),
        Err(ConnError::BadRequest { id: 9, .. })
    ));
}

#[test]
fn garbage_request_gets_id_zero() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = connected(&ctx);
    let mut frame = 3u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"}}}");
    client.write_all(&frame).unwrap();
    let response: Response = read_frame(&mut client).unwrap();
    assert_eq!(response.id, 0);
    assert_eq!(
        response.result.unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert!(handle.join().unwrap().is_err());
}

#[test]
fn oversize_frame_gets_invalid_argument_then_close() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = connected(&ctx);
    client.write_all(&u32::MAX.to_be_bytes()).unwrap();
    let response: Response = read_frame(&mut client).unwrap();
    let err = response.result.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("exceeds the limit"), "{}", err.message);
    assert!(matches!(
        handle.join().unwrap(),
        Err(ConnError::Frame(FrameError::TooLarge { .. }))
    ));
}

#[test]
fn truncated_request_ends_the_connection() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let (mut client, handle) = connected(&ctx);
    client.write_all(&[0, 0, 0, 50, b'{']).unwrap();
    drop(client);
    assert!(matches!(
        handle.join().unwrap(),
        Err(ConnError::Frame(FrameError::Truncated { part: "body", .. }))
    ));
}

#[test]
fn connection_slots_are_bounded_and_released() {
    let (ctx, _rx) = context(Path::new("/proc"));
    let ctx = Arc::new(Arc::try_unwrap(ctx).unwrap().with_max_connections(2));
    let a = ctx.try_acquire().unwrap();
    let _b = ctx.try_acquire().unwrap();
    assert!(ctx.try_acquire().is_none());
    assert_eq!(ctx.connections(), 2);
    drop(a);
    assert!(ctx.try_acquire().is_some());
}
