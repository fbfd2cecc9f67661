//! Kubernetes' path: containerd's CRI plugin with a runtime handler `husk`
//! (`runtime_type = "io.containerd.husk.v2"`), driven by a CRI client as the kubelet
//! drives it ([`husk_tests::cri_client`]): a pod sandbox, two containers, exec,
//! status, listing, stop and removal. The same client runs the same pod under runc,
//! the node's default runtime, which checks the suite itself. Needs hardware KVM:
//! ignored by a plain `cargo test`, run in the testbed by `tests/run.sh`.

use husk_tests::containerd_daemon::{
    husk_process_memory, Containerd, ScrubOnFailure, CRI_HANDLER, IMAGE, PAUSE_IMAGE,
};
use husk_tests::cri_client::Cri;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The pause container: busybox's shell waiting for the SIGTERM of StopPodSandbox.
const PAUSE_CMD: &str =
    r#"CMD ["/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"]"#;

/// A containerd with the CRI plugin, the busybox and pause images imported. Its
/// directory has a short name: a pod ID is 64 characters, and the sockets of the
/// sandbox's state directory `<dir>/husk-shim/k8s.io/<id>/` must fit `sun_path`
/// (107 bytes), which leaves 10 for `<dir>` (husk refuses a longer one by name).
fn node(name: &str) -> Containerd {
    let c = Containerd::start_cri(PathBuf::from(format!(
        "/run/c{}{}",
        &name[..1],
        std::process::id() % 1000
    )));
    let busybox = c.build_image_archive();
    c.import_image(&busybox);
    let pause = c.build_busybox_archive(PAUSE_IMAGE, &[PAUSE_CMD]);
    c.import_image_as(&pause, PAUSE_IMAGE);
    c
}

/// The pod's sandbox configuration, as the kubelet writes it.
fn pod_config(c: &Containerd, name: &str) -> Value {
    let logs = c.dir.join("pods").join(name);
    std::fs::create_dir_all(&logs).unwrap();
    json!({
        "metadata": {"name": name, "uid": format!("{name}-uid"), "namespace": "husk-e2e", "attempt": 0},
        "hostname": name,
        "logDirectory": logs,
        "linux": {"securityContext": {"namespaceOptions": namespaces()}}
    })
}

/// The pod's namespace options: network and IPC shared by the pod, a PID namespace
/// per container.
fn namespaces() -> Value {
    json!({"network": "POD", "pid": "CONTAINER", "ipc": "POD"})
}

/// Creates and starts container `name` of the pod running `command`; its ID.
fn start_container(cri: &Cri, pod: &str, config: &Value, name: &str, command: &[&str]) -> String {
    let created = cri.ok(
        "CreateContainer",
        &json!({
            "podSandboxId": pod,
            "config": {
                "metadata": {"name": name, "attempt": 0},
                "image": {"image": IMAGE},
                "command": command,
                "logPath": format!("{name}.log"),
                // As the kubelet sets it for a pod without shareProcessNamespace.
                "linux": {"securityContext": {"namespaceOptions": namespaces()}},
            },
            "sandboxConfig": config,
        }),
    );
    let id = created["containerId"].as_str().unwrap().to_owned();
    cri.ok("StartContainer", &json!({"containerId": id}));
    id
}

/// ExecSync of `cmd` in container `id`: exit code and stdout.
fn exec_sync(cri: &Cri, id: &str, cmd: &[&str]) -> (i64, String) {
    let (code, stdout, _) = exec_sync_all(cri, id, cmd);
    (code, stdout)
}

/// ExecSync's exit code, stdout and stderr.
fn exec_sync_all(cri: &Cri, id: &str, cmd: &[&str]) -> (i64, String, String) {
    let out = cri.ok(
        "ExecSync",
        &json!({"containerId": id, "cmd": cmd, "timeout": 120}),
    );
    let text = |key: &str| out[key].as_str().unwrap_or_default().to_owned();
    (
        out["exitCode"].as_i64().unwrap_or(0),
        text("stdout"),
        text("stderr"),
    )
}

/// What one run of the pod saw.
struct PodRun {
    /// husk's processes' resident memory while the pod ran (empty under runc).
    memory: Vec<(&'static str, u64)>,
    /// The boot ID each container read.
    boot_ids: [String; 2],
}

/// Runs the kubelet's sequence for a pod of two containers under `handler` (empty:
/// the default runtime) and checks what holds for any runtime; gives back what
/// differs between runtimes.
fn run_pod(c: &Containerd, handler: &str) -> PodRun {
    let cri = Cri(c);
    let config = pod_config(c, "pod1");
    let pod = cri.ok(
        "RunPodSandbox",
        &json!({"config": config, "runtimeHandler": handler}),
    )["podSandboxId"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = cri.ok("PodSandboxStatus", &json!({"podSandboxId": pod}));
    assert_eq!(status["status"]["state"], "SANDBOX_READY", "{status}");
    let ip = status["status"]["network"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let server = start_container(
        &cri,
        &pod,
        &config,
        "server",
        &["sh", "-c", "echo pod-net | nc -l -p 7000; sleep 1000"],
    );
    let client = start_container(&cri, &pod, &config, "client", &["sleep", "1000"]);
    for id in [&server, &client] {
        let status = cri.ok("ContainerStatus", &json!({"containerId": id}));
        assert_eq!(status["status"]["state"], "CONTAINER_RUNNING", "{status}");
    }
    let listed = cri.ok("ListContainers", &json!({"filter": {"podSandboxId": pod}}));
    let names: Vec<&str> = listed["containers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["metadata"]["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names.len(), 2, "{listed}");

    // The pod's network namespace is shared: the server listens on the loopback
    // the client sees.
    let (code, got) = exec_sync(&cri, &client, &["nc", "127.0.0.1", "7000"]);
    assert_eq!((code, got.trim()), (0, "pod-net"));
    let (code, _) = exec_sync(&cri, &client, &["sh", "-c", "exit 3"]);
    assert_eq!(code, 3);
    let boot = |id: &str| exec_sync(&cri, id, &["cat", "/proc/sys/kernel/random/boot_id"]).1;
    let boot_ids = [boot(&server), boot(&client)];
    let (_, addresses) = exec_sync(&cri, &client, &["ip", "-4", "addr"]);
    assert!(
        addresses.contains(&ip),
        "the pod IP {ip} is not in {addresses}"
    );
    // The pod's IPC and UTS namespaces are shared; each container has its own PID
    // namespace (`pid: CONTAINER`) and its own cgroup namespace (rooted at its own
    // cgroup).
    let place = |id: &str| {
        let script = "for ns in ipc uts pid cgroup; do readlink /proc/self/ns/$ns; done; \
                      hostname; echo pid1=$(cat /proc/1/comm)";
        let (code, out, err) = exec_sync_all(&cri, id, &["sh", "-c", script]);
        assert_eq!(code, 0, "in {id}: stdout {out:?}, stderr {err:?}");
        out.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let (sp, cp) = (place(&server), place(&client));
    assert_eq!(sp.len(), 6, "{sp:?}");
    assert_eq!(
        (&sp[0], &sp[1]),
        (&cp[0], &cp[1]),
        "IPC and UTS namespaces differ"
    );
    assert_ne!(sp[2], cp[2], "one PID namespace for both: {sp:?} {cp:?}");
    assert_ne!(sp[3], cp[3], "one cgroup namespace for both: {sp:?} {cp:?}");
    assert_eq!((sp[4].as_str(), cp[4].as_str()), ("pod1", "pod1"));
    // The client's own command is PID 1 of its namespace, not the pause process.
    assert_eq!(cp[5], "pid1=sleep");
    // With the pod's IPC namespace comes the pod's /dev/shm (POSIX shared memory).
    let (code, out) = exec_sync(&cri, &server, &["sh", "-c", "echo pod-shm > /dev/shm/x"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = exec_sync(&cri, &client, &["cat", "/dev/shm/x"]);
    assert_eq!(
        (code, out.trim()),
        (0, "pod-shm"),
        "/dev/shm is not the pod's"
    );
    let memory = husk_process_memory();

    cri.ok("StopPodSandbox", &json!({"podSandboxId": pod}));
    cri.ok("RemovePodSandbox", &json!({"podSandboxId": pod}));
    let left = cri.ok("ListPodSandbox", &json!({}));
    assert_eq!(left["items"], json!([]), "pods left: {left}");
    c.assert_nothing_left();
    PodRun { memory, boot_ids }
}

fn host_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap()
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_pod_runs_under_runc_with_the_same_client() {
    let own = node("runc");
    let c = ScrubOnFailure(&own);
    let run = run_pod(&c, "");
    assert_eq!(run.boot_ids[0], host_boot_id());
    c.stop();
}

#[test]
#[ignore = "needs hardware KVM: run through tests/run.sh (testbed)"]
fn a_pod_of_two_containers_shares_one_microvm() {
    let own = node("husk");
    let c = ScrubOnFailure(&own);
    let run = run_pod(&c, CRI_HANDLER);
    // A figure for the RuntimeClass's podOverhead (docs/kubernetes.md), not a check.
    let mut total = 0;
    for (kind, kib) in &run.memory {
        println!("pod host memory: {kind} {:.1} MiB", *kib as f64 / 1024.0);
        total += kib;
    }
    println!("pod host memory: total {:.1} MiB", total as f64 / 1024.0);
    assert!(
        run.memory.iter().filter(|(k, _)| *k == "sandbox").count() == 1,
        "one VM for the pod: {:?}",
        run.memory
    );
    assert_ne!(
        run.boot_ids[0],
        host_boot_id(),
        "the pod ran on the host kernel"
    );
    assert_eq!(
        run.boot_ids[0], run.boot_ids[1],
        "the pod's containers ran in different guests"
    );
    c.stop();
}
