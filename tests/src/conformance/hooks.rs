//! `hooks`: every phase runs, in order, with its args, its env and the state on
//! stdin; a failing or overlong create hook fails create and leaves nothing; a
//! failing poststop hook does not stop delete.
//!
//! The hooks are `/bin/sh -c SCRIPT` (present on the host and in the busybox root)
//! writing into `rootfs/hooks-out`, which is that directory's path on the host and
//! `/hooks-out` in the container: runc runs `startContainer` (and, before
//! pivot_root, `createContainer`) in the container, husk runs all on the host.

use super::sections::{base_spec, make_bundle};
use super::{Check, Options, Runtime};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The phases, in the order they run, with the statuses their state may carry
/// (poststart: runc 1.1 reports `created`, the process having just been started).
const PHASES: &[(&str, &[&str])] = &[
    ("prestart", &["creating"]),
    ("createRuntime", &["creating"]),
    ("createContainer", &["creating"]),
    ("startContainer", &["created"]),
    ("poststart", &["created", "running"]),
    ("poststop", &["stopped"]),
];
const ANNOTATION: (&str, &str) = ("org.conformance.hooks", "annotated");

/// A hook that records its stdin, args and env under `dir` (or `/hooks-out`).
fn recording_hook(dir: &Path, phase: &str) -> Value {
    let script = format!(
        "d={}; [ -d \"$d\" ] || d=/hooks-out; cat > \"$d/$1.state\"; \
         echo \"$0 $*\" > \"$d/$1.args\"; echo \"$HOOK_VAR\" > \"$d/$1.env\"; \
         echo \"$1\" >> \"$d/order\"",
        dir.display()
    );
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", script, "conformance-hook", phase, "extra"],
        "env": [format!("HOOK_VAR={phase}-env"), "PATH=/bin:/usr/bin"]
    })
}

fn spec_with_hooks(hooks: Value) -> Value {
    let mut spec = base_spec(&["sleep", "60"]);
    spec["hooks"] = hooks;
    spec["annotations"] = json!({ ANNOTATION.0: ANNOTATION.1 });
    spec
}

pub fn run(rt: &Runtime, opts: &Options) -> Vec<Check> {
    let mut checks = all_phases(rt, opts);
    checks.extend(failing_create_hook(rt, opts));
    checks.extend(overlong_create_hook(rt, opts));
    checks.extend(failing_poststop_hook(rt, opts));
    checks
}

fn all_phases(rt: &Runtime, opts: &Options) -> Vec<Check> {
    let out = opts.work.join("hooks").join("rootfs").join("hooks-out");
    let hooks: serde_json::Map<String, Value> = PHASES
        .iter()
        .map(|(phase, _)| (phase.to_string(), json!([recording_hook(&out, phase)])))
        .collect();
    let bundle = match make_bundle(opts, "hooks", &spec_with_hooks(Value::Object(hooks))) {
        Ok(b) => b,
        Err(e) => return vec![Check::fail("hooks.bundle", e)],
    };
    let cid = format!("conf-hooks-{}", std::process::id());
    let lifecycle = rt
        .create(&cid, &bundle, &bundle.join("output"))
        .and_then(|()| rt.run(&["start", &cid]))
        .and_then(|_| rt.wait_status(&cid, "running"))
        .and_then(|()| rt.run(&["kill", &cid, "KILL"]))
        .and_then(|_| rt.wait_status(&cid, "stopped"))
        .and_then(|()| rt.run(&["delete", &cid]));
    if let Err(e) = lifecycle {
        rt.force_delete(&cid);
        return vec![Check::fail("hooks.lifecycle", e)];
    }
    let mut checks = Vec::new();
    let order = std::fs::read_to_string(out.join("order")).unwrap_or_default();
    let got: Vec<&str> = order.lines().collect();
    checks.push(Check::expect(
        "hooks.order",
        in_order(&got),
        format!("ran {got:?}"),
    ));
    for (phase, status) in PHASES {
        checks.extend(phase_checks(&out, phase, status, &cid, &bundle));
    }
    checks
}

/// Every phase once; the create phases in the spec's order, then the start phases,
/// then poststop. startContainer and poststart are not ordered: runc runs the first
/// in the container's init and the second in `runc start`, concurrently.
fn in_order(got: &[&str]) -> bool {
    let mut sorted = got.to_vec();
    sorted.sort_unstable();
    let mut all: Vec<&str> = PHASES.iter().map(|(p, _)| *p).collect();
    all.sort_unstable();
    let pos = |p: &str| got.iter().position(|g| *g == p).unwrap_or(usize::MAX);
    sorted == all
        && pos("prestart") < pos("createRuntime")
        && pos("createRuntime") < pos("createContainer")
        && pos("createContainer") < pos("startContainer").min(pos("poststart"))
        && pos("startContainer").max(pos("poststart")) < pos("poststop")
}

fn phase_checks(out: &Path, phase: &str, status: &[&str], cid: &str, bundle: &Path) -> Vec<Check> {
    let read = |ext: &str| std::fs::read_to_string(out.join(format!("{phase}.{ext}")));
    let name = |what: &str| format!("hooks.{phase}.{what}");
    let Ok(text) = read("state") else {
        return vec![Check::fail(name("ran"), "no record: it did not run")];
    };
    let mut checks = vec![Check::ok(name("ran"))];
    match serde_json::from_str::<Value>(&text) {
        Err(e) => checks.push(Check::fail(name("state"), format!("{e}: {text:?}"))),
        Ok(st) => {
            let mut wrong = Vec::new();
            if !st["ociVersion"].is_string() {
                wrong.push("no ociVersion".to_string());
            }
            if st["id"] != cid {
                wrong.push(format!("id {}", st["id"]));
            }
            if !st["status"].as_str().is_some_and(|s| status.contains(&s)) {
                wrong.push(format!("status {} (want {status:?})", st["status"]));
            }
            if st["bundle"].as_str().map(Path::new) != Some(bundle) {
                wrong.push(format!("bundle {}", st["bundle"]));
            }
            if st["annotations"][ANNOTATION.0] != ANNOTATION.1 {
                wrong.push(format!("annotations {}", st["annotations"]));
            }
            if phase != "poststop" && st["pid"].as_i64().unwrap_or(0) <= 0 {
                wrong.push(format!("pid {}", st["pid"]));
            }
            checks.push(Check::expect(
                name("state"),
                wrong.is_empty(),
                wrong.join(", "),
            ));
        }
    }
    let args = read("args").unwrap_or_default();
    let want = format!("conformance-hook {phase} extra");
    checks.push(Check::expect(
        name("args"),
        args.trim() == want,
        format!("got {:?}", args.trim()),
    ));
    let env = read("env").unwrap_or_default();
    checks.push(Check::expect(
        name("env"),
        env.trim() == format!("{phase}-env"),
        format!("got {:?}", env.trim()),
    ));
    checks
}

/// create with `hooks` must fail, within `limit`, and leave no container.
fn create_must_fail(
    rt: &Runtime,
    opts: &Options,
    name: &str,
    hooks: Value,
    limit: Duration,
) -> Vec<Check> {
    let bundle = match make_bundle(opts, name, &spec_with_hooks(hooks)) {
        Ok(b) => b,
        Err(e) => return vec![Check::fail(format!("hooks.{name}"), e)],
    };
    let cid = format!("conf-{name}-{}", std::process::id());
    let began = Instant::now();
    let created = rt.create(&cid, &bundle, &bundle.join("output"));
    let took = began.elapsed();
    let left = rt.state(&cid);
    rt.force_delete(&cid);
    vec![
        Check::expect(
            format!("hooks.{name}.create-fails"),
            created.is_err() && took < limit,
            format!("create: {created:?} after {took:?}"),
        ),
        Check::expect(
            format!("hooks.{name}.nothing-left"),
            left.is_err(),
            format!("state still answers: {left:?}"),
        ),
    ]
}

fn failing_create_hook(rt: &Runtime, opts: &Options) -> Vec<Check> {
    let hooks = json!({ "createRuntime": [
        { "path": "/bin/sh", "args": ["sh", "-c", "exit 7"] }
    ]});
    create_must_fail(rt, opts, "hook-fails", hooks, rt.timeout)
}

fn overlong_create_hook(rt: &Runtime, opts: &Options) -> Vec<Check> {
    let hooks = json!({ "createRuntime": [
        { "path": "/bin/sh", "args": ["sh", "-c", "exec sleep 600"], "timeout": 1 }
    ]});
    create_must_fail(rt, opts, "hook-timeout", hooks, rt.timeout)
}

fn failing_poststop_hook(rt: &Runtime, opts: &Options) -> Vec<Check> {
    let hooks = json!({ "poststop": [
        { "path": "/bin/sh", "args": ["sh", "-c", "exit 3"] }
    ]});
    let bundle = match make_bundle(opts, "poststop-fails", &spec_with_hooks(hooks)) {
        Ok(b) => b,
        Err(e) => return vec![Check::fail("hooks.poststop-fails", e)],
    };
    let cid = format!("conf-poststop-fails-{}", std::process::id());
    let deleted = rt
        .create(&cid, &bundle, &bundle.join("output"))
        .and_then(|()| rt.run(&["delete", &cid]));
    let left = rt.state(&cid);
    rt.force_delete(&cid);
    vec![Check::expect(
        "hooks.poststop-fails.delete-goes-on",
        deleted.is_ok() && left.is_err(),
        format!("delete: {deleted:?}; state afterwards: {left:?}"),
    )]
}
