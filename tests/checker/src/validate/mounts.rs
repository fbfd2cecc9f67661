//! `mounts`: root.readonly, each mount with its type and flags, masked and readonly
//! paths, the default devices and `linux.devices`.

use super::{errno, Report};
use serde_json::Value;
use std::ffi::CString;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// One line of `/proc/self/mountinfo`.
struct MountInfo {
    point: String,
    fstype: String,
    /// Per-mount options (`rw,nosuid,...`).
    opts: Vec<String>,
    /// Super-block options (`size=...,mode=...`).
    super_opts: Vec<String>,
}

fn mountinfo() -> Result<Vec<MountInfo>, String> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let split = |s: &str| s.split(',').map(str::to_string).collect();
            Some(MountInfo {
                point: left.get(4)?.replace("\\040", " "),
                opts: split(left.get(5)?),
                fstype: right.first()?.to_string(),
                super_opts: split(right.get(2).unwrap_or(&"")),
            })
        })
        .collect())
}

fn statvfs_readonly(path: &str) -> Result<bool, String> {
    let c = CString::new(path).map_err(|e| e.to_string())?;
    // SAFETY: an all-zero statvfs is a valid value for the call to overwrite.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a valid statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(format!("statvfs {path}: {}", errno()));
    }
    Ok(st.f_flag & libc::ST_RDONLY != 0)
}

pub fn check(cfg: &Value, r: &mut Report) {
    root(cfg, r);
    match mountinfo() {
        Ok(table) => mounts(cfg, &table, r),
        Err(e) => r.fail("mounts.mountinfo", e),
    }
    masked(cfg, r);
    readonly(cfg, r);
    default_devices(r);
    devices(cfg, r);
}

fn root(cfg: &Value, r: &mut Report) {
    let want = cfg["root"]["readonly"].as_bool().unwrap_or(false);
    r.expect_result("root.readonly", want, statvfs_readonly("/"));
    let probe = Path::new("/.conformance-probe");
    let wrote = std::fs::write(probe, b"x");
    let _ = std::fs::remove_file(probe);
    match (want, wrote) {
        (true, Err(e)) if e.raw_os_error() == Some(libc::EROFS) => r.ok("root.readonly.write"),
        (false, Ok(())) => r.ok("root.readonly.write"),
        (true, other) => r.fail("root.readonly.write", format!("want EROFS, got {other:?}")),
        (false, Err(e)) => r.fail("root.readonly.write", format!("cannot write /: {e}")),
    }
}

fn mounts(cfg: &Value, table: &[MountInfo], r: &mut Report) {
    for m in cfg["mounts"].as_array().into_iter().flatten() {
        let dest = m["destination"].as_str().unwrap_or("?");
        let name = format!("mounts[{dest}]");
        let Some(found) = table.iter().rev().find(|i| i.point == dest) else {
            r.fail(&name, "not mounted");
            continue;
        };
        let options: Vec<&str> = m["options"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let kind = m["type"].as_str().unwrap_or("");
        let bind = kind == "bind" || options.iter().any(|o| *o == "bind" || *o == "rbind");
        if kind == "cgroup" && found.fstype == "tmpfs" {
            r.skip(&name, "cgroup v1 host: a tmpfs of per-controller mounts");
            continue;
        }
        let mut problems = Vec::new();
        let type_ok = bind
            || found.fstype == kind
            || (kind == "cgroup" && found.fstype == "cgroup2")
            || (kind == "cgroup2" && found.fstype == "cgroup");
        if !type_ok {
            problems.push(format!("type {} (want {kind})", found.fstype));
        }
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            if options.contains(&flag) && !found.opts.iter().any(|o| o == flag) {
                problems.push(format!("no {flag}"));
            }
        }
        if options.contains(&"rw") && !found.opts.iter().any(|o| o == "rw") {
            problems.push("not rw".into());
        }
        // The file system's mode option (the kernel leaves tmpfs's default, 1777,
        // out; runc chmods a tmpfs's root back to the mount point's mode, so the
        // option, not the directory, is compared).
        let mut modes = options.iter().filter_map(|o| o.strip_prefix("mode="));
        if let Some(want) = modes.rfind(|_| kind == "tmpfs") {
            let want = want.trim_start_matches('0');
            let got = found
                .super_opts
                .iter()
                .find_map(|o| o.strip_prefix("mode="))
                .map_or("1777", |m| m.trim_start_matches('0'));
            if got != want {
                problems.push(format!("mode={got} (want mode={want})"));
            }
        }
        if problems.is_empty() {
            r.ok(&name);
        } else {
            r.fail(&name, problems.join(", "));
        }
    }
}

fn paths<'a>(cfg: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    cfg["linux"][key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn masked(cfg: &Value, r: &mut Report) {
    for path in paths(cfg, "maskedPaths") {
        let name = format!("linux.maskedPaths[{path}]");
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                r.skip(&name, "not present in this container")
            }
            Err(e) => r.fail(&name, e),
            Ok(m) if m.is_dir() => match std::fs::read_dir(path) {
                Ok(mut d) => match d.next() {
                    None => r.ok(&name),
                    Some(_) => r.fail(&name, "the directory has entries"),
                },
                Err(e) => r.fail(&name, e),
            },
            Ok(_) => match std::fs::read(path) {
                Ok(b) if b.is_empty() => r.ok(&name),
                Ok(b) => r.fail(&name, format!("{} bytes readable", b.len())),
                Err(e) => r.fail(&name, format!("read: {e}")),
            },
        }
    }
}

fn readonly(cfg: &Value, r: &mut Report) {
    for path in paths(cfg, "readonlyPaths") {
        let name = format!("linux.readonlyPaths[{path}]");
        if !Path::new(path).exists() {
            r.skip(&name, "not present in this container");
            continue;
        }
        r.expect_result(&name, true, statvfs_readonly(path));
    }
}

/// The device's (type, major, minor, mode, uid, gid) as the spec writes them.
fn device(path: &str) -> Result<(char, u64, u64, u32, u32, u32), String> {
    let m = std::fs::symlink_metadata(path).map_err(|e| format!("{path}: {e}"))?;
    let ft = m.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else if ft.is_fifo() {
        'p'
    } else {
        return Err(format!("{path} is not a device"));
    };
    let rdev = m.rdev();
    Ok((
        kind,
        libc::major(rdev) as u64,
        libc::minor(rdev) as u64,
        m.mode() & 0o7777,
        m.uid(),
        m.gid(),
    ))
}

fn default_devices(r: &mut Report) {
    for (path, major, minor) in [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ] {
        let name = format!("devices.default[{path}]");
        r.expect_result(
            &name,
            ('c', major, minor),
            device(path).map(|d| (d.0, d.1, d.2)),
        );
    }
    r.expect_eq(
        "devices.default[/dev/ptmx]",
        true,
        Path::new("/dev/ptmx").exists(),
    );
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        r.expect_result(
            &format!("devices.default[{link}]"),
            target.to_string(),
            std::fs::read_link(link).map(|t| t.display().to_string()),
        );
    }
}

fn devices(cfg: &Value, r: &mut Report) {
    let list = cfg["linux"]["devices"].as_array();
    if list.map_or(true, |l| l.is_empty()) {
        r.skip("linux.devices", "none in the config");
        return;
    }
    for d in list.into_iter().flatten() {
        let path = d["path"].as_str().unwrap_or("?");
        let want = (
            d["type"]
                .as_str()
                .and_then(|t| t.chars().next())
                .map(|c| if c == 'u' { 'c' } else { c }),
            d["major"].as_u64(),
            d["minor"].as_u64(),
            d["fileMode"].as_u64().map(|m| m as u32 & 0o7777),
            d["uid"].as_u64().map(|u| u as u32),
            d["gid"].as_u64().map(|g| g as u32),
        );
        let got = device(path).map(|g| {
            (
                Some(g.0),
                Some(g.1),
                Some(g.2),
                want.3.map(|_| g.3),
                want.4.map(|_| g.4),
                want.5.map(|_| g.5),
            )
        });
        r.expect_result(&format!("linux.devices[{path}]"), want, got);
    }
}
