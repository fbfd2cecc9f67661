//! The cgroup logic on a temporary directory standing in for `/sys/fs/cgroup`: the
//! files a kernel would make are created by hand.

use super::resources::{plan, shares_to_weight};
use super::*;
use serde_json::json;

fn fake_root(controllers: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cgroup.controllers"), controllers).unwrap();
    std::fs::write(dir.path().join("cgroup.subtree_control"), "").unwrap();
    std::fs::create_dir(dir.path().join(PARENT)).unwrap();
    std::fs::write(dir.path().join(PARENT).join("cgroup.subtree_control"), "").unwrap();
    dir
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn ids_that_would_escape_the_cgroup_directory_are_refused() {
    for bad in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "/abs",
        "a\0b",
        &"x".repeat(256),
    ] {
        let err = check_name(bad).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument, "{bad:?}");
    }
    for good in ["c1", "a.b", "..x", &"x".repeat(255)] {
        check_name(good).unwrap();
    }
    let dir = fake_root("cpu memory");
    let root = CgroupRoot::new(dir.path());
    assert_eq!(
        root.create("../evil").unwrap_err().code,
        ErrorCode::InvalidArgument
    );
    assert!(!dir.path().join("evil").exists());
}

#[test]
fn the_first_cgroup_enables_the_offered_controllers() {
    let dir = fake_root("cpuset cpu io memory hugetlb pids rdma");
    let root = CgroupRoot::new(dir.path());
    let cg = root.create("c1").unwrap();
    assert_eq!(cg.path(), dir.path().join("husk/c1"));
    assert!(cg.path().is_dir());
    // One write per controller: the fake file keeps the last; the kernel's adds up.
    assert_eq!(read(&dir.path().join("cgroup.subtree_control")), "+cpuset");
    assert_eq!(
        read(&dir.path().join("husk/cgroup.subtree_control")),
        "+cpuset"
    );
    assert_eq!(
        root.create("c1").unwrap_err().code,
        ErrorCode::AlreadyExists
    );
}

#[test]
fn a_root_without_cgroup2_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = CgroupRoot::new(dir.path().join("nope"));
    let err = root.create("c1").unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal);
    assert!(err.message.contains("cannot set up cgroups under"), "{err}");
}

#[test]
fn processes_join_and_the_cgroup_goes() {
    let dir = fake_root("memory");
    let cg = CgroupRoot::new(dir.path()).create("c1").unwrap();
    std::fs::write(cg.path().join("cgroup.procs"), "").unwrap();
    cg.add(Pid::from_raw(42)).unwrap();
    assert_eq!(read(&cg.path().join("cgroup.procs")), "42");
    std::fs::remove_file(cg.path().join("cgroup.procs")).unwrap();
    cg.remove().unwrap();
    assert!(!cg.path().exists());
}

#[test]
fn freezing_waits_for_cgroup_events_and_gives_up_at_the_deadline() {
    let dir = fake_root("");
    let cg = CgroupRoot::new(dir.path()).create("c1").unwrap();
    std::fs::write(cg.path().join("cgroup.freeze"), "0").unwrap();
    std::fs::write(cg.path().join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    cg.freeze(true, Duration::from_secs(1)).unwrap();
    assert_eq!(read(&cg.path().join("cgroup.freeze")), "1");
    assert!(cg.frozen().unwrap());
    // The "kernel" never thaws it.
    let start = Instant::now();
    let err = cg.freeze(false, Duration::from_millis(50)).unwrap_err();
    assert!(err.message.contains("did not thaw within"), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(50));
    assert_eq!(read(&cg.path().join("cgroup.freeze")), "0");
}

#[test]
fn resources_convert_as_runc_does() {
    let p = plan(&json!({
        "memory": {"limit": 33554432, "reservation": 16777216, "swap": 67108864},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "pids": {"limit": 100},
        "devices": [{"allow": false, "access": "rwm"}]
    }))
    .unwrap();
    assert_eq!(
        p.writes,
        vec![
            ("memory.swap.max", "33554432".to_owned()),
            ("memory.max", "33554432".to_owned()),
            ("memory.low", "16777216".to_owned()),
            ("cpu.weight", "39".to_owned()),
            ("cpu.max", "50000 100000".to_owned()),
            ("cpuset.cpus", "0-1".to_owned()),
            ("cpuset.mems", "0".to_owned()),
            ("pids.max", "100".to_owned()),
        ]
    );
    assert!(p.unsupported.is_empty());
    let p = plan(&json!({"memory": {"limit": -1}, "cpu": {"quota": -1}, "pids": {"limit": -1}}))
        .unwrap();
    assert_eq!(
        p.writes,
        vec![
            ("memory.swap.max", "max".to_owned()),
            ("memory.max", "max".to_owned()),
            ("cpu.max", "max 100000".to_owned()),
            ("pids.max", "max".to_owned()),
        ]
    );
    assert_eq!(plan(&json!(null)).unwrap(), resources::Plan::default());
    assert_eq!(
        plan(&json!({"cpu": {"period": 20000}}))
            .unwrap()
            .period_only,
        Some(20000)
    );
    assert_eq!((shares_to_weight(2), shares_to_weight(262144)), (1, 10000));
    assert_eq!(shares_to_weight(0), 1);
}

#[test]
fn bad_and_unsupported_resources_are_named() {
    let err = plan(&json!({"memory": {"limit": 100, "swap": 50}})).unwrap_err();
    assert!(
        err.message
            .contains("memory.swap 50 is below memory.limit 100"),
        "{err}"
    );
    let err = plan(&json!({"memory": {"swap": 50}})).unwrap_err();
    assert!(err.message.contains("without memory.limit"), "{err}");
    let err = plan(&json!({"memory": {"limit": "lots"}})).unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    let p = plan(&json!({
        "blockIO": {"weight": 10},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 1}],
        "rdma": {"mlx": {}},
        "memory": {"kernel": 1},
        "cpu": {"realtimeRuntime": 5}
    }))
    .unwrap();
    assert_eq!(
        p.unsupported,
        vec![
            "memory.kernel",
            "cpu.realtimeRuntime",
            "blockIO",
            "hugepageLimits",
            "rdma"
        ]
    );
    // Empty sections (as engines send them) are not "set".
    assert!(
        plan(&json!({"blockIO": {}, "hugepageLimits": [], "network": null}))
            .unwrap()
            .unsupported
            .is_empty()
    );
}

#[test]
fn update_refuses_unsupported_fields_and_writes_nothing() {
    let dir = fake_root("memory cpu");
    let cg = CgroupRoot::new(dir.path()).create("c1").unwrap();
    std::fs::write(cg.path().join("memory.max"), "max").unwrap();
    let p = plan(&json!({"memory": {"limit": 1048576}, "blockIO": {"weight": 10}})).unwrap();
    let err = cg.apply(&p, true).unwrap_err();
    assert_eq!(err.code, ErrorCode::Unsupported);
    assert_eq!(
        err.message,
        "not supported yet: updating linux.resources blockIO"
    );
    assert_eq!(read(&cg.path().join("memory.max")), "max");
    // At create they are ignored.
    cg.apply(&p, false).unwrap();
    assert_eq!(read(&cg.path().join("memory.max")), "1048576");
}

#[test]
fn applying_skips_a_missing_swap_file_and_names_a_missing_controller() {
    let dir = fake_root("memory");
    let cg = CgroupRoot::new(dir.path()).create("c1").unwrap();
    std::fs::write(cg.path().join("memory.max"), "max").unwrap();
    std::fs::write(cg.path().join("cpu.max"), "20000 100000").unwrap();
    let p = plan(&json!({"memory": {"limit": 4096, "swap": 8192}})).unwrap();
    cg.apply(&p, true).unwrap();
    assert_eq!(read(&cg.path().join("memory.max")), "4096");
    // Period alone keeps the quota.
    cg.apply(&plan(&json!({"cpu": {"period": 50000}})).unwrap(), true)
        .unwrap();
    assert_eq!(read(&cg.path().join("cpu.max")), "20000 50000");
    let err = cg
        .apply(&plan(&json!({"pids": {"limit": 5}})).unwrap(), true)
        .unwrap_err();
    assert_eq!(
        err.message,
        "pids.max does not exist in the guest (its controller is not enabled)"
    );
}

#[test]
fn stats_read_the_cgroup_files() {
    let dir = fake_root("memory cpu pids");
    let cg = CgroupRoot::new(dir.path()).create("c1").unwrap();
    let files = [
        ("memory.current", "1048576\n"),
        ("memory.max", "33554432\n"),
        ("memory.stat", "anon 4096\nfile 8192\nkernel_stack 16384\n"),
        (
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
        ),
        ("pids.current", "3\n"),
        ("pids.max", "max\n"),
        ("memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 1\n"),
        ("cgroup.events", "populated 1\nfrozen 0\n"),
    ];
    for (file, text) in files {
        std::fs::write(cg.path().join(file), text).unwrap();
    }
    let s = cg.stats().unwrap();
    assert_eq!(
        s,
        husk_protocol::CgroupStats {
            memory_current: 1048576,
            memory_max: Some(33554432),
            memory_anon: 4096,
            memory_file: 8192,
            cpu_usage_usec: 1500,
            cpu_user_usec: 1000,
            cpu_system_usec: 500,
            pids_current: 3,
            pids_max: None,
            oom: 2,
            oom_kill: 1,
            frozen: false,
        }
    );
    assert_eq!(cg.oom_kills(), 1);
    // Without the files (no controllers): zeros and no limits.
    let bare = CgroupRoot::new(dir.path()).create("c2").unwrap();
    assert_eq!(bare.stats().unwrap(), husk_protocol::CgroupStats::default());
    assert_eq!(bare.oom_kills(), 0);
}
