use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

fn args(argv: &[&str]) -> UpdateArgs {
    let cli = Cli::try_parse_from(["husk", "update"].iter().chain(argv).copied())
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    match cli.command {
        Command::Update(a) => a,
        other => panic!("{other:?}"),
    }
}

#[test]
fn runc_flags_become_linux_resources() {
    let a = args(&[
        "--memory",
        "32m",
        "--memory-reservation",
        "16M",
        "--memory-swap",
        "-1",
        "--cpu-share",
        "512",
        "--cpu-quota",
        "50000",
        "--cpu-period",
        "100000",
        "--cpuset-cpus",
        "0-1",
        "--cpuset-mems",
        "0",
        "--pids-limit",
        "64",
        "c1",
    ]);
    assert_eq!(a.id, "c1");
    assert_eq!(
        resources(&a).unwrap(),
        json!({
            "memory": {"limit": 33554432, "reservation": 16777216, "swap": -1},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 64}
        })
    );
    // The plural spelling, and negative values as flag values.
    let a = args(&[
        "--cpu-shares",
        "2",
        "--cpu-quota",
        "-1",
        "--pids-limit",
        "-1",
        "c",
    ]);
    assert_eq!(
        resources(&a).unwrap(),
        json!({"cpu": {"shares": 2, "quota": -1}, "pids": {"limit": -1}})
    );
    assert_eq!(resources(&args(&["c"])).unwrap(), json!({}));
}

#[test]
fn sizes_take_runc_units() {
    for (text, n) in [
        ("1024", 1024),
        ("1k", 1024),
        ("1KiB", 1024),
        ("2mb", 2 << 20),
        ("1.5g", 3 << 29),
        ("1T", 1 << 40),
        ("-1", -1),
    ] {
        assert_eq!(parse_bytes("--memory", text).unwrap(), n, "{text}");
    }
    for bad in ["", "m", "12q", "-5", "1e400", "99999999999t"] {
        let err = parse_bytes("--memory", bad).unwrap_err().to_string();
        assert!(err.starts_with("--memory: invalid size"), "{bad}: {err}");
    }
}

#[test]
fn unsupported_flags_are_named() {
    for (flag, value) in [
        ("--blkio-weight", "10"),
        ("--l3-cache-schema", "L3:0=f"),
        ("--mem-bw-schema", "MB:0=50"),
        ("--cpu-rt-runtime", "5"),
        ("--kernel-memory", "1m"),
    ] {
        let err = resources(&args(&[flag, value, "c"])).unwrap_err();
        assert!(matches!(err, RuntimeError::NotSupported(_)), "{err}");
        assert!(err.to_string().contains(flag), "{err}");
    }
}

#[test]
fn a_resources_file_is_read_and_excludes_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("r.json");
    std::fs::write(&file, r#"{"memory": {"limit": 1048576}}"#).unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(
        resources(&args(&["-r", path, "c"])).unwrap(),
        json!({"memory": {"limit": 1048576}})
    );
    let err = resources(&args(&["-r", path, "--memory", "1m", "c"])).unwrap_err();
    assert!(err.to_string().contains("either --resources or"), "{err}");
    std::fs::write(&file, "[1]").unwrap();
    let err = resources(&args(&["--resources", path, "c"])).unwrap_err();
    assert!(err.to_string().contains("must be a JSON object"), "{err}");
    let err = resources(&args(&["-r", "/nonexistent/r.json", "c"])).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/r.json"), "{err}");
}
