use super::options;
use super::*;
use serde_json::json;

fn opts(list: &[&str]) -> Result<options::Options, String> {
    options::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn options_follow_runcs_table() {
    let o = opts(&[
        "nosuid",
        "ro",
        "strictatime",
        "mode=755",
        "size=65536k",
        "rw",
        "rslave",
    ])
    .unwrap();
    assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
    assert_eq!(o.propagation, [MsFlags::MS_SLAVE | MsFlags::MS_REC]);
    assert_eq!(o.data, "mode=755,size=65536k");
    let o = opts(&["rbind", "nodev", "noexec", "suid", "defaults"]).unwrap();
    assert_eq!(
        o.flags,
        MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC
    );
    assert!(o.data.is_empty());
    let err = opts(&["tmpcopyup"]).unwrap_err();
    assert!(err.contains("not supported by husk"), "{err}");
    assert!(opts(&[""]).is_err());
}

#[test]
fn every_known_option_is_a_flag_or_a_propagation() {
    for name in options::KNOWN {
        let o = opts(&[name]).unwrap();
        assert!(o.data.is_empty(), "{name} went to data");
    }
}

#[test]
fn paths_are_cleaned_lexically_and_stay_below_the_root() {
    let p = RootPath::new("/a/./b//../../../c/d/").unwrap();
    assert_eq!(p.shown, "/c/d");
    assert_eq!(p.prefixes, [c"c".to_owned(), c"c/d".to_owned()]);
    assert_eq!(p.names, [c"c".to_owned(), c"d".to_owned()]);
    assert_eq!(p.full().as_c_str(), c"c/d");
    for bad in ["relative", "/", "/..", "/a/..", "", "/a\0b"] {
        assert_eq!(RootPath::new(bad), None, "{bad:?}");
    }
}

#[test]
fn a_spec_parses_into_steps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, "").unwrap();
    let spec = json!({
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "mode=755"]},
            {"destination": "/etc/hosts", "type": "bind", "source": file,
             "options": ["rbind", "ro", "private"]},
            {"destination": "/mnt", "source": dir.path(), "options": ["bind"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["ro", "nosuid"]},
        ],
        "linux": {
            "rootfsPropagation": "rslave",
            "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
            "devices": [{"type": "c", "path": "/dev/fuse", "major": 10, "minor": 229,
                         "fileMode": 438, "uid": 0, "gid": 0},
                        {"type": "c", "path": "/dev/null", "major": 1, "minor": 3}]
        }
    });
    let plan = parse(&spec).unwrap();
    assert!(plan.dev_tmpfs && plan.root_readonly && !plan.implicit_proc);
    assert_eq!(plan.propagation, Some(MsFlags::MS_SLAVE | MsFlags::MS_REC));
    let proc_ = &plan.mounts[0];
    assert_eq!(proc_.fstype.as_deref(), Some(c"proc"));
    let dev = &plan.mounts[1];
    assert_eq!(dev.flags, MsFlags::MS_NOSUID);
    assert_eq!(dev.data.as_deref(), Some(c"mode=755"));
    let hosts = &plan.mounts[2];
    assert_eq!(hosts.fstype, None);
    assert!(hosts.file);
    assert_eq!(hosts.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
    assert_eq!(hosts.remount, Some(MsFlags::MS_RDONLY));
    assert_eq!(hosts.propagation, [MsFlags::MS_PRIVATE]);
    assert_eq!(plan.mounts[4].fstype.as_deref(), Some(c"cgroup2"));
    let mnt = &plan.mounts[3];
    assert!(!mnt.file);
    assert_eq!((mnt.flags, mnt.remount), (MsFlags::MS_BIND, None));
    // The defaults but /dev/null (the spec's), then the spec's devices.
    let paths: Vec<_> = plan.devices.iter().map(|d| d.path.shown.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
            "/dev/fuse",
            "/dev/null"
        ]
    );
    assert_eq!(plan.devices[5].dev, nix::sys::stat::makedev(10, 229));
    assert_eq!(plan.devices[5].mode, 0o666);
    assert_eq!(plan.masked[0].shown, "/proc/kcore");
    assert_eq!(plan.readonly[0].shown, "/proc/sys");
    assert_eq!(
        plan.describe_mount(2),
        format!("mount 2 (bind of {} on /etc/hosts)", file.display())
    );
    // A bare spec: /proc where the root has one.
    let bare = parse(&json!({"process": {}})).unwrap();
    assert!(bare.implicit_proc && bare.mounts.is_empty() && !bare.dev_tmpfs);
}

#[test]
fn bad_specs_are_refused_by_name() {
    for (spec, expected) in [
        (
            json!({"mounts": [{"destination": "rel", "type": "tmpfs"}]}),
            "mount 0 (destination \"rel\")",
        ),
        (
            json!({"mounts": [{"destination": "/"}]}),
            "absolute path below the root",
        ),
        (json!({"mounts": [{"destination": "/x"}]}), "no type"),
        (
            json!({"mounts": [{"destination": "/x", "type": "bind"}]}),
            "needs a source",
        ),
        (
            json!({"mounts": [{"destination": "/x", "type": "bind", "source": "rel"}]}),
            "not absolute",
        ),
        (
            json!({"mounts": [{"destination": "/x", "type": "bind", "source": "/no/such/path"}]}),
            "/no/such/path",
        ),
        (
            json!({"mounts": [{"destination": "/x", "type": "tmpfs", "options": ["tmpcopyup"]}]}),
            "tmpcopyup",
        ),
        (json!({"mounts": "no"}), "mounts is not valid"),
        (
            json!({"linux": {"rootfsPropagation": "sideways"}}),
            "sideways",
        ),
        (
            json!({"linux": {"maskedPaths": ["x"]}}),
            "linux.maskedPaths",
        ),
        (
            json!({"linux": {"devices": [{"type": "c", "path": "/dev/x", "major": 1, "minor": 3}]}}),
            "needs a mount",
        ),
        (
            json!({"mounts": [{"destination": "/dev", "type": "tmpfs"}],
                "linux": {"devices": [{"type": "x", "path": "/dev/x"}]}}),
            "not c, u, b or p",
        ),
        (
            json!({"mounts": [{"destination": "/dev", "type": "tmpfs"}],
                "linux": {"devices": [{"type": "c", "path": "/dev/x", "major": -1}]}}),
            "device number",
        ),
    ] {
        let err = parse(&spec).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidArgument);
        assert!(err.message.contains(expected), "{spec}: {}", err.message);
    }
}
