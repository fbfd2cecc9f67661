use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn exec_args(argv: &[&str]) -> ExecArgs {
    let cli = Cli::try_parse_from(["husk", "exec"].iter().chain(argv)).unwrap();
    match cli.command {
        Command::Exec(a) => a,
        other => panic!("parsed {other:?}"),
    }
}

fn base() -> Value {
    json!({
        "terminal": true,
        "consoleSize": {"height": 24, "width": 80},
        "user": {"uid": 1000, "gid": 1000},
        "args": ["sh"],
        "env": ["PATH=/bin", "TERM=xterm", "A=1"],
        "cwd": "/home",
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
        "noNewPrivileges": false
    })
}

#[test]
fn inherits_the_containers_process() {
    let p = build_process(base(), &exec_args(&["c1", "ls", "-l", "/"])).unwrap();
    assert_eq!(p["args"], json!(["ls", "-l", "/"]));
    assert_eq!(p["env"], json!(["PATH=/bin", "TERM=xterm", "A=1"]));
    assert_eq!(p["cwd"], "/home");
    assert_eq!(p["user"], json!({"uid": 1000, "gid": 1000}));
    // The terminal is exec's own choice.
    assert_eq!(p["terminal"], false);
    assert!(p.get("consoleSize").is_none());
}

#[test]
fn flags_override_and_extend() {
    let args = exec_args(&[
        "-t",
        "--cwd",
        "/tmp",
        "-e",
        "A=2",
        "--env",
        "B=3",
        "-u",
        "7:8",
        "-g",
        "10",
        "-g",
        "11",
        "--cap",
        "NET_RAW",
        "--cap",
        "CAP_KILL",
        "--no-new-privs",
        "--process-label",
        "l",
        "--apparmor",
        "prof",
        "c1",
        "sh",
        "-c",
        "echo -n hi",
    ]);
    let p = build_process(base(), &args).unwrap();
    assert_eq!(p["args"], json!(["sh", "-c", "echo -n hi"]));
    assert_eq!(p["terminal"], true);
    assert_eq!(p["cwd"], "/tmp");
    assert_eq!(p["env"], json!(["PATH=/bin", "TERM=xterm", "A=2", "B=3"]));
    assert_eq!(
        p["user"],
        json!({"uid": 7, "gid": 8, "additionalGids": [10, 11]})
    );
    assert_eq!(
        p["capabilities"]["bounding"],
        json!(["CAP_KILL", "CAP_NET_RAW"])
    );
    assert_eq!(
        p["capabilities"]["ambient"],
        json!(["CAP_NET_RAW", "CAP_KILL"])
    );
    assert_eq!(p["noNewPrivileges"], true);
    assert_eq!(p["selinuxLabel"], "l");
    assert_eq!(p["apparmorProfile"], "prof");
}

#[test]
fn defaults_without_a_base_process() {
    let p = build_process(Value::Null, &exec_args(&["c1", "-u", "5", "true"])).unwrap();
    assert_eq!(p["cwd"], "/");
    assert_eq!(p["user"], json!({"uid": 5, "gid": 0}));
    assert_eq!(p["env"], json!([]));
}

#[test]
fn bad_input_is_an_error() {
    let cases: [&[&str]; 5] = [
        &["c1"],
        &["--cwd", "rel", "c1", "ls"],
        &["-e", "NOEQUALS", "c1", "ls"],
        &["-u", "root", "c1", "ls"],
        &["-u", "1:x", "c1", "ls"],
    ];
    for argv in cases {
        let err = build_process(base(), &exec_args(argv)).unwrap_err();
        assert!(
            matches!(err, RuntimeError::InvalidArgument(_)),
            "{argv:?}: {err}"
        );
    }
}

#[test]
fn process_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.json");
    std::fs::write(&path, r#"{"args":["ls"],"cwd":"/","terminal":true}"#).unwrap();
    assert_eq!(read_process_file(&path).unwrap()["args"], json!(["ls"]));
    std::fs::write(&path, r#"{"cwd":"/"}"#).unwrap();
    assert!(read_process_file(&path).is_err());
    std::fs::write(&path, "{\n oops").unwrap();
    let msg = husk_protocol::error_chain(&read_process_file(&path).unwrap_err());
    assert!(msg.contains("p.json") && msg.contains("line 2"), "{msg}");
}
