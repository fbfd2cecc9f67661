//! Framing, message shapes and diagnostics.

use super::diag::{StreamGenerator, StreamHasher};
use super::handshake::answer_hello;
use super::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use std::fmt::Debug;
use std::io::Cursor;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(msg: &T) {
    let mut buf = Vec::new();
    write_frame(&mut buf, msg).unwrap();
    let len = u32::from_be_bytes(buf[..4].try_into().unwrap());
    assert_eq!(len as usize, buf.len() - 4);
    let mut r = Cursor::new(buf);
    let back: T = read_frame(&mut r).unwrap();
    assert_eq!(&back, msg);
    assert!(matches!(read_frame::<_, T>(&mut r), Err(FrameError::Eof)));
}

fn all_requests() -> Vec<RequestBody> {
    let c = || "c1".to_owned();
    vec![
        RequestBody::Version,
        RequestBody::Health,
        RequestBody::CreateContainer {
            container_id: c(),
            bundle_spec: json!({"ociVersion": "1.0.2", "process": {"args": ["sh"]}}),
            rootfs: "/run/c1/rootfs".into(),
        },
        RequestBody::StartContainer { container_id: c() },
        RequestBody::Signal {
            container_id: c(),
            exec_id: Some("e1".into()),
            signal: 15,
        },
        RequestBody::Wait {
            container_id: c(),
            exec_id: None,
        },
        RequestBody::Exec {
            container_id: c(),
            exec_id: "e1".into(),
            process: json!({"args": ["ls", "-l"], "cwd": "/"}),
        },
        RequestBody::ResizeTty {
            container_id: c(),
            exec_id: None,
            rows: 24,
            cols: 80,
        },
        RequestBody::CloseStdin {
            container_id: c(),
            exec_id: Some("e1".into()),
        },
        RequestBody::Stats { container_id: c() },
        RequestBody::Pause { container_id: c() },
        RequestBody::Resume { container_id: c() },
        RequestBody::Update {
            container_id: c(),
            resources: serde_json::json!({"memory": {"limit": 33554432}}),
        },
        RequestBody::OomEvent { timeout_ms: 500 },
        RequestBody::Shutdown,
        RequestBody::StreamSink { bytes: 1 << 20 },
        RequestBody::StreamSource {
            bytes: u64::MAX,
            seed: 7,
        },
    ]
}

fn all_responses() -> Vec<Result<ResponseBody, AgentError>> {
    vec![
        Ok(ResponseBody::Version {
            protocol_version: 1,
            agent_version: "0.1.0".into(),
        }),
        Ok(ResponseBody::Health(Health {
            uptime_ms: 1234,
            load_avg: [0.5, 0.25, 0.0],
            mem_total_kib: 500_000,
            mem_available_kib: 400_000,
            connections: 1,
        })),
        Ok(ResponseBody::Done),
        Ok(ResponseBody::Created { pid: 41 }),
        Ok(ResponseBody::Started { pid: 42 }),
        Ok(ResponseBody::Exited(ExitStatus {
            exit_code: Some(3),
            signal: None,
        })),
        Ok(ResponseBody::Stats(ContainerStats {
            cpu_usage_ns: 1,
            memory_bytes: 2,
            pids: 3,
            cgroup: None,
        })),
        Ok(ResponseBody::Stats(ContainerStats {
            cpu_usage_ns: 1,
            memory_bytes: 2,
            pids: 3,
            cgroup: Some(CgroupStats {
                memory_current: 4,
                memory_max: None,
                pids_max: Some(5),
                oom_kill: 1,
                frozen: true,
                ..Default::default()
            }),
        })),
        Ok(ResponseBody::OomEvent {
            container_id: Some("c1".into()),
        }),
        Ok(ResponseBody::OomEvent { container_id: None }),
        Ok(ResponseBody::Ready),
        Ok(ResponseBody::SinkDigest(SinkDigest {
            bytes: 3,
            sha256: "ab".into(),
        })),
        Err(AgentError::new(ErrorCode::Unsupported, "later")),
        Err(AgentError::new(ErrorCode::NotFound, "no c9")),
        Err(AgentError::new(ErrorCode::InvalidArgument, "bad")),
        Err(AgentError::new(ErrorCode::Internal, "oops")),
        Err(AgentError::new(ErrorCode::VersionMismatch, "1 vs 2")),
        Err(AgentError::new(ErrorCode::Busy, "full")),
        Err(AgentError::new(ErrorCode::AlreadyExists, "c1 exists")),
        Err(AgentError::new(
            ErrorCode::FailedPrecondition,
            "not running",
        )),
    ]
}

#[test]
fn every_message_round_trips() {
    for (i, body) in all_requests().into_iter().enumerate() {
        round_trip(&Request { id: i as u64, body });
    }
    for (i, result) in all_responses().into_iter().enumerate() {
        round_trip(&Response {
            id: i as u64,
            result,
        });
    }
    round_trip(&Hello::new("test"));
    round_trip(&answer_hello(&Hello::new("test"), "0.1.0"));
    round_trip(&HelloReply::Refused(AgentError::new(ErrorCode::Busy, "x")));
    round_trip(&StreamHelloReply::Ok);
    round_trip(&StreamHelloReply::Refused(AgentError::new(
        ErrorCode::NotFound,
        "no container",
    )));
    for stream in [
        StdioStream::Stdin,
        StdioStream::Stdout,
        StdioStream::Stderr,
        StdioStream::Pty,
    ] {
        round_trip(&StreamHelloFrame::StreamHello(StreamHello {
            version: PROTOCOL_VERSION,
            container_id: "c1".into(),
            exec_id: None,
            stream,
        }));
    }
}

#[test]
fn json_shapes_are_as_documented() {
    let v = |x: &dyn erased::Ser| x.value();
    assert_eq!(
        v(&Request {
            id: 1,
            body: RequestBody::Health
        }),
        json!({"id": 1, "body": {"type": "health"}})
    );
    assert_eq!(
        v(&RequestBody::Signal {
            container_id: "c1".into(),
            exec_id: None,
            signal: 9
        }),
        json!({"type": "signal", "container_id": "c1", "exec_id": null, "signal": 9})
    );
    assert_eq!(
        v(&Response {
            id: 1,
            result: Ok(ResponseBody::Done)
        }),
        json!({"id": 1, "result": {"ok": {"type": "done"}}})
    );
    assert_eq!(
        v(&Response {
            id: 2,
            result: Err(AgentError::new(ErrorCode::Unsupported, "m"))
        }),
        json!({"id": 2, "result": {"error": {"code": "unsupported", "message": "m"}}})
    );
    assert_eq!(
        v(&answer_hello(&Hello::new("t"), "0.1.0")),
        json!({"type": "hello_ack", "version": 2, "agent_version": "0.1.0"})
    );
    assert_eq!(v(&Hello::new("t")), json!({"version": 2, "client": "t"}));
    assert_eq!(
        v(&RequestBody::Pause {
            container_id: "c1".into()
        }),
        json!({"type": "pause", "container_id": "c1"})
    );
    assert_eq!(
        v(&RequestBody::OomEvent { timeout_ms: 500 }),
        json!({"type": "oom_event", "timeout_ms": 500})
    );
    assert_eq!(
        v(&ResponseBody::OomEvent { container_id: None }),
        json!({"type": "oom_event", "container_id": null})
    );
    // A version-1 stats answer (no cgroup) still reads.
    let stats: ResponseBody = serde_json::from_value(
        json!({"type": "stats", "cpu_usage_ns": 1, "memory_bytes": 2, "pids": 3}),
    )
    .unwrap();
    assert_eq!(
        stats,
        ResponseBody::Stats(ContainerStats {
            cpu_usage_ns: 1,
            memory_bytes: 2,
            pids: 3,
            cgroup: None
        })
    );
    assert_eq!(
        v(&StreamHelloFrame::StreamHello(StreamHello {
            version: 1,
            container_id: "c1".into(),
            exec_id: None,
            stream: StdioStream::Stdout
        })),
        json!({"stream_hello": {"version": 1, "container_id": "c1", "exec_id": null,
                                "stream": "stdout"}})
    );
    assert_eq!(v(&StreamHelloReply::Ok), json!({"type": "ok"}));
    assert_eq!(
        v(&StreamHelloReply::Refused(AgentError::new(
            ErrorCode::FailedPrecondition,
            "m"
        ))),
        json!({"type": "refused", "code": "failed_precondition", "message": "m"})
    );
    assert_eq!(
        v(&ResponseBody::Created { pid: 7 }),
        json!({"type": "created", "pid": 7})
    );
    assert_eq!(
        v(&AgentError::new(ErrorCode::AlreadyExists, "m")),
        json!({"code": "already_exists", "message": "m"})
    );
    // Optional ids may be left out.
    let wait: RequestBody =
        serde_json::from_value(json!({"type": "wait", "container_id": "c1"})).unwrap();
    assert_eq!(
        wait,
        RequestBody::Wait {
            container_id: "c1".into(),
            exec_id: None
        }
    );
}

/// `serde_json::to_value` behind a trait object, for the table above.
mod erased {
    pub trait Ser {
        fn value(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
}

#[test]
fn oversize_length_is_refused_before_reading_the_body() {
    for len in [MAX_FRAME_LEN + 1, u32::MAX] {
        // Only the prefix is there: reading the body would report truncation instead.
        let mut r = Cursor::new(len.to_be_bytes().to_vec());
        match read_frame_bytes(&mut r) {
            Err(FrameError::TooLarge { len: got, max }) => {
                assert_eq!((got, max), (u64::from(len), MAX_FRAME_LEN));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(r.position(), 4);
    }
}

#[test]
fn oversize_message_is_not_sent() {
    let big = "x".repeat(MAX_FRAME_LEN as usize);
    let mut out = Vec::new();
    assert!(matches!(
        write_frame(&mut out, &big),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn eof_at_a_boundary_differs_from_truncation() {
    assert!(matches!(
        read_frame_bytes(&mut Cursor::new(Vec::new())),
        Err(FrameError::Eof)
    ));
    assert!(matches!(
        read_frame_bytes(&mut Cursor::new(vec![0, 0])),
        Err(FrameError::Truncated {
            part: "length prefix",
            expected: 4,
            got: 2
        })
    ));
    let mut frame = Vec::new();
    write_frame(&mut frame, &Hello::new("t")).unwrap();
    let full = frame.len() as u64 - 4;
    frame.truncate(frame.len() - 3);
    match read_frame_bytes(&mut Cursor::new(frame)) {
        Err(FrameError::Truncated {
            part: "body",
            expected,
            got,
        }) => assert_eq!((expected, got), (full, full - 3)),
        other => panic!("expected Truncated, got {other:?}"),
    }
}

#[test]
fn garbage_json_is_a_json_error() {
    let mut frame = 5u32.to_be_bytes().to_vec();
    frame.extend_from_slice(b"{]x!}");
    let err = read_frame::<_, Request>(&mut Cursor::new(frame)).unwrap_err();
    assert!(matches!(err, FrameError::Json(_)));
    // Valid JSON of the wrong shape, and an unknown request type, too.
    for body in [
        json!({"id": 1}),
        json!({"id": 1, "body": {"type": "reboot"}}),
        json!({"id": -1, "body": {"type": "health"}}),
    ] {
        let mut frame = Vec::new();
        write_frame(&mut frame, &body).unwrap();
        let err = read_frame::<_, Request>(&mut Cursor::new(frame)).unwrap_err();
        assert!(matches!(err, FrameError::Json(_)), "{body}");
    }
}

#[test]
fn handshake_version_mismatch_names_both_versions() {
    let hello = Hello {
        version: 7,
        client: "future".into(),
    };
    match answer_hello(&hello, "0.1.0") {
        HelloReply::Refused(e) => {
            assert_eq!(e.code, ErrorCode::VersionMismatch);
            assert!(e.message.contains("version 7"), "{}", e.message);
            assert!(e.message.contains("version 2"), "{}", e.message);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(matches!(
        answer_hello(&Hello::new("now"), "0.1.0"),
        HelloReply::HelloAck(HelloAck { version: 2, .. })
    ));
}

#[test]
fn generator_matches_the_documented_stream() {
    let mut g = StreamGenerator::new(1);
    let mut first = [0u8; 16];
    g.fill(&mut first);
    let hex: String = first.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "1ddd6c894bcee4471d6579e0a8a6cfab");
    // Seed 0 is replaced, never stuck at zero.
    let mut z = [0u8; 8];
    StreamGenerator::new(0).fill(&mut z);
    assert_ne!(z, [0; 8]);
}

#[test]
fn generator_output_does_not_depend_on_chunking() {
    let mut whole = vec![0u8; 1000];
    StreamGenerator::new(99).fill(&mut whole);
    let mut g = StreamGenerator::new(99);
    let mut pieces = Vec::new();
    for size in [1, 3, 8, 13, 64, 5, 2, 7, 897] {
        let mut buf = vec![0u8; size];
        g.fill(&mut buf);
        pieces.extend_from_slice(&buf);
    }
    assert_eq!(pieces, whole);
}

#[test]
fn hasher_reports_length_and_sha256() {
    let mut h = StreamHasher::new();
    h.update(b"a");
    h.update(b"bc");
    let d = h.finish();
    assert_eq!(d.bytes, 3);
    assert_eq!(
        d.sha256,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}
