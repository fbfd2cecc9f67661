//! Every flag form podman (through conmon), containerd's runc shim and people use.

use super::*;

fn parse(argv: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("husk").chain(argv.iter().copied()))
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

#[test]
fn conmon_create() {
    let cli = parse(&[
        "--root",
        "/run/x",
        "--log",
        "/p/log",
        "--log-format",
        "json",
        "--systemd-cgroup",
        "create",
        "--bundle",
        "B",
        "--pid-file",
        "P",
        "--console-socket",
        "S",
        "ID",
    ]);
    assert_eq!(cli.global.root, PathBuf::from("/run/x"));
    assert_eq!(cli.global.log, Some(PathBuf::from("/p/log")));
    assert_eq!(cli.global.log_format, LogFormat::Json);
    assert!(cli.global.systemd_cgroup);
    let Command::Create(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.id, "ID");
    assert_eq!(c.opts.bundle, PathBuf::from("B"));
    assert_eq!(c.opts.pid_file, Some(PathBuf::from("P")));
    assert_eq!(c.opts.console_socket, Some(PathBuf::from("S")));
    assert_eq!(c.opts.preserve_fds, 0);
}

#[test]
fn create_short_and_equals_forms() {
    let cli = parse(&[
        "create",
        "-b=/b",
        "--pid-file=/p",
        "--preserve-fds",
        "2",
        "--no-pivot",
        "--no-new-keyring",
        "c",
    ]);
    let Command::Create(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.opts.bundle, PathBuf::from("/b"));
    assert_eq!(c.opts.preserve_fds, 2);
    assert!(c.opts.no_pivot && c.opts.no_new_keyring);
    let cli = parse(&["create", "c"]);
    let Command::Create(c) = cli.command else {
        panic!()
    };
    assert_eq!(c.opts.bundle, PathBuf::from("."));
    assert_eq!(cli.global.root, PathBuf::from(DEFAULT_ROOT));
    assert_eq!(cli.global.log_format, LogFormat::Text);
}

#[test]
fn global_flags_after_the_command() {
    let cli = parse(&["state", "c", "--root", "/r", "--debug"]);
    assert_eq!(cli.global.root, PathBuf::from("/r"));
    assert!(cli.global.debug);
}

#[test]
fn kill_forms() {
    for (argv, sig, all) in [
        (&["kill", "c"][..], "SIGTERM", false),
        (&["kill", "c", "9"][..], "9", false),
        (&["kill", "c", "SIGKILL"][..], "SIGKILL", false),
        (&["kill", "--all", "c", "KILL"][..], "KILL", true),
        (&["kill", "-a", "c", "TERM"][..], "TERM", true),
    ] {
        let Command::Kill(k) = parse(argv).command else {
            panic!()
        };
        assert_eq!(
            (k.id.as_str(), k.signal.as_str(), k.all),
            ("c", sig, all),
            "{argv:?}"
        );
    }
}

#[test]
fn delete_and_list_forms() {
    let Command::Delete(d) = parse(&["delete", "--force", "c"]).command else {
        panic!()
    };
    assert!(d.force);
    let Command::Delete(d) = parse(&["delete", "-f", "c"]).command else {
        panic!()
    };
    assert!(d.force && d.id == "c");
    let Command::List(l) = parse(&["list", "-f", "json", "-q"]).command else {
        panic!()
    };
    assert_eq!((l.format, l.quiet), (OutputFormat::Json, true));
    let Command::List(l) = parse(&["list", "--format", "table"]).command else {
        panic!()
    };
    assert_eq!(l.format, OutputFormat::Table);
}

#[test]
fn run_forms() {
    let Command::Run(r) =
        parse(&["run", "-d", "--keep", "-b", "/b", "--pid-file", "/p", "c"]).command
    else {
        panic!()
    };
    assert!(r.detach && r.keep);
    assert_eq!(r.opts.bundle, PathBuf::from("/b"));
    assert_eq!(r.id, "c");
}

#[test]
fn exec_forms() {
    // podman/conmon: exec with a process file, detached, pid file, console socket.
    let Command::Exec(e) = parse(&[
        "exec",
        "--pid-file",
        "/p",
        "--process",
        "/proc.json",
        "--detach",
        "--tty",
        "--console-socket",
        "/s",
        "--preserve-fds",
        "1",
        "c",
    ])
    .command
    else {
        panic!()
    };
    assert_eq!(e.process, Some(PathBuf::from("/proc.json")));
    assert!(e.detach && e.tty);
    assert_eq!(e.preserve_fds, 1);
    assert!(e.command.is_empty());
    // The command's own flags stay its own.
    let Command::Exec(e) =
        parse(&["exec", "-e", "A=1", "-u", "1:2", "c", "ls", "-l", "--all"]).command
    else {
        panic!()
    };
    assert_eq!(e.command, ["ls", "-l", "--all"]);
    assert_eq!(e.env, ["A=1"]);
    assert_eq!(e.user.as_deref(), Some("1:2"));
}

#[test]
fn ps_spec_check_and_unsupported() {
    let Command::Ps(p) = parse(&["ps", "-f", "json", "c"]).command else {
        panic!()
    };
    assert_eq!(p.format, OutputFormat::Json);
    let Command::Ps(p) = parse(&["ps", "c", "-ef"]).command else {
        panic!()
    };
    assert_eq!(p.ps_args, ["-ef"]);
    let Command::Spec(s) = parse(&["spec", "-b", "/b"]).command else {
        panic!()
    };
    assert_eq!(s.bundle, PathBuf::from("/b"));
    let Command::Check(c) = parse(&["check", "--quiet"]).command else {
        panic!()
    };
    assert!(c.quiet);
    assert!(matches!(parse(&["features"]).command, Command::Features));
    assert!(matches!(parse(&["pause", "c"]).command, Command::Pause(_)));
    assert!(matches!(
        parse(&["resume", "c"]).command,
        Command::Resume(_)
    ));
    assert!(matches!(
        parse(&["events", "--stats", "c"]).command,
        Command::Events(_)
    ));
    assert!(matches!(
        parse(&["update", "--memory", "1g", "c"]).command,
        Command::Update(_)
    ));
}

#[test]
fn rootless_and_criu_are_accepted() {
    assert_eq!(
        parse(&["--rootless", "false", "list"])
            .global
            .rootless
            .as_deref(),
        Some("false")
    );
    assert_eq!(
        parse(&["--rootless=true", "list"])
            .global
            .rootless
            .as_deref(),
        Some("true")
    );
    assert!(parse(&["--criu", "/usr/sbin/criu", "list"])
        .global
        .criu
        .is_some());
}

#[test]
fn bad_command_lines_are_errors() {
    for argv in [
        &["create"][..],
        &["kill"][..],
        &["list", "-f", "yaml"][..],
        &["--log-format", "xml", "list"][..],
        &["frobnicate"][..],
    ] {
        assert!(
            Cli::try_parse_from(std::iter::once("husk").chain(argv.iter().copied())).is_err(),
            "{argv:?}"
        );
    }
}
