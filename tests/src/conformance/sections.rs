//! The sections checked from inside the container: a bundle per section whose
//! process is `husk-checker validate SECTION`, and its lines collected.

use super::{parse_lines, Check, Options, Runtime};
use crate::bundle::Bundle;
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// Where the checker and the config copy sit in the container.
const IN_CONTAINER: &str = "/conformance";
/// Capabilities of the root process sections (a few, so that a runtime granting
/// its defaults shows).
const ROOT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_AUDIT_WRITE",
    "CAP_SETUID",
];

/// A spec like `runc spec`'s default: the usual mounts, namespaces, masked and
/// readonly paths, running `args`.
pub fn base_spec(args: &[&str]) -> Value {
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/bin"],
            "cwd": "/",
            "capabilities": {
                "bounding": ROOT_CAPS, "effective": ROOT_CAPS, "permitted": ROOT_CAPS
            },
            "rlimits": [ { "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 } ],
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "conformance",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc" },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "network" }, { "type": "ipc" },
                { "type": "uts" }, { "type": "mount" }, { "type": "cgroup" }
            ],
            "maskedPaths": ["/proc/kcore", "/proc/timer_list", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    })
}

/// A busybox bundle under `opts.work/name` with `spec`, the checker and a copy of
/// the spec at `/conformance` in its root file system.
pub fn make_bundle(opts: &Options, name: &str, spec: &Value) -> Result<PathBuf, String> {
    let dir = opts.work.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let bundle = Bundle::new(&dir, &["true"], false);
    let rootfs = dir.join("rootfs");
    let conf = rootfs.join(IN_CONTAINER.trim_start_matches('/'));
    let io = |what: &str, e: std::io::Error| format!("{what}: {e}");
    for d in ["sys", "conf-tmp", "conf-bind", "hooks-out"] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(|e| io(d, e))?;
    }
    std::fs::create_dir_all(&conf).map_err(|e| io("conformance dir", e))?;
    std::fs::copy(&opts.checker, conf.join("husk-checker"))
        .map_err(|e| io(&opts.checker.display().to_string(), e))?;
    let text = serde_json::to_vec_pretty(spec).map_err(|e| e.to_string())?;
    std::fs::write(conf.join("config.json"), &text).map_err(|e| io("config copy", e))?;
    bundle.write_config(spec);
    Ok(dir)
}

/// The checker's command line for `section`.
fn checker_args(section: &str) -> Vec<String> {
    [
        &format!("{IN_CONTAINER}/husk-checker"),
        "validate",
        section,
        "--config",
        &format!("{IN_CONTAINER}/config.json"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The host's namespaces as `--host-ns` arguments.
fn host_namespaces() -> Vec<String> {
    ["pid", "net", "mnt", "ipc", "uts", "user", "cgroup"]
        .iter()
        .filter_map(|ns| {
            let ino = std::fs::metadata(format!("/proc/self/ns/{ns}")).ok()?.ino();
            Some(format!("--host-ns={ns}={ino}"))
        })
        .collect()
}

/// The spec of section `id`.
fn spec_for(id: &str, opts: &Options) -> Result<Value, String> {
    let section = if id == "process-user" { "process" } else { id };
    let mut args = checker_args(section);
    if id == "namespaces" {
        args.extend(host_namespaces());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut spec = base_spec(&args);
    match id {
        "process" => {
            let p = &mut spec["process"];
            p["user"] = json!({ "uid": 0, "gid": 0, "additionalGids": [5, 10], "umask": 0o027 });
            p["env"] = json!(["PATH=/bin", "CONFORMANCE=a value with spaces"]);
            p["cwd"] = json!("/tmp");
            p["rlimits"] = json!([
                { "type": "RLIMIT_NOFILE", "hard": 1000, "soft": 500 },
                { "type": "RLIMIT_CORE", "hard": 0, "soft": 0 }
            ]);
            p["oomScoreAdj"] = json!(123);
        }
        "process-user" => {
            let p = &mut spec["process"];
            let caps = ["CAP_NET_BIND_SERVICE"];
            p["user"] = json!({ "uid": 1000, "gid": 1000, "additionalGids": [2000] });
            p["capabilities"] = json!({
                "bounding": caps, "effective": caps, "permitted": caps,
                "inheritable": caps, "ambient": caps
            });
            p["noNewPrivileges"] = json!(false);
        }
        "mounts" => {
            let src = opts.work.join("mounts-bind-source");
            std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            std::fs::write(src.join("hello"), "hello\n").map_err(|e| e.to_string())?;
            spec["root"]["readonly"] = json!(true);
            let mounts = spec["mounts"].as_array_mut().expect("mounts");
            mounts.push(
                json!({ "destination": "/conf-tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "noexec", "mode=700", "size=1m"] }),
            );
            mounts.push(
                json!({ "destination": "/conf-bind", "type": "bind", "source": src,
                "options": ["rbind", "ro"] }),
            );
            spec["linux"]["devices"] = json!([{
                "path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3,
                "fileMode": 0o640, "uid": 0, "gid": 0
            }]);
        }
        "hostname" => spec["domainname"] = json!("conf.example"),
        "sysctl" => {
            spec["linux"]["sysctl"] = json!({
                "kernel.shmmax": "123456789",
                "net.ipv4.ip_forward": "1"
            })
        }
        "cgroups" => {
            spec["linux"]["resources"] = json!({
                "memory": { "limit": 67_108_864, "reservation": 33_554_432 },
                "cpu": { "shares": 512, "quota": 50_000, "period": 100_000, "cpus": "0", "mems": "0" },
                "pids": { "limit": 64 }
            })
        }
        "seccomp" => {
            spec["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "architectures": ["SCMP_ARCH_X86_64"],
                "syscalls": [
                    { "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95 }
                ]
            })
        }
        _ => {}
    }
    Ok(spec)
}

/// Runs section `id`: its bundle, create, start, the container's exit, delete.
pub fn run(id: &str, rt: &Runtime, opts: &Options) -> Vec<Check> {
    let spec = match spec_for(id, opts) {
        Ok(s) => s,
        Err(e) => return vec![Check::fail(format!("{id}.bundle"), e)],
    };
    let bundle = match make_bundle(opts, id, &spec) {
        Ok(b) => b,
        Err(e) => return vec![Check::fail(format!("{id}.bundle"), e)],
    };
    let cid = format!("conf-{id}-{}", std::process::id());
    let output = bundle.join("output");
    if let Err(e) = rt.create(&cid, &bundle, &output) {
        return vec![Check::fail(format!("{id}.create"), e)];
    }
    let ran = rt
        .run(&["start", &cid])
        .and_then(|_| rt.wait_status(&cid, "stopped"));
    let mut checks = Vec::new();
    match ran {
        Ok(()) => {
            let text = std::fs::read_to_string(&output).unwrap_or_default();
            checks = parse_lines(&text);
            if checks.is_empty() {
                let err = std::fs::read_to_string(output.with_extension("err")).unwrap_or_default();
                checks.push(Check::fail(
                    format!("{id}.output"),
                    format!("the checker printed nothing; stderr: {}", err.trim()),
                ));
            }
        }
        Err(e) => checks.push(Check::fail(format!("{id}.run"), e)),
    }
    if let Err(e) = rt.run(&["delete", &cid]) {
        checks.push(Check::fail(format!("{id}.delete"), e));
        rt.force_delete(&cid);
    }
    checks
}
