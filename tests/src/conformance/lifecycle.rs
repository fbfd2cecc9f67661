//! `lifecycle`: create, start, state, kill and delete, in order and out of it.

use super::sections::{base_spec, make_bundle};
use super::{Check, Options, Runtime};
use std::path::Path;

pub fn run(rt: &Runtime, opts: &Options) -> Vec<Check> {
    let bundle = match make_bundle(opts, "lifecycle", &base_spec(&["sleep", "60"])) {
        Ok(b) => b,
        Err(e) => return vec![Check::fail("lifecycle.bundle", e)],
    };
    let pid = std::process::id();
    let cid = format!("conf-lifecycle-{pid}");
    let mut checks = vec![Check::expect(
        "lifecycle.state.unknown-id",
        rt.state(&format!("conf-nosuch-{pid}")).is_err(),
        "state of an unknown id succeeded",
    )];
    if let Err(e) = rt.create(&cid, &bundle, &bundle.join("output")) {
        checks.push(Check::fail("lifecycle.create", e));
        return checks;
    }
    checks.push(Check::ok("lifecycle.create"));
    checks.push(state_is(rt, &cid, "created", &bundle));
    checks.push(Check::expect(
        "lifecycle.create.duplicate-id",
        rt.create(&cid, &bundle, &bundle.join("output2")).is_err(),
        "a second create with the same id succeeded",
    ));
    checks.push(result("lifecycle.start", rt.run(&["start", &cid])));
    checks.push(state_is(rt, &cid, "running", &bundle));
    checks.push(Check::expect(
        "lifecycle.start.twice",
        rt.run(&["start", &cid]).is_err(),
        "a second start succeeded",
    ));
    let refused = rt.run(&["delete", &cid]).is_err();
    let still = rt.state(&cid).map(|s| s["status"].clone());
    checks.push(Check::expect(
        "lifecycle.delete.running-without-force",
        refused && still.as_ref().is_ok_and(|s| s == "running"),
        format!("refused: {refused}; status afterwards: {still:?}"),
    ));
    checks.push(result(
        "lifecycle.kill",
        rt.run(&["kill", &cid, "KILL"])
            .and_then(|_| rt.wait_status(&cid, "stopped")),
    ));
    checks.push(result("lifecycle.delete", rt.run(&["delete", &cid])));
    checks.push(Check::expect(
        "lifecycle.state.after-delete",
        rt.state(&cid).is_err(),
        "state still answers after delete",
    ));
    rt.force_delete(&cid);
    checks.push(force_delete_running(rt, &bundle, &format!("{cid}-force")));
    checks
}

fn result<T>(name: &str, r: Result<T, String>) -> Check {
    match r {
        Ok(_) => Check::ok(name),
        Err(e) => Check::fail(name, e),
    }
}

/// `state` says `status` with the container's id, bundle and a pid.
fn state_is(rt: &Runtime, cid: &str, status: &str, bundle: &Path) -> Check {
    let name = format!("lifecycle.state.{status}");
    match rt.state(cid) {
        Err(e) => Check::fail(name, e),
        Ok(st) => {
            let mut wrong = Vec::new();
            if st["status"] != status {
                wrong.push(format!("status {}", st["status"]));
            }
            if st["id"] != cid {
                wrong.push(format!("id {}", st["id"]));
            }
            if st["ociVersion"].as_str().is_none() {
                wrong.push("no ociVersion".into());
            }
            if st["pid"].as_i64().unwrap_or(0) <= 0 {
                wrong.push(format!("pid {}", st["pid"]));
            }
            if st["bundle"].as_str().map(Path::new) != Some(bundle) {
                wrong.push(format!("bundle {}", st["bundle"]));
            }
            Check::expect(name, wrong.is_empty(), wrong.join(", "))
        }
    }
}

/// `delete --force` of a running container removes it.
fn force_delete_running(rt: &Runtime, bundle: &Path, cid: &str) -> Check {
    let ran = rt
        .create(cid, bundle, &bundle.join("output-force"))
        .and_then(|()| rt.run(&["start", cid]))
        .and_then(|_| rt.wait_status(cid, "running"))
        .and_then(|()| rt.run(&["delete", "--force", cid]));
    let left = rt.state(cid);
    rt.force_delete(cid);
    Check::expect(
        "lifecycle.delete.force-running",
        ran.is_ok() && left.is_err(),
        format!("{ran:?}; state afterwards: {left:?}"),
    )
}
