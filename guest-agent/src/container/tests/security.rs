//! The process and security fields applied to real processes: capabilities,
//! noNewPrivileges, rlimits, oomScoreAdj, seccomp, domainname, sysctl.

use super::*;

/// What a container's shell prints about itself.
const REPORT: &str = "while read l; do case \"$l\" in \
     CapBnd*|CapPrm*|CapEff*|NoNewPrivs*) echo \"$l\";; esac; done < /proc/self/status; \
     echo nofile=$(ulimit -n); echo oom=$(cat /proc/self/oom_score_adj); \
     echo mkdir=$(busybox mkdir /tmp/denied 2>&1); echo hi > /tmp/allowed; \
     echo write=$(cat /tmp/allowed)";

const DENIED: &str = "mkdir=mkdir: can't create directory '/tmp/denied': Operation not permitted";

fn seccomp_denying_mkdir() -> Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    })
}

#[test]
fn the_fields_reach_the_first_process() {
    let ctx = agent();
    let rootfs = Rootfs::new(true);
    let mut client = Client::new(&ctx);
    let script = format!(
        "{REPORT}; echo domain=$(cat /proc/sys/kernel/domainname); \
         echo shmmax=$(cat /proc/sys/kernel/shmmax)"
    );
    let mut spec = spec(&["sh", "-c", &script]);
    spec["domainname"] = json!("husk.example");
    spec["process"]["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NOT_A_CAP"],
        "permitted": ["CAP_CHOWN", "CAP_KILL"],
        "effective": ["CAP_CHOWN", "CAP_KILL"]
    });
    spec["process"]["noNewPrivileges"] = json!(true);
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1234, "hard": 2048}]);
    spec["process"]["oomScoreAdj"] = json!(123);
    // /proc/sys read-only in the container, as engines ask: the sysctl is written
    // all the same (before the read-only paths, as runc does).
    spec["mounts"] = json!([{"destination": "/proc", "type": "proc", "source": "proc"}]);
    spec["linux"] = json!({
        "namespaces": [{"type": "mount"}, {"type": "ipc"}],
        "sysctl": {"kernel.shmmax": "12345678"},
        "readonlyPaths": ["/proc/sys"],
        "seccomp": seccomp_denying_mkdir()
    });
    client.create("sec", spec, rootfs.path()).unwrap();
    let stdout = stream(&ctx, "sec", None, StdioStream::Stdout).unwrap();
    client.start("sec").unwrap();
    let out = read_all(stdout);
    assert_eq!(client.wait("sec", None).unwrap(), exited(0), "{out}");
    // Root's execve would raise the permitted and effective sets to the bounding
    // set; noNewPrivileges keeps them to what the process had.
    for expected in [
        "CapPrm:\t0000000000000021",
        "CapEff:\t0000000000000021",
        "CapBnd:\t0000000000000421",
        "NoNewPrivs:\t1",
        "nofile=1234",
        "oom=123",
        DENIED,
        "write=hi",
        "domain=husk.example",
        "shmmax=12345678",
    ] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
}

#[test]
fn an_exec_gets_the_container_filter_and_its_own_fields() {
    let ctx = agent();
    let rootfs = Rootfs::new(true);
    let mut client = Client::new(&ctx);
    let mut spec = spec(&["sleep", "1000"]);
    spec["linux"] = json!({"seccomp": seccomp_denying_mkdir()});
    client.create("sec-exec", spec, rootfs.path()).unwrap();
    client.start("sec-exec").unwrap();
    // Without noNewPrivileges the filter goes in while the process is still root.
    let process = json!({
        "args": ["sh", "-c", REPORT], "cwd": "/",
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 99, "hard": 99}]
    });
    client.exec("sec-exec", "e1", process).unwrap();
    let stdout = stream(&ctx, "sec-exec", Some("e1"), StdioStream::Stdout).unwrap();
    let out = read_all(stdout);
    assert_eq!(
        client.wait("sec-exec", Some("e1")).unwrap(),
        exited(0),
        "{out}"
    );
    for expected in ["NoNewPrivs:\t0", "nofile=99", DENIED, "write=hi"] {
        assert!(out.contains(expected), "{expected:?} not in:\n{out}");
    }
    client.signal("sec-exec", None, 9).unwrap();
    client.wait("sec-exec", None).unwrap();
}

#[test]
fn a_failing_step_names_its_field() {
    let ctx = agent();
    let rootfs = Rootfs::new(true);
    let mut client = Client::new(&ctx);
    // An effective capability outside the permitted set: capset refuses it.
    let mut spec = spec(&["true"]);
    spec["process"]["capabilities"] = json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]});
    let err = client.create("bad-caps", spec, rootfs.path()).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument, "{err:?}");
    assert!(
        err.message.contains("process.capabilities"),
        "{}",
        err.message
    );
    // A sysctl that does not exist.
    let mut spec = super::spec(&["true"]);
    spec["linux"] = json!({"sysctl": {"kernel.no_such_knob": "1"}});
    let err = client
        .create("bad-sysctl", spec, rootfs.path())
        .unwrap_err();
    assert!(
        err.message.contains("kernel.no_such_knob"),
        "{}",
        err.message
    );
    // Refused before anything is forked.
    let mut spec = super::spec(&["true"]);
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    let err = client
        .create("bad-rlimit", spec, rootfs.path())
        .unwrap_err();
    assert!(err.message.contains("RLIMIT_BOGUS"), "{}", err.message);
}
