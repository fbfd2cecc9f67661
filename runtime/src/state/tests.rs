use super::*;
use crate::config::SandboxConfig;
use crate::error::RuntimeError;
use std::sync::{Arc, Barrier};
use std::time::Duration;

pub(crate) fn sample(id: &str) -> ContainerState {
    ContainerState {
        id: id.into(),
        bundle: "/bundle".into(),
        rootfs: "/bundle/rootfs".into(),
        status: Status::Created,
        pid: None,
        pid_start_time: None,
        created: "2024-01-01T00:00:00Z".into(),
        owner: "root".into(),
        annotations: BTreeMap::new(),
        config: SandboxConfig {
            kernel: "/k".into(),
            initramfs: "/i".into(),
            vcpus: 1,
            memory_mib: 256,
            virtiofsd: "/v".into(),
            boot_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            virtiofsd_timeout: Duration::from_secs(10),
            log_level: None,
        },
        systemd_cgroup: false,
        hooks: None,
        pod: None,
        guest_pid: None,
    }
}

pub(crate) fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("root")).unwrap();
    (dir, store)
}

#[test]
fn create_load_save_remove() {
    let (_d, store) = store();
    let mut state = sample("c1");
    let lock = store.create(&state).unwrap();
    assert_eq!(store.load("c1").unwrap(), state);
    state.status = Status::Running;
    store.save(&state).unwrap();
    assert_eq!(store.load("c1").unwrap().status, Status::Running);
    assert!(store.dir("c1").join("lock").exists());
    store.remove("c1").unwrap();
    drop(lock);
    assert!(matches!(store.load("c1"), Err(RuntimeError::NotFound(_))));
    assert!(matches!(store.lock("c1"), Err(RuntimeError::NotFound(_))));
    assert!(matches!(store.save(&state), Err(RuntimeError::NotFound(_))));
    store.remove("c1").unwrap();
    // Nothing left behind, temporary names included.
    assert_eq!(std::fs::read_dir(store.root()).unwrap().count(), 0);
}

#[test]
fn create_twice_is_already_exists() {
    let (_d, store) = store();
    let _lock = store.create(&sample("c1")).unwrap();
    let err = store.create(&sample("c1")).unwrap_err();
    assert_eq!(err.to_string(), "container \"c1\" already exists");
}

#[test]
fn invalid_ids_never_touch_the_disk() {
    let (_d, store) = store();
    for id in ["../x", "a/b", ".."] {
        assert!(matches!(
            store.create(&sample(id)),
            Err(RuntimeError::InvalidId(_))
        ));
        assert!(matches!(store.load(id), Err(RuntimeError::InvalidId(_))));
    }
    assert_eq!(std::fs::read_dir(store.root()).unwrap().count(), 0);
}

#[test]
fn concurrent_creates_of_one_id_have_one_winner() {
    let (_d, store) = store();
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut state = sample("same");
                state.owner = format!("t{i}");
                barrier.wait();
                store.create(&state).map(|_lock| state.owner)
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, RuntimeError::AlreadyExists(_)), "{r}");
    }
    assert_eq!(&store.load("same").unwrap().owner, winners[0]);
    // The losers' temporary directories are gone.
    assert_eq!(std::fs::read_dir(store.root()).unwrap().count(), 1);
}

#[test]
fn concurrent_locked_saves_stay_consistent() {
    let (_d, store) = store();
    drop(store.create(&sample("c")).unwrap());
    let threads = 6;
    let rounds = 20;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for r in 0..rounds {
                    let _lock = store.lock("c").unwrap();
                    let mut state = store.load("c").unwrap();
                    // A read-modify-write counter: lost updates would show.
                    let n: u32 = state.annotations.get("n").map_or(0, |v| v.parse().unwrap());
                    state.annotations.insert("n".into(), (n + 1).to_string());
                    state.owner = format!("t{t}r{r}");
                    store.save(&state).unwrap();
                }
            })
        })
        .collect();
    // Unlocked readers meanwhile always see a whole state.
    for _ in 0..50 {
        store.load("c").unwrap();
    }
    for h in handles {
        h.join().unwrap();
    }
    let state = store.load("c").unwrap();
    assert_eq!(state.annotations["n"], (threads * rounds).to_string());
    let leftovers: Vec<_> = std::fs::read_dir(store.dir("c"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "state.json" && n != "lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn shared_locks_coexist_and_exclude_writers() {
    let (_d, store) = store();
    let exclusive = store.create(&sample("c")).unwrap();
    assert!(store.try_lock_shared("c").unwrap().is_none());
    drop(exclusive);
    let a = store.try_lock_shared("c").unwrap();
    let b = store.lock_shared("c").unwrap();
    assert!(a.is_some());
    drop((a, b));
    drop(store.lock("c").unwrap());
}

#[test]
fn list_skips_half_created_and_corrupt_dirs() {
    let (_d, store) = store();
    drop(store.create(&sample("b")).unwrap());
    drop(store.create(&sample("a")).unwrap());
    std::fs::create_dir(store.dir("empty")).unwrap();
    std::fs::create_dir(store.dir("corrupt")).unwrap();
    std::fs::write(store.dir("corrupt").join("state.json"), "{not json").unwrap();
    std::fs::create_dir(store.root().join("creating@x@1.0")).unwrap();
    std::fs::write(store.root().join("stray-file"), "").unwrap();
    let ids: Vec<_> = store.list().unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["a", "b"]);
    assert!(matches!(
        store.load("empty"),
        Err(RuntimeError::NotFound(_))
    ));
    let err = store.load("corrupt").unwrap_err().to_string();
    assert!(
        err.contains("corrupt state") && err.contains("state.json"),
        "{err}"
    );
}

#[test]
fn dead_or_reused_pid_is_stopped() {
    let mut state = sample("c");
    state.status = Status::Running;
    // No pid recorded: nothing can be running.
    assert_eq!(state.observed_status(), Status::Stopped);
    // A child that has exited and been reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id() as i32;
    child.wait().unwrap();
    state.pid = Some(dead_pid);
    assert_eq!(state.observed_status(), Status::Stopped);
    // This very process: alive with the right start time, stopped with another.
    let me = std::process::id() as i32;
    let ProcessState::Alive { start_time } = process_start_time(me) else {
        panic!("own process not alive")
    };
    state.pid = Some(me);
    state.pid_start_time = Some(start_time);
    assert_eq!(state.observed_status(), Status::Running);
    state.pid_start_time = Some(start_time + 1);
    assert_eq!(state.observed_status(), Status::Stopped);
    // A stopped or creating state is reported as recorded.
    state.status = Status::Creating;
    assert_eq!(state.observed_status(), Status::Creating);
}

#[test]
fn zombie_is_stopped() {
    let child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    // Wait until it has exited without reaping it (WNOWAIT leaves the zombie).
    nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid)),
        nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
    )
    .unwrap();
    assert_eq!(process_start_time(pid), ProcessState::Zombie);
    let mut state = sample("z");
    state.status = Status::Running;
    state.pid = Some(pid);
    assert_eq!(state.observed_status(), Status::Stopped);
    let mut child = child;
    child.wait().unwrap();
}

#[test]
fn oci_json_has_runc_fields() {
    let mut state = sample("c");
    state.pid = Some(42);
    state.annotations.insert("k".into(), "v".into());
    let v = state.to_oci_json(Status::Running);
    assert_eq!(v["ociVersion"], OCI_VERSION);
    assert_eq!(v["id"], "c");
    assert_eq!(v["status"], "running");
    assert_eq!(v["pid"], 42);
    assert_eq!(v["bundle"], "/bundle");
    assert_eq!(v["rootfs"], "/bundle/rootfs");
    assert_eq!(v["created"], "2024-01-01T00:00:00Z");
    assert_eq!(v["owner"], "root");
    assert_eq!(v["annotations"]["k"], "v");
    assert_eq!(state.to_oci_json(Status::Stopped)["pid"], 0);
    let json = serde_json::to_string(&Status::Creating).unwrap();
    assert_eq!(json, "\"creating\"");
}

#[test]
fn each_verb_applies_in_the_states_runc_allows() {
    use Status::*;
    let all = [Creating, Created, Running, Paused, Stopped];
    let allowed = |pred: fn(Status) -> bool| -> Vec<Status> {
        all.iter().copied().filter(|s| pred(*s)).collect()
    };
    assert_eq!(allowed(Status::can_start), [Created]);
    assert_eq!(allowed(Status::can_kill), [Created, Running, Paused]);
    assert_eq!(allowed(Status::can_pause), [Running]);
    assert_eq!(allowed(Status::can_resume), [Paused]);
    assert_eq!(allowed(Status::can_exec), [Running]);
    assert_eq!(allowed(Status::has_sandbox), [Created, Running, Paused]);
    assert_eq!(
        allowed(|s| s.can_delete(false)),
        [Creating, Created, Stopped]
    );
    assert_eq!(allowed(|s| s.can_delete(true)), all);
}

/// A `--root` another user could change is refused, naming what is wrong; one of
/// husk's own user with mode 0700 (or 0755) is used.
#[test]
fn a_state_root_others_can_change_is_refused() {
    use crate::error::{ErrorKind, RootProblem};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    Store::open(&root).unwrap();
    let mode = |m| std::fs::set_permissions(&root, std::fs::Permissions::from_mode(m)).unwrap();
    mode(0o755);
    Store::open(&root).unwrap();
    for bad in [0o777, 0o775, 0o1777] {
        mode(bad);
        let err = Store::open(&root).unwrap_err();
        assert!(
            matches!(
                &err,
                RuntimeError::UnsafeRoot {
                    problem: RootProblem::Writable { .. },
                    ..
                }
            ),
            "{bad:o}: {err}"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("writable"), "{err}");
    }
    mode(0o700);
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = husk_protocol::error_chain(&Store::open(&file).unwrap_err());
    assert!(err.contains("state root") && err.contains("file"), "{err}");
    if nix::unistd::geteuid().is_root() {
        nix::unistd::chown(&root, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let err = Store::open(&root).unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    }
}
