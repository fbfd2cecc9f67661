//! Requests that fail, with the error each gives.

use super::*;

#[test]
fn unknown_containers_and_processes_are_not_found() {
    let ctx = agent();
    let mut client = Client::new(&ctx);
    let errors = [
        client.start("ghost").unwrap_err(),
        client.signal("ghost", None, 9).unwrap_err(),
        client.wait("ghost", None).unwrap_err(),
        client
            .exec("ghost", "e", json!({"args": ["true"]}))
            .unwrap_err(),
        client
            .ask(RequestBody::Stats {
                container_id: "ghost".into(),
            })
            .unwrap_err(),
        stream(&ctx, "ghost", None, StdioStream::Stdout).unwrap_err(),
    ];
    for err in errors {
        assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
        assert!(err.message.contains("\"ghost\""), "{}", err.message);
    }
}

#[test]
fn invalid_creates_are_refused() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    let err = client
        .create("", spec(&["true"]), rootfs.path())
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let err = client.create("c", spec(&[]), rootfs.path()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(
        err.message.contains("process.args is empty"),
        "{}",
        err.message
    );
    let missing = format!("{}/nowhere", rootfs.path());
    let err = client.create("c", spec(&["true"]), &missing).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains(&missing), "{}", err.message);
    let mut bad_cwd = spec(&["true"]);
    bad_cwd["process"]["cwd"] = json!("/nope");
    let err = client.create("c", bad_cwd, rootfs.path()).unwrap_err();
    assert_eq!(
        err.message,
        "chdir to cwd \"/nope\": No such file or directory"
    );
    // None of these took the ID.
    client.create("c", spec(&["true"]), rootfs.path()).unwrap();
    let err = client
        .create("c", spec(&["true"]), rootfs.path())
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::AlreadyExists, "{err:?}");
    client.start("c").unwrap();
    assert_eq!(client.wait("c", None).unwrap(), exited(0));
}

#[test]
fn a_missing_program_is_named_at_start() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    client
        .create("abs", spec(&["/bin/nope"]), rootfs.path())
        .unwrap();
    let err = client.start("abs").unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert_eq!(err.message, "exec \"/bin/nope\": No such file or directory");
    assert_eq!(client.wait("abs", None).unwrap(), exited(127));
    let mut searched = spec(&["nope"]);
    searched["process"]["env"] = json!(["PATH=/usr/bin:/bin"]);
    client.create("path", searched, rootfs.path()).unwrap();
    let err = client.start("path").unwrap_err();
    assert_eq!(
        err.message,
        "exec \"nope\": No such file or directory (searched PATH \"/usr/bin:/bin\")"
    );
    // A file that is not executable.
    client
        .create("noexec", spec(&["/marker"]), rootfs.path())
        .unwrap();
    let err = client.start("noexec").unwrap_err();
    assert_eq!(err.message, "exec \"/marker\": Permission denied");
}

#[test]
fn streams_are_attached_once_and_of_the_right_kind() {
    let ctx = agent();
    let rootfs = Rootfs::new(false);
    let mut client = Client::new(&ctx);
    client
        .create("s", spec(&["echo", "once"]), rootfs.path())
        .unwrap();
    let stdout = stream(&ctx, "s", None, StdioStream::Stdout).unwrap();
    let err = stream(&ctx, "s", None, StdioStream::Stdout).unwrap_err();
    assert_eq!(err.code, ErrorCode::FailedPrecondition, "{err:?}");
    assert!(err.message.contains("already attached"), "{}", err.message);
    let err = stream(&ctx, "s", None, StdioStream::Pty).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err:?}");
    let err = stream(&ctx, "s", Some("nope"), StdioStream::Stdout).unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound, "{err:?}");
    let resize = RequestBody::ResizeTty {
        container_id: "s".into(),
        exec_id: None,
        rows: 1,
        cols: 1,
    };
    let err = client.ask(resize).unwrap_err();
    assert_eq!(err.code, ErrorCode::FailedPrecondition, "{err:?}");
    client.start("s").unwrap();
    assert_eq!(read_all(stdout), "once\n");
    assert_eq!(client.wait("s", None).unwrap(), exited(0));
}

#[test]
fn a_stream_of_another_protocol_version_is_refused() {
    let ctx = agent();
    let (mut stream, agent) = UnixStream::pair().unwrap();
    let handler = {
        let ctx = Arc::clone(&ctx);
        std::thread::spawn(move || handle_connection(agent, &ctx))
    };
    let hello = StreamHelloFrame::StreamHello(StreamHello {
        version: PROTOCOL_VERSION + 1,
        container_id: "c".into(),
        exec_id: None,
        stream: StdioStream::Stdout,
    });
    write_frame(&mut stream, &hello).unwrap();
    let reply: StreamHelloReply = read_frame(&mut stream).unwrap();
    assert!(
        matches!(&reply, StreamHelloReply::Refused(e) if e.code == ErrorCode::VersionMismatch),
        "{reply:?}"
    );
    handler.join().unwrap().unwrap();
}
