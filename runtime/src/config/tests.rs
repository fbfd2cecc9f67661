use super::*;
use oci_spec::runtime::{LinuxCpuBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder};

const HOST: HostLimits = HostLimits {
    cpus: 8,
    memory_mib: 16384,
};

fn with_virtiofsd() -> HuskConfig {
    HuskConfig {
        virtiofsd: Some("/bin/true".into()),
        ..HuskConfig::default()
    }
}

fn resources(quota: Option<i64>, period: Option<u64>, limit: Option<i64>) -> LinuxResources {
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(q) = quota {
        cpu = cpu.quota(q);
    }
    if let Some(p) = period {
        cpu = cpu.period(p);
    }
    let mut mem = LinuxMemoryBuilder::default();
    if let Some(l) = limit {
        mem = mem.limit(l);
    }
    LinuxResourcesBuilder::default()
        .cpu(cpu.build().unwrap())
        .memory(mem.build().unwrap())
        .build()
        .unwrap()
}

fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_without_file() {
    let c = HuskConfig::load_from(Path::new("/nonexistent/husk.toml"), false).unwrap();
    assert_eq!(c, HuskConfig::default());
    let r = with_virtiofsd()
        .resolve(&BTreeMap::new(), None, HOST)
        .unwrap();
    assert_eq!(r.vcpus, 1);
    assert_eq!(r.memory_mib, 256);
    assert_eq!(r.kernel, PathBuf::from(DEFAULT_KERNEL));
    assert_eq!(r.initramfs, PathBuf::from(DEFAULT_INITRAMFS));
    assert_eq!(r.boot_timeout, Duration::from_secs(30));
    assert_eq!(r.request_timeout, Duration::from_secs(30));
    assert_eq!(r.virtiofsd_timeout, Duration::from_secs(10));
}

#[test]
fn required_file_must_exist() {
    let err = HuskConfig::load_from(Path::new("/nonexistent/husk.toml"), true).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/husk.toml"), "{err}");
}

#[test]
fn file_values_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        "kernel = \"/k\"\ninitramfs = \"/i\"\nvcpus = 2\nmemory_mib = 512\n\
         virtiofsd = \"/v\"\nboot_timeout_secs = 5\nlog_level = \"debug\"\n",
    )
    .unwrap();
    let c = HuskConfig::load_from(&path, true).unwrap();
    let r = c.resolve(&BTreeMap::new(), None, HOST).unwrap();
    assert_eq!((r.vcpus, r.memory_mib), (2, 512));
    assert_eq!(r.kernel, PathBuf::from("/k"));
    assert_eq!(r.virtiofsd, PathBuf::from("/v"));
    assert_eq!(r.boot_timeout, Duration::from_secs(5));
    assert_eq!(r.log_level.as_deref(), Some("debug"));

    std::fs::write(&path, "vcpu = 2\n").unwrap();
    let err = HuskConfig::load_from(&path, true).unwrap_err().to_string();
    assert!(err.contains("vcpu") && err.contains("config.toml"), "{err}");
    std::fs::write(&path, "vcpus = 0\n").unwrap();
    let err = HuskConfig::load_from(&path, true).unwrap_err().to_string();
    assert!(err.contains("vcpus = 0"), "{err}");
    std::fs::write(&path, "memory_mib = \"lots\"\n").unwrap();
    assert!(HuskConfig::load_from(&path, true).is_err());
}

#[test]
fn resources_size_the_vm() {
    let c = with_virtiofsd();
    let none = BTreeMap::new();
    // 1.5 CPUs → 2 vCPUs; 512 MiB limit → 512 + overhead.
    let res = resources(Some(150_000), Some(100_000), Some(512 * 1024 * 1024));
    let r = c.resolve(&none, Some(&res), HOST).unwrap();
    assert_eq!(r.vcpus, 2);
    assert_eq!(r.memory_mib, 512 + MEMORY_OVERHEAD_MIB);
    // Tiny quota still gives one vCPU; huge ones are capped at the host.
    let res = resources(Some(1_000), Some(100_000), Some(1));
    let r = c.resolve(&none, Some(&res), HOST).unwrap();
    assert_eq!(r.vcpus, 1);
    assert_eq!(r.memory_mib, 1 + MEMORY_OVERHEAD_MIB);
    let res = resources(Some(6_400_000), Some(100_000), Some(1 << 50));
    let r = c.resolve(&none, Some(&res), HOST).unwrap();
    assert_eq!(r.vcpus, HOST.cpus);
    assert_eq!(r.memory_mib, HOST.memory_mib);
    // Unlimited (-1) or missing period: the file's defaults.
    let res = resources(Some(-1), Some(100_000), Some(-1));
    let r = c.resolve(&none, Some(&res), HOST).unwrap();
    assert_eq!((r.vcpus, r.memory_mib), (1, 256));
    let res = resources(Some(50_000), None, None);
    assert_eq!(c.resolve(&none, Some(&res), HOST).unwrap().vcpus, 1);
}

#[test]
fn a_pods_resources_size_its_vm() {
    let c = with_virtiofsd();
    // The pause container's own resources are tiny; the pod's annotations win.
    let res = resources(Some(2_000), Some(100_000), Some(16 << 20));
    let pod = annotations(&[
        (POD_MEMORY, "805306368"),
        (POD_CPU_QUOTA, "250000"),
        (POD_CPU_PERIOD, "100000"),
    ]);
    let r = c.resolve(&pod, Some(&res), HOST).unwrap();
    assert_eq!((r.vcpus, r.memory_mib), (3, 768 + MEMORY_OVERHEAD_MIB));
    // husk's own annotations still win; unlimited (0 or -1) pods fall through.
    let mut both = pod.clone();
    both.insert(ANNOTATION_MEMORY.into(), "512".into());
    assert_eq!(c.resolve(&both, None, HOST).unwrap().memory_mib, 512);
    let unlimited = annotations(&[
        (POD_MEMORY, "0"),
        (POD_CPU_QUOTA, "-1"),
        (POD_CPU_PERIOD, "100000"),
    ]);
    let r = c.resolve(&unlimited, None, HOST).unwrap();
    assert_eq!((r.vcpus, r.memory_mib), (1, 256));
}

#[test]
fn annotations_win_over_resources() {
    let c = with_virtiofsd();
    let res = resources(Some(400_000), Some(100_000), Some(1 << 30));
    let a = annotations(&[(ANNOTATION_VCPUS, "3"), (ANNOTATION_MEMORY, "768")]);
    let r = c.resolve(&a, Some(&res), HOST).unwrap();
    assert_eq!((r.vcpus, r.memory_mib), (3, 768));
}

#[test]
fn bad_annotations_name_themselves() {
    let c = with_virtiofsd();
    for (key, value) in [
        (ANNOTATION_VCPUS, "0"),
        (ANNOTATION_VCPUS, "two"),
        (ANNOTATION_VCPUS, "-1"),
        (ANNOTATION_VCPUS, "100000"),
        (ANNOTATION_MEMORY, "1"),
        (ANNOTATION_MEMORY, "1.5"),
        (ANNOTATION_MEMORY, "99999999"),
    ] {
        let err = c
            .resolve(&annotations(&[(key, value)]), None, HOST)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, RuntimeError::InvalidAnnotation { .. }),
            "{msg}"
        );
        assert!(msg.contains(key) && msg.contains(value), "{msg}");
    }
}
