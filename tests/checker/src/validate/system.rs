//! `hostname`, `namespaces`, `sysctl`, `cgroups` and `seccomp`.

use super::{errno, proc_status, Report};
use serde_json::Value;
use std::ffi::CStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub fn hostname(cfg: &Value, r: &mut Report) {
    // SAFETY: an all-zero utsname is a valid value for uname to overwrite.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is a valid utsname.
    if unsafe { libc::uname(&mut uts) } != 0 {
        r.fail("hostname", errno());
        return;
    }
    let text = |f: &[libc::c_char]| {
        // SAFETY: uname NUL-terminates its fields, which live as long as `uts`.
        let field = unsafe { CStr::from_ptr(f.as_ptr()) };
        field.to_string_lossy().into_owned()
    };
    for (key, got) in [
        ("hostname", text(&uts.nodename)),
        ("domainname", text(&uts.domainname)),
    ] {
        match cfg[key].as_str() {
            Some(want) => r.expect_eq(key, want.to_string(), got),
            None => r.skip(key, "not in the config"),
        }
    }
}

/// The spec's namespace types and their `/proc/self/ns` names.
const NAMESPACES: &[(&str, &str)] = &[
    ("pid", "pid"),
    ("network", "net"),
    ("mount", "mnt"),
    ("ipc", "ipc"),
    ("uts", "uts"),
    ("user", "user"),
    ("cgroup", "cgroup"),
];

pub fn namespaces(cfg: &Value, host_ns: &[String], r: &mut Report) {
    let wanted: Vec<&str> = cfg["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["path"].is_null())
        .filter_map(|n| n["type"].as_str())
        .collect();
    for (kind, proc_name) in NAMESPACES {
        let name = format!("linux.namespaces.{kind}");
        if !wanted.contains(kind) {
            r.skip(&name, "not asked for");
            continue;
        }
        let host = host_ns
            .iter()
            .filter_map(|h| h.split_once('='))
            .find(|(k, _)| k == proc_name)
            .and_then(|(_, v)| v.parse::<u64>().ok());
        let mine = std::fs::metadata(format!("/proc/self/ns/{proc_name}")).map(|m| m.ino());
        match (host, mine) {
            (_, Err(e)) => r.fail(&name, format!("/proc/self/ns/{proc_name}: {e}")),
            (None, Ok(_)) => r.skip(&name, "the host's inode was not given"),
            (Some(h), Ok(m)) if h == m => r.fail(
                &name,
                "the same inode as the runtime's: the kernel's initial namespace",
            ),
            (Some(_), Ok(_)) => r.ok(&name),
        }
    }
    if wanted.contains(&"pid") {
        r.expect_eq("linux.namespaces.pid.init", 1, std::process::id());
    }
    if wanted.contains(&"network") {
        let ifaces = std::fs::read_to_string("/proc/net/dev").map(|t| {
            t.lines()
                .skip(2)
                .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
                .collect::<Vec<_>>()
        });
        r.expect_result(
            "linux.namespaces.network.loopback-only",
            vec!["lo".to_string()],
            ifaces,
        );
    }
}

pub fn sysctl(cfg: &Value, r: &mut Report) {
    let Some(map) = cfg["linux"]["sysctl"].as_object() else {
        r.skip("linux.sysctl", "none in the config");
        return;
    };
    for (key, want) in map {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        r.expect_result(
            &format!("linux.sysctl[{key}]"),
            want.as_str().unwrap_or("").to_string(),
            std::fs::read_to_string(&path).map(|s| s.trim().replace('\t', " ")),
        );
    }
}

/// The container's cgroup v2 directory as mounted in it.
fn cgroup_dir() -> Result<PathBuf, String> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.controllers").exists() {
        return Err("no cgroup v2 at /sys/fs/cgroup".into());
    }
    let text = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 line in /proc/self/cgroup")?;
    let dir = root.join(rel.trim_start_matches('/'));
    // Without a cgroup namespace the path is the host's; the mount may be the
    // container's own cgroup already.
    Ok(if dir.exists() {
        dir
    } else {
        root.to_path_buf()
    })
}

pub fn cgroups(cfg: &Value, r: &mut Report) {
    let res = &cfg["linux"]["resources"];
    let dir = match cgroup_dir() {
        Ok(d) => d,
        Err(e) => {
            r.fail("linux.resources", e);
            return;
        }
    };
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file))
            .map(|s| s.trim().to_string())
            .map_err(|e| format!("{file}: {e}"))
    };
    let mut expect = |name: &str, want: Option<String>, file: &str| match want {
        None => r.skip(name, "not in the config"),
        Some(want) => r.expect_result(name, want, read(file)),
    };
    let num = |v: &Value| v.as_i64().map(|n| n.to_string());
    expect(
        "linux.resources.memory.limit",
        num(&res["memory"]["limit"]),
        "memory.max",
    );
    expect(
        "linux.resources.memory.reservation",
        num(&res["memory"]["reservation"]),
        "memory.low",
    );
    let cpu = &res["cpu"];
    expect(
        "linux.resources.cpu.quota",
        cpu["quota"]
            .as_i64()
            .map(|q| format!("{q} {}", cpu["period"].as_u64().unwrap_or(100_000))),
        "cpu.max",
    );
    // runc's conversion of shares (2..262144) to a weight (1..10000).
    expect(
        "linux.resources.cpu.shares",
        cpu["shares"]
            .as_u64()
            .map(|s| (1 + (s.saturating_sub(2) * 9999) / 262_142).to_string()),
        "cpu.weight",
    );
    expect(
        "linux.resources.cpu.cpus",
        cpu["cpus"].as_str().map(str::to_string),
        "cpuset.cpus",
    );
    expect(
        "linux.resources.cpu.mems",
        cpu["mems"].as_str().map(str::to_string),
        "cpuset.mems",
    );
    expect(
        "linux.resources.pids.limit",
        num(&res["pids"]["limit"]),
        "pids.max",
    );
    match res["blockIO"]["weight"].as_u64() {
        None => r.skip("linux.resources.blockIO.weight", "not in the config"),
        Some(w) if dir.join("io.bfq.weight").exists() => r.expect_result(
            "linux.resources.blockIO.weight",
            format!("default {w}"),
            read("io.bfq.weight"),
        ),
        Some(w) if dir.join("io.weight").exists() => r.expect_result(
            "linux.resources.blockIO.weight",
            format!("default {}", 1 + (w.saturating_sub(10) * 9999) / 990),
            read("io.weight"),
        ),
        Some(_) => r.skip(
            "linux.resources.blockIO.weight",
            "no io.weight or io.bfq.weight in this cgroup (no io scheduler)",
        ),
    }
}

pub fn seccomp(cfg: &Value, r: &mut Report) {
    let sc = &cfg["linux"]["seccomp"];
    if sc.is_null() {
        r.skip("linux.seccomp", "none in the config");
        return;
    }
    r.expect_result(
        "linux.seccomp.filter",
        "2".to_string(),
        proc_status("Seccomp"),
    );
    // The probe: mkdir, which the suite's profile answers with errnoRet.
    let rule = sc["syscalls"].as_array().into_iter().flatten().find(|s| {
        s["names"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n == "mkdir" || n == "mkdirat"))
    });
    let Some(rule) = rule else {
        r.skip("linux.seccomp.errno", "no rule for mkdir in the config");
        return;
    };
    let want = rule["errnoRet"].as_i64().unwrap_or(libc::EPERM as i64) as i32;
    let probe = Path::new("/tmp/conformance-seccomp-probe");
    match std::fs::create_dir(probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(probe);
            r.fail("linux.seccomp.errno", "mkdir was allowed");
        }
        Err(e) => r.expect_eq("linux.seccomp.errno", Some(want), e.raw_os_error()),
    }
    // Everything else is allowed (the default action): a harmless call works.
    r.expect_eq(
        "linux.seccomp.default-allow",
        true,
        std::fs::metadata("/").is_ok(),
    );
}
