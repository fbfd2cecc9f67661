//! The OCI conformance suite (docs/conformance.md) against runc, which validates
//! the suite, and against husk. Run in the testbed (cgroup v2, runc installed, and
//! hardware KVM for husk): ignored by a plain `cargo test`.
//!
//! Each test prints its tables and asserts that the failed checks are exactly the
//! listed ones: a regression fails the test, and so does an unexpected pass (then
//! the list is out of date).

use husk_tests::bundle::husk_config;
use husk_tests::conformance::{self, Options};
use husk_tests::guest_image::workspace_bin;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// Checks runc 1.1.5 (Debian 12) fails, and why.
const RUNC_EXPECTED_FAILURES: &[&str] = &[
    // `domainname` is runtime-spec 1.1; runc applies it from 1.2 on.
    "hostname/domainname",
];

/// Checks husk fails, and why (docs/conformance.md, "husk"): none. The test fails on
/// a check that passes while listed, so the list cannot go stale.
const HUSK_EXPECTED_FAILURES: &[&str] = &[];

fn run_suite(name: &str, runtime: PathBuf, env: Vec<(String, String)>) -> Vec<String> {
    let work = std::env::temp_dir().join(format!("husk-conformance-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let checker = std::env::var_os("HUSK_CHECKER")
        .map(PathBuf::from)
        .expect("HUSK_CHECKER is not set: run through tests/run.sh");
    let opts = Options {
        runtime: runtime.clone(),
        root: work.join("root"),
        checker,
        work: work.clone(),
        env,
        sections: Vec::new(),
        timeout: Duration::from_secs(240),
    };
    let sections = conformance::run(&opts);
    println!(
        "{}",
        conformance::markdown(&runtime.display().to_string(), &sections)
    );
    conformance::failures(&sections)
}

fn assert_failures(got: Vec<String>, expected: &[&str]) {
    let got: BTreeSet<String> = got.into_iter().collect();
    let want: BTreeSet<String> = expected.iter().map(|s| s.to_string()).collect();
    let unexpected: Vec<_> = got.difference(&want).collect();
    let now_passing: Vec<_> = want.difference(&got).collect();
    assert!(
        unexpected.is_empty() && now_passing.is_empty(),
        "unexpected failures: {unexpected:?}; listed as failing but passed (update the \
         list and docs/conformance.md): {now_passing:?}"
    );
}

#[test]
#[ignore = "needs the testbed: runc, cgroup v2"]
fn runc_passes_the_conformance_suite() {
    let failed = run_suite("runc", PathBuf::from("runc"), Vec::new());
    assert_failures(failed, RUNC_EXPECTED_FAILURES);
}

#[test]
#[ignore = "needs hardware KVM: run in the testbed"]
fn husk_passes_the_conformance_suite_but_for_the_listed_checks() {
    let dir = std::env::temp_dir().join(format!("husk-conformance-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = husk_config(&dir.join("config.toml"));
    let env = vec![("HUSK_CONFIG".to_string(), config.display().to_string())];
    let failed = run_suite("husk", workspace_bin("husk"), env);
    assert_failures(failed, HUSK_EXPECTED_FAILURES);
}
