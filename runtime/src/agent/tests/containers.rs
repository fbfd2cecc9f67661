//! The container requests and stdio streams: wire forms against fake agents.

use super::*;
use serde_json::json;

/// A fake that answers each request with `answer(body)` until the client leaves.
fn answering(answer: fn(RequestBody) -> Result<ResponseBody, AgentError>) -> Fake {
    Fake::start(move |mut stream| {
        handshake(&mut stream);
        while let Ok(request) = read_frame::<_, Request>(&mut stream) {
            let response = Response {
                id: request.id,
                result: answer(request.body),
            };
            write_frame(&mut stream, &response).unwrap();
        }
    })
}

#[test]
fn container_requests_are_sent_and_answers_typed() {
    let fake = answering(|body| {
        Ok(match body {
            RequestBody::CreateContainer {
                container_id,
                rootfs,
                bundle_spec,
            } => {
                assert_eq!((container_id.as_str(), rootfs.as_str()), ("c1", "/r"));
                assert_eq!(bundle_spec["process"]["args"][0], "sh");
                ResponseBody::Created { pid: 10 }
            }
            RequestBody::StartContainer { .. } => ResponseBody::Started { pid: 10 },
            RequestBody::Exec { exec_id, .. } => {
                assert_eq!(exec_id, "e1");
                ResponseBody::Started { pid: 11 }
            }
            RequestBody::Signal {
                exec_id, signal, ..
            } => {
                assert_eq!((exec_id.as_deref(), signal), (Some("e1"), 15));
                ResponseBody::Done
            }
            RequestBody::Wait { exec_id: None, .. } => ResponseBody::Exited(ExitStatus {
                exit_code: Some(3),
                signal: None,
            }),
            RequestBody::ResizeTty { rows, cols, .. } => {
                assert_eq!((rows, cols), (24, 80));
                ResponseBody::Done
            }
            RequestBody::CloseStdin { .. } => ResponseBody::Done,
            RequestBody::Stats { .. } => ResponseBody::Stats(ContainerStats {
                cpu_usage_ns: 1,
                memory_bytes: 2,
                pids: 3,
                cgroup: None,
            }),
            RequestBody::Pause { container_id } | RequestBody::Resume { container_id } => {
                assert_eq!(container_id, "c1");
                ResponseBody::Done
            }
            RequestBody::Update { resources, .. } => {
                assert_eq!(resources["memory"]["limit"], 1024);
                ResponseBody::Done
            }
            RequestBody::OomEvent { timeout_ms } => ResponseBody::OomEvent {
                container_id: (timeout_ms == 1000).then(|| "c1".to_owned()),
            },
            other => return Err(AgentError::new(ErrorCode::Unsupported, other.name())),
        })
    });
    let mut client = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap();
    let spec = json!({"process": {"args": ["sh"]}});
    assert_eq!(client.create_container("c1", spec, "/r").unwrap(), 10);
    assert_eq!(client.start_container("c1").unwrap(), 10);
    assert_eq!(
        client.exec("c1", "e1", json!({"args": ["ls"]})).unwrap(),
        11
    );
    client.signal("c1", Some("e1"), 15).unwrap();
    client.resize_tty("c1", None, 24, 80).unwrap();
    client.close_stdin("c1", None).unwrap();
    assert_eq!(client.stats("c1").unwrap().pids, 3);
    client.pause("c1").unwrap();
    client.resume("c1").unwrap();
    client
        .update("c1", json!({"memory": {"limit": 1024}}))
        .unwrap();
    assert_eq!(
        client.oom_event(Duration::from_secs(1)).unwrap().as_deref(),
        Some("c1")
    );
    assert_eq!(client.oom_event(Duration::from_millis(10)).unwrap(), None);
    let status = client.wait("c1", None, None).unwrap();
    assert_eq!(status.exit_code, Some(3));
    drop(client);
    fake.join();
}

#[test]
fn wait_outlasts_the_request_timeout_but_not_its_deadline() {
    let (release, wait) = mpsc::channel::<()>();
    let fake = Fake::start(move |mut stream| {
        handshake(&mut stream);
        // The first wait is answered after more than the request timeout.
        let request: Request = read_frame(&mut stream).unwrap();
        std::thread::sleep(short().request * 3);
        let exited = Response {
            id: request.id,
            result: Ok(ResponseBody::Exited(ExitStatus {
                exit_code: None,
                signal: Some(9),
            })),
        };
        write_frame(&mut stream, &exited).unwrap();
        // The second is never answered.
        let _: Request = read_frame(&mut stream).unwrap();
        let _ = wait.recv();
    });
    let mut client = AgentClient::connect(&fake.path, AGENT_PORT, short()).unwrap();
    let status = client.wait("c1", None, None).unwrap();
    assert_eq!(status.signal, Some(9));
    let deadline = Instant::now() + Duration::from_millis(100);
    let err = client.wait("c1", Some("e1"), Some(deadline)).unwrap_err();
    assert!(
        matches!(err, ClientError::Timeout { during: "wait", .. }),
        "{err}"
    );
    assert!(Instant::now() >= deadline);
    assert!(matches!(client.stats("c1"), Err(ClientError::Broken)));
    drop(release);
    fake.join();
}

#[test]
fn a_stream_hello_is_sent_and_a_refusal_reported() {
    let fake = Fake::start(|mut stream| {
        assert_eq!(read_connect(&mut stream), AGENT_PORT);
        stream.write_all(b"OK 1073741824\n").unwrap();
        let StreamHelloFrame::StreamHello(hello) = read_frame(&mut stream).unwrap();
        assert_eq!(hello.version, PROTOCOL_VERSION);
        assert_eq!(hello.exec_id.as_deref(), Some("e1"));
        assert_eq!(hello.stream, StdioStream::Stderr);
        write_frame(&mut stream, &StreamHelloReply::Ok).unwrap();
        stream.write_all(b"raw bytes").unwrap();
    });
    let target = StreamTarget {
        container_id: "c1",
        exec_id: Some("e1"),
        stream: StdioStream::Stderr,
    };
    let mut stream = open_stream(&fake.path, AGENT_PORT, target, short().connect).unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).unwrap();
    assert_eq!(got, "raw bytes");
    fake.join();

    let fake = Fake::start(|mut stream| {
        read_connect(&mut stream);
        stream.write_all(b"OK 1073741824\n").unwrap();
        let _: StreamHelloFrame = read_frame(&mut stream).unwrap();
        let refused = AgentError::new(ErrorCode::NotFound, "no container \"c1\"");
        write_frame(&mut stream, &StreamHelloReply::Refused(refused)).unwrap();
    });
    let err = open_stream(&fake.path, AGENT_PORT, target, short().connect).unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused(e) if e.code == ErrorCode::NotFound),
        "{err}"
    );
    fake.join();
}
