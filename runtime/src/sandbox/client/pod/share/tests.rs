use super::*;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A member added after a slave namespace bound the member directory (as
/// virtiofsd's share does) appears there, read-only where asked, and goes when
/// removed; nothing stays mounted on the host.
#[test]
fn members_propagate_into_a_slave_copy_and_go_again() {
    if !is_root() {
        eprintln!("skipped: needs root (mounts)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    let share = tmp.path().join("share");
    let rootfs = tmp.path().join("rootfs");
    let data = tmp.path().join("data");
    for d in [&sandbox, &share, &rootfs, &data] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(rootfs.join("hello"), "from the rootfs").unwrap();
    let pod = PodShare::of(&sandbox);
    pod.create().unwrap();

    // The "virtiofsd": a slave mount namespace holding the member directory in its
    // share, checking what it sees when told to.
    let script = format!(
        "mount --bind {dir} {share} && echo ready && read go && \
         cat {share}/m1/rootfs/hello && echo && \
         (touch {share}/m1/mounts/1/x 2>/dev/null && echo rw1 || echo ro1) && \
         (touch {share}/m1/mounts/2/y 2>/dev/null && echo rw2 || echo ro2) && \
         read go && (test -e {share}/m1/rootfs/hello && echo still || echo gone)",
        dir = pod.dir().display(),
        share = share.display(),
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "slave", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("unshare(1)");
    let mut input = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");

    let binds = [
        HostBind {
            mount: 1,
            source: data.clone(),
            dir: true,
            readonly: true,
        },
        HostBind {
            mount: 2,
            source: data.clone(),
            dir: true,
            readonly: false,
        },
    ];
    pod.add("m1", &rootfs, &binds).unwrap();
    writeln!(input, "go").unwrap();
    let seen: Vec<String> = (0..3).map(|_| lines.next().unwrap().unwrap()).collect();
    assert_eq!(seen, ["from the rootfs", "ro1", "rw2"]);

    pod.remove("m1").unwrap();
    writeln!(input, "go").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "gone");
    assert!(child.wait().unwrap().success());
    assert!(!pod.dir().join("m1").exists());

    pod.destroy().unwrap();
    assert!(!pod.dir().exists());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(tmp.path().to_str().unwrap()),
        "left mounted:\n{mounts}"
    );
}

#[test]
fn a_failed_member_leaves_nothing() {
    if !is_root() {
        eprintln!("skipped: needs root (mounts)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pod = PodShare::of(tmp.path());
    pod.create().unwrap();
    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let binds = [HostBind {
        mount: 0,
        source: tmp.path().join("missing"),
        dir: true,
        readonly: false,
    }];
    let err = pod.add("m1", &rootfs, &binds).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
    assert!(!pod.dir().join("m1").exists());
    pod.destroy().unwrap();
}

#[test]
fn a_tree_with_data_in_it_is_not_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let member = tmp.path().join("m1");
    std::fs::create_dir_all(member.join("rootfs/etc")).unwrap();
    std::fs::write(member.join("rootfs/etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
    std::fs::create_dir_all(member.join("mounts")).unwrap();
    std::fs::File::create(member.join("mounts/0")).unwrap();
    let err = remove_mount_points(&member).unwrap_err().to_string();
    assert!(
        err.contains("passwd") && err.contains("still mounted"),
        "{err}"
    );
    assert!(member.join("rootfs/etc/passwd").exists());
    std::fs::remove_file(member.join("rootfs/etc/passwd")).unwrap();
    remove_mount_points(&member).unwrap();
    assert!(!member.exists());
}

/// A symlink where a member's mount should be (which the guest cannot plant now
/// that the member directory is read-only in the share, but which the host must not
/// follow anyway) is not followed: the mount it points at stays, the member goes.
#[test]
fn removing_a_member_never_unmounts_through_a_symlink() {
    if !is_root() {
        eprintln!("skipped: needs root (mounts)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sandbox = tmp.path().join("sandbox");
    let elsewhere = tmp.path().join("elsewhere");
    for d in [&sandbox, &elsewhere] {
        std::fs::create_dir_all(d).unwrap();
    }
    mount(
        Some("husk-test"),
        &elsewhere,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=64k"),
    )
    .unwrap();
    std::fs::write(elsewhere.join("keep"), "precious").unwrap();
    let pod = PodShare::of(&sandbox);
    pod.create().unwrap();
    let mounts = pod.dir().join("m1/mounts");
    std::fs::create_dir_all(&mounts).unwrap();
    std::os::unix::fs::symlink(&elsewhere, mounts.join("0")).unwrap();
    let removed = pod.remove("m1");
    let still = std::fs::read_to_string(elsewhere.join("keep"));
    let _ = umount2(&elsewhere, MntFlags::MNT_DETACH);
    assert_eq!(still.unwrap(), "precious", "the host mount was taken away");
    // The symlink is not a mount point husk made: reported, not deleted through.
    let err = removed.unwrap_err();
    assert!(err.to_string().contains("m1/mounts/0"), "{err}");
    let _ = std::fs::remove_file(mounts.join("0"));
    pod.remove("m1").unwrap();
    pod.destroy().unwrap();
}
