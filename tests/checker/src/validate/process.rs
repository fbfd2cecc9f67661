//! `process`: args, env, cwd, user, umask, rlimits, capabilities, noNewPrivileges,
//! oomScoreAdj.

use super::{caps, errno, proc_status, Report};
use serde_json::Value;

pub fn check(cfg: &Value, r: &mut Report) {
    let p = &cfg["process"];
    args(p, r);
    env(p, r);
    let cwd = p["cwd"].as_str().unwrap_or("/").to_string();
    r.expect_result(
        "process.cwd",
        cwd,
        std::env::current_dir().map(|d| d.display().to_string()),
    );
    user(&p["user"], r);
    rlimits(p, r);
    capabilities(p, r);
    let nnp = if p["noNewPrivileges"].as_bool().unwrap_or(false) {
        "1"
    } else {
        "0"
    };
    r.expect_result(
        "process.noNewPrivileges",
        nnp.to_string(),
        proc_status("NoNewPrivs"),
    );
    match p["oomScoreAdj"].as_i64() {
        None => r.skip("process.oomScoreAdj", "not in the config"),
        Some(want) => r.expect_result(
            "process.oomScoreAdj",
            want.to_string(),
            std::fs::read_to_string("/proc/self/oom_score_adj").map(|s| s.trim().to_string()),
        ),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn args(p: &Value, r: &mut Report) {
    let got = std::fs::read("/proc/self/cmdline").map(|b| {
        b.split(|c| *c == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
    });
    let got = got.map(|mut v| {
        if v.last().is_some_and(String::is_empty) {
            v.pop();
        }
        v
    });
    r.expect_result("process.args", strings(&p["args"]), got);
}

fn env(p: &Value, r: &mut Report) {
    let missing: Vec<String> = strings(&p["env"])
        .into_iter()
        .filter(|entry| {
            let (k, v) = entry.split_once('=').unwrap_or((entry, ""));
            std::env::var(k).ok().as_deref() != Some(v)
        })
        .collect();
    if missing.is_empty() {
        r.ok("process.env");
    } else {
        r.fail("process.env", format!("missing or different: {missing:?}"));
    }
}

fn user(u: &Value, r: &mut Report) {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    // SAFETY: likewise getgid.
    let gid = unsafe { libc::getgid() };
    r.expect_eq("process.user.uid", u["uid"].as_u64(), Some(uid.into()));
    r.expect_eq("process.user.gid", u["gid"].as_u64(), Some(gid.into()));
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: the buffer holds `groups.len()` entries, as the call is told.
    let n = unsafe { libc::getgroups(groups.len() as i32, groups.as_mut_ptr()) };
    if n < 0 {
        r.fail("process.user.additionalGids", errno());
    } else {
        groups.truncate(n as usize);
        let mut got: Vec<u64> = groups
            .into_iter()
            .map(u64::from)
            .filter(|g| Some(*g) != u["gid"].as_u64())
            .collect();
        got.sort_unstable();
        got.dedup();
        let mut want: Vec<u64> = u["additionalGids"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        want.retain(|g| Some(*g) != u["gid"].as_u64());
        want.sort_unstable();
        want.dedup();
        r.expect_eq("process.user.additionalGids", want, got);
    }
    match u["umask"].as_u64() {
        None => r.skip("process.user.umask", "not in the config"),
        Some(want) => r.expect_result(
            "process.user.umask",
            format!("{want:04o}"),
            proc_status("Umask"),
        ),
    }
}

fn resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn rlimits(p: &Value, r: &mut Report) {
    let Some(list) = p["rlimits"].as_array().filter(|l| !l.is_empty()) else {
        r.skip("process.rlimits", "none in the config");
        return;
    };
    for limit in list {
        let kind = limit["type"].as_str().unwrap_or("?");
        let name = format!("process.rlimits.{kind}");
        let Some(res) = resource(kind) else {
            r.fail(&name, "unknown rlimit type");
            continue;
        };
        let mut got = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `got` is a valid rlimit for the call to fill.
        if unsafe { libc::getrlimit(res, &mut got) } != 0 {
            r.fail(&name, errno());
            continue;
        }
        r.expect_eq(
            &name,
            (limit["soft"].as_u64(), limit["hard"].as_u64()),
            (Some(got.rlim_cur), Some(got.rlim_max)),
        );
    }
}

fn capabilities(p: &Value, r: &mut Report) {
    let Some(c) = p["capabilities"].as_object() else {
        r.skip("process.capabilities", "none in the config");
        return;
    };
    for (set, key) in [
        ("bounding", "CapBnd"),
        ("effective", "CapEff"),
        ("permitted", "CapPrm"),
        ("inheritable", "CapInh"),
        ("ambient", "CapAmb"),
    ] {
        let name = format!("process.capabilities.{set}");
        let want = match caps::mask(&strings(c.get(set).unwrap_or(&Value::Null))) {
            Ok(m) => m,
            Err(e) => {
                r.fail(&name, e);
                continue;
            }
        };
        match proc_status(key)
            .and_then(|h| u64::from_str_radix(&h, 16).map_err(|e| format!("{key} {h:?}: {e}")))
        {
            Ok(got) if got == want => r.ok(&name),
            Ok(got) => r.fail(
                &name,
                format!(
                    "extra {:?}, missing {:?}",
                    caps::names(got & !want),
                    caps::names(want & !got)
                ),
            ),
            Err(e) => r.fail(&name, e),
        }
    }
}
