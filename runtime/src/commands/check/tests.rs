use super::*;
use std::os::unix::fs::PermissionsExt;

const ROOT_STATUS: &str = "Name:\thusk\nUid:\t0\t0\t0\t0\nCapEff:\t000001ffffffffff\n";

struct Host {
    dir: tempfile::TempDir,
    paths: CheckPaths,
}

/// A host where everything passes.
fn good_host() -> Host {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("kvm"), "").unwrap();
    std::fs::write(p("cpuinfo"), "processor\t: 0\nflags\t\t: fpu sse svm lm\n").unwrap();
    std::fs::write(p("status"), ROOT_STATUS).unwrap();
    std::fs::write(p("vmlinux"), "k").unwrap();
    std::fs::write(p("initramfs"), "i").unwrap();
    std::fs::write(p("virtiofsd"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(p("virtiofsd"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let paths = CheckPaths {
        dev_kvm: p("kvm"),
        kvm_pvm_module: p("kvm_pvm"),
        cpuinfo: p("cpuinfo"),
        proc_status: p("status"),
        kernel: p("vmlinux"),
        initramfs: p("initramfs"),
        virtiofsd: Some(p("virtiofsd")),
    };
    Host { dir, paths }
}

fn probe_ok() -> Result<(), String> {
    Ok(())
}

fn failures(results: &[CheckResult]) -> Vec<String> {
    results
        .iter()
        .filter(|r| !r.ok)
        .map(|r| format!("{}: {}", r.name, r.detail))
        .collect()
}

#[test]
fn all_pass_on_a_good_host() {
    let host = good_host();
    let results = run_checks(&host.paths, &probe_ok);
    assert_eq!(failures(&results), Vec::<String>::new());
    let text = report(&results);
    assert!(
        text.ends_with("husk check: this host can run husk microVMs\n"),
        "{text}"
    );
    assert!(
        text.lines()
            .all(|l| l.starts_with("ok") || l.starts_with("husk check")),
        "{text}"
    );
}

#[test]
fn missing_kvm_fails_and_skips_the_probe() {
    let host = good_host();
    std::fs::remove_file(&host.paths.dev_kvm).unwrap();
    let probe = || -> Result<(), String> { panic!("probe must not run without /dev/kvm") };
    let f = failures(&run_checks(&host.paths, &probe));
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(f[0].contains("exists") && f[0].contains("no KVM"), "{f:?}");
    assert!(f[2].contains("skipped"), "{f:?}");
}

#[test]
fn pvm_is_named() {
    let host = good_host();
    std::fs::create_dir(&host.paths.kvm_pvm_module).unwrap();
    let f = failures(&run_checks(&host.paths, &probe_ok));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("PVM"), "{f:?}");
}

#[test]
fn no_vmx_or_svm_flag_fails() {
    let host = good_host();
    std::fs::write(&host.paths.cpuinfo, "flags\t\t: fpu sse lm hypervisor\n").unwrap();
    let f = failures(&run_checks(&host.paths, &probe_ok));
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].contains("no vmx or svm"), "{f:?}");
}

#[test]
fn probe_failure_is_reported() {
    let host = good_host();
    let probe = || Err("guest did not finish within 10s".to_string());
    let results = run_checks(&host.paths, &probe);
    let f = failures(&results);
    assert_eq!(
        f,
        ["a tiny guest runs on KVM: guest did not finish within 10s"]
    );
    let text = report(&results);
    assert!(text.contains("FAIL  a tiny guest runs on KVM"), "{text}");
    assert!(
        text.ends_with(&format!(
            "1 of {} checks failed: this host cannot run husk microVMs\n",
            results.len()
        )),
        "{text}"
    );
}

#[test]
fn guest_image_and_virtiofsd() {
    let mut host = good_host();
    std::fs::remove_file(&host.paths.kernel).unwrap();
    std::fs::set_permissions(
        host.paths.virtiofsd.as_ref().unwrap(),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    host.paths.initramfs = host.dir.path().to_path_buf();
    let f = failures(&run_checks(&host.paths, &probe_ok));
    assert_eq!(f.len(), 3, "{f:?}");
    assert!(
        f[0].starts_with("guest kernel present") && f[0].contains("setup.sh"),
        "{f:?}"
    );
    assert!(f[1].contains("not a file"), "{f:?}");
    assert!(f[2].contains("not an executable"), "{f:?}");
    host.paths.virtiofsd = None;
    let f = failures(&run_checks(&host.paths, &probe_ok));
    assert!(f[2].contains("not found on PATH"), "{f:?}");
}

#[test]
fn not_root_and_missing_capabilities() {
    let host = good_host();
    std::fs::write(
        &host.paths.proc_status,
        "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000001000\n",
    )
    .unwrap();
    let f = failures(&run_checks(&host.paths, &probe_ok));
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(f[0].contains("effective uid 1000"), "{f:?}");
    assert!(
        f[1].contains("CAP_SYS_ADMIN is not in the effective set"),
        "{f:?}"
    );
    std::fs::write(&host.paths.proc_status, "garbage").unwrap();
    assert_eq!(failures(&run_checks(&host.paths, &probe_ok)).len(), 3);
}
