//! Tests of the parent module.
use super::*;

/// Builds an entry.
fn e(function: u32, index: u32, regs: [u32; 4]) -> kvm_cpuid_entry2 {
    let significant = matches!(function, 0x4 | 0xb | 0x1f | 0x8000_001d);
    kvm_cpuid_entry2 {
        function,
        index,
        flags: if significant {
            KVM_CPUID_FLAG_SIGNIFCANT_INDEX
        } else {
            0
        },
        eax: regs[0],
        ebx: regs[1],
        ecx: regs[2],
        edx: regs[3],
        ..Default::default()
    }
}

/// Vendor string registers (EBX, EDX, ECX order of the bytes).
fn vendor_regs(max_leaf: u32, id: &[u8; 12]) -> [u32; 4] {
    let word = |i: usize| u32::from_le_bytes([id[i], id[i + 1], id[i + 2], id[i + 3]]);
    [max_leaf, word(0), word(8), word(4)]
}

/// What KVM typically answers on an Intel host with 8 cores / 16 threads: host
/// APIC id 6 in leaf 1, SMT in leaf 0xb, 4 caches in leaf 4.
fn intel_kvm_cpuid() -> CpuId {
    CpuId::from_entries(&[
        e(0x0, 0, vendor_regs(0x1f, b"GenuineIntel")),
        // EBX: APIC id 6, 16 logical, CLFLUSH 8; ECX: TSC deadline, x2APIC...
        e(0x1, 0, [0x000906ea, 0x0610_0800, 0xf7fa_3223, 0x1f8b_fbff]),
        // L1d, L1i, L2 shared by 2 threads, L3 shared by 16; 8 cores.
        e(0x4, 0, [0x1c00_4121, 0x01c0_003f, 0x3f, 0]),
        e(0x4, 1, [0x1c00_4122, 0x01c0_003f, 0x3f, 0]),
        e(0x4, 2, [0x1c00_4143, 0x00c0_003f, 0x3ff, 0]),
        e(0x4, 3, [0x1c03_c163, 0x03c0_003f, 0x2fff, 6]),
        e(0x4, 4, [0, 0, 0, 0]),
        // ARAT plus turbo; ECX EPB and APERF/MPERF.
        e(0x6, 0, [0x0000_0006, 0x2, 0x9, 0]),
        e(0xb, 0, [1, 2, 0x100, 6]),
        e(0xb, 1, [4, 16, 0x201, 6]),
        e(0xb, 2, [0, 0, 2, 6]),
        e(
            0x4000_0000,
            0,
            [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d],
        ),
        e(0x4000_0001, 0, [0x0100_7efb, 0, 0, 0]),
        e(0x8000_0000, 0, [0x8000_0008, 0, 0, 0]),
        e(0x8000_0001, 0, [0, 0, 0x121, 0x2c10_0800]),
        e(0x8000_0008, 0, [0x3027, 0, 0, 0]),
    ])
    .unwrap()
}

/// What KVM typically answers on an AMD Zen host (16 cores, SMT): TOPOEXT, host NC
/// and ApicIdCoreIdSize in 0x8000_0008, host cache sharing in 0x8000_001d, zeroed
/// 0x8000_001e.
fn amd_kvm_cpuid() -> CpuId {
    CpuId::from_entries(&[
        e(0x0, 0, vendor_regs(0x10, b"AuthenticAMD")),
        e(0x1, 0, [0x00a2_0f12, 0x0520_0800, 0xfef8_3203, 0x178b_fbff]),
        e(0x4, 0, [0, 0, 0, 0]),
        e(0x6, 0, [0x4, 0, 0, 0]),
        e(0xb, 0, [1, 2, 0x100, 5]),
        e(0xb, 1, [7, 32, 0x201, 5]),
        e(0xb, 2, [0, 0, 2, 5]),
        e(
            0x4000_0000,
            0,
            [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d],
        ),
        e(0x4000_0001, 0, [0x0100_7efb, 0, 0, 0]),
        e(0x8000_0000, 0, [0x8000_0021, 0, 0, 0]),
        e(0x8000_0001, 0, [0x00a2_0f12, 0, 0x75c2_37ff, 0x2fd3_fbff]),
        e(0x8000_0008, 0, [0x3030, 0, 0x601f, 0]),
        e(0x8000_001d, 0, [0x0000_4121, 0x01c0_003f, 0x3f, 0]),
        e(0x8000_001d, 1, [0x0000_4122, 0x01c0_003f, 0x3f, 0]),
        e(0x8000_001d, 2, [0x0000_4143, 0x01c0_003f, 0x3ff, 2]),
        e(0x8000_001d, 3, [0x0003_c163, 0x03c0_003f, 0x7fff, 1]),
        e(0x8000_001d, 4, [0, 0, 0, 0]),
        e(0x8000_001e, 0, [0, 0, 0, 0]),
    ])
    .unwrap()
}

fn get(cpuid: &CpuId, function: u32, index: u32) -> kvm_cpuid_entry2 {
    *cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == function && e.index == index)
        .unwrap_or_else(|| panic!("no leaf {function:#x} subleaf {index}"))
}

fn normalized(mut cpuid: CpuId, cpu_index: u8, cpu_count: u8) -> CpuId {
    normalize(
        &mut cpuid,
        CpuidTopology {
            cpu_index,
            cpu_count,
        },
    )
    .unwrap();
    cpuid
}

/// The (index, count) pairs every rule is checked for.
const TOPOLOGIES: [(u8, u8); 2] = [(0, 1), (3, 4)];

#[test]
fn leaf_1_apic_id_count_clflush_hypervisor_htt() {
    for (index, count) in TOPOLOGIES {
        for input in [intel_kvm_cpuid(), amd_kvm_cpuid()] {
            let before = get(&input, 0x1, 0);
            let leaf = get(&normalized(input, index, count), 0x1, 0);
            assert_eq!(leaf.ebx >> 24, u32::from(index));
            assert_eq!((leaf.ebx >> 16) & 0xff, u32::from(count));
            assert_eq!((leaf.ebx >> 8) & 0xff, 8);
            assert_eq!(leaf.ebx & 0xff, before.ebx & 0xff, "brand index kept");
            assert_ne!(leaf.ecx & (1 << 31), 0, "hypervisor bit");
            assert_eq!(leaf.ecx & (1 << 24), before.ecx & (1 << 24), "TSC deadline");
            assert_eq!(leaf.edx & (1 << 28) != 0, count > 1, "HTT");
            assert_eq!(leaf.eax, before.eax);
            assert_eq!(leaf.ecx & !(1 << 31), before.ecx & !(1 << 31));
            assert_eq!(leaf.edx & !(1 << 28), before.edx & !(1 << 28));
        }
    }
}

#[test]
fn leaf_4_cores_and_cache_sharing() {
    for (index, count) in TOPOLOGIES {
        let input = intel_kvm_cpuid();
        let cpuid = normalized(input.clone(), index, count);
        for sub in 0..4 {
            let before = get(&input, 0x4, sub);
            let leaf = get(&cpuid, 0x4, sub);
            assert_eq!(leaf.eax >> 26, u32::from(count) - 1, "subleaf {sub}");
            let level = (leaf.eax >> 5) & 7;
            let sharing = (leaf.eax >> 14) & 0xfff;
            let expected = if level == 3 { u32::from(count) - 1 } else { 0 };
            assert_eq!(sharing, expected, "subleaf {sub} (L{level})");
            assert_eq!(leaf.eax & 0x3fff, before.eax & 0x3fff);
            assert_eq!(
                (leaf.ebx, leaf.ecx, leaf.edx),
                (before.ebx, before.ecx, before.edx)
            );
        }
        assert_eq!(get(&cpuid, 0x4, 4), get(&input, 0x4, 4), "terminator kept");
        // AMD reports a zero leaf 4: left alone.
        let amd = normalized(amd_kvm_cpuid(), index, count);
        assert_eq!(get(&amd, 0x4, 0), get(&amd_kvm_cpuid(), 0x4, 0));
    }
}

#[test]
fn leaf_4_core_field_saturates() {
    let cpuid = normalized(intel_kvm_cpuid(), 99, 100);
    let leaf = get(&cpuid, 0x4, 3);
    assert_eq!(leaf.eax >> 26, 63);
    assert_eq!((leaf.eax >> 14) & 0xfff, 99);
}

#[test]
fn leaf_6_thermal_power_cleared_but_arat() {
    for (index, count) in TOPOLOGIES {
        let leaf = get(&normalized(intel_kvm_cpuid(), index, count), 0x6, 0);
        assert_eq!(leaf.eax, 1 << 2, "only ARAT");
        assert_eq!(leaf.ebx, 0);
        assert_eq!(leaf.ecx & (1 << 3), 0, "energy performance bias");
        assert_eq!(leaf.ecx, 0);
        assert_eq!(leaf.edx, 0);
    }
}

fn check_ext_topology(cpuid: &CpuId, function: u32, index: u8, count: u8) {
    let smt = get(cpuid, function, 0);
    assert_eq!(smt.eax & 0x1f, 0);
    assert_eq!(smt.ebx & 0xffff, 1);
    assert_eq!(smt.ecx, 0x100);
    let core = get(cpuid, function, 1);
    let shift = match count {
        1 => 0,
        4 => 2,
        _ => unreachable!(),
    };
    assert_eq!(core.eax & 0x1f, shift);
    assert_eq!(core.ebx & 0xffff, u32::from(count));
    assert_eq!(core.ecx, 0x201);
    for entry in cpuid.as_slice().iter().filter(|e| e.function == function) {
        assert_eq!(
            entry.edx,
            u32::from(index),
            "x2APIC id, subleaf {}",
            entry.index
        );
        assert_ne!(entry.flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX, 0);
        if entry.index >= 2 {
            assert_eq!((entry.eax, entry.ebx), (0, 0));
            assert_eq!(entry.ecx, entry.index, "level type 0");
        }
    }
}

#[test]
fn leaf_b_extended_topology() {
    for (index, count) in TOPOLOGIES {
        for input in [intel_kvm_cpuid(), amd_kvm_cpuid()] {
            let cpuid = normalized(input, index, count);
            check_ext_topology(&cpuid, 0xb, index, count);
            assert!(get(&cpuid, 0xb, 2).ecx & 0xff00 == 0);
        }
    }
}

#[test]
fn leaf_1f_extended_topology_and_extra_levels() {
    // A host with a die level in leaf 0x1f: subleaf 2 must become type 0.
    let mut entries = intel_kvm_cpuid().as_slice().to_vec();
    entries.extend([
        e(0x1f, 0, [1, 2, 0x100, 6]),
        e(0x1f, 1, [4, 16, 0x201, 6]),
        e(0x1f, 2, [6, 32, 0x502, 6]),
        e(0x1f, 3, [0, 0, 3, 6]),
    ]);
    for (index, count) in TOPOLOGIES {
        let cpuid = normalized(CpuId::from_entries(&entries).unwrap(), index, count);
        check_ext_topology(&cpuid, 0x1f, index, count);
        check_ext_topology(&cpuid, 0xb, index, count);
    }
}

#[test]
fn missing_topology_subleaves_are_added_absent_leaves_not() {
    let mut entries = intel_kvm_cpuid().as_slice().to_vec();
    entries.retain(|e| !(e.function == 0xb && e.index != 0));
    let cpuid = normalized(CpuId::from_entries(&entries).unwrap(), 3, 4);
    check_ext_topology(&cpuid, 0xb, 3, 4);
    assert_eq!(cpuid.as_slice().len(), entries.len() + 1);
    // No leaf 0x1f in the input: none in the output.
    assert!(!cpuid.as_slice().iter().any(|e| e.function == 0x1f));
}

#[test]
fn kvm_signature_leaf() {
    let mut entries = intel_kvm_cpuid().as_slice().to_vec();
    for entry in &mut entries {
        if entry.function == 0x4000_0000 {
            // E.g. a zero max leaf and a garbled signature.
            *entry = e(0x4000_0000, 0, [0, 1, 2, 3]);
        }
    }
    for (index, count) in TOPOLOGIES {
        for input in [
            intel_kvm_cpuid(),
            amd_kvm_cpuid(),
            CpuId::from_entries(&entries).unwrap(),
        ] {
            let leaf = get(&normalized(input, index, count), 0x4000_0000, 0);
            let mut sig = Vec::new();
            for reg in [leaf.ebx, leaf.ecx, leaf.edx] {
                sig.extend_from_slice(&reg.to_le_bytes());
            }
            assert_eq!(sig, b"KVMKVMKVM\0\0\0");
            assert!(leaf.eax >= 0x4000_0001);
        }
    }
    // A larger max KVM leaf is kept.
    let mut entries = intel_kvm_cpuid().as_slice().to_vec();
    for entry in &mut entries {
        if entry.function == 0x4000_0000 {
            entry.eax = 0x4000_0010;
        }
    }
    let leaf = get(
        &normalized(CpuId::from_entries(&entries).unwrap(), 0, 1),
        0x4000_0000,
        0,
    );
    assert_eq!(leaf.eax, 0x4000_0010);
}

#[test]
fn missing_kvm_leaf_is_refused() {
    let mut entries = intel_kvm_cpuid().as_slice().to_vec();
    entries.retain(|e| e.function != 0x4000_0000);
    let mut cpuid = CpuId::from_entries(&entries).unwrap();
    let before = cpuid.clone();
    let err = normalize(
        &mut cpuid,
        CpuidTopology {
            cpu_index: 0,
            cpu_count: 1,
        },
    )
    .unwrap_err();
    assert!(matches!(err, CpuidError::MissingKvmLeaf));
    assert_eq!(cpuid, before, "left unchanged");
}

#[test]
fn invalid_topology_is_refused() {
    for (cpu_index, cpu_count) in [(0, 0), (1, 1), (4, 4), (255, 3)] {
        let mut cpuid = intel_kvm_cpuid();
        let err = normalize(
            &mut cpuid,
            CpuidTopology {
                cpu_index,
                cpu_count,
            },
        )
        .unwrap_err();
        assert!(matches!(err, CpuidError::InvalidTopology { .. }));
        assert_eq!(cpuid, intel_kvm_cpuid());
    }
}

#[test]
fn amd_leaf_8000_0008_core_count() {
    for (index, count) in TOPOLOGIES {
        let before = get(&amd_kvm_cpuid(), 0x8000_0008, 0);
        let leaf = get(&normalized(amd_kvm_cpuid(), index, count), 0x8000_0008, 0);
        assert_eq!(leaf.ecx & 0xff, u32::from(count) - 1, "NC");
        let apic_id_size = (leaf.ecx >> 12) & 0xf;
        assert_eq!(apic_id_size, if count == 1 { 0 } else { 2 });
        assert_eq!(leaf.ecx & !0xf0ff, before.ecx & !0xf0ff);
        assert_eq!(
            (leaf.eax, leaf.ebx, leaf.edx),
            (before.eax, before.ebx, before.edx)
        );
    }
    // Reserved on Intel: left alone.
    let leaf = get(&normalized(intel_kvm_cpuid(), 3, 4), 0x8000_0008, 0);
    assert_eq!(leaf, get(&intel_kvm_cpuid(), 0x8000_0008, 0));
}

#[test]
fn amd_topoext_leaves() {
    for (index, count) in TOPOLOGIES {
        let cpuid = normalized(amd_kvm_cpuid(), index, count);
        let ext = get(&cpuid, 0x8000_001e, 0);
        assert_eq!(ext.eax, u32::from(index), "extended APIC id");
        assert_eq!(ext.ebx, u32::from(index), "core id, 1 thread per core");
        assert_eq!((ext.ecx, ext.edx), (0, 0));
        for sub in 0..4 {
            let leaf = get(&cpuid, 0x8000_001d, sub);
            let level = (leaf.eax >> 5) & 7;
            let expected = if level == 3 { u32::from(count) - 1 } else { 0 };
            assert_eq!((leaf.eax >> 14) & 0xfff, expected, "subleaf {sub}");
            assert_eq!(leaf.eax >> 26, 0, "reserved on AMD");
        }
        let features = get(&cpuid, 0x8000_0001, 0);
        assert_ne!(features.ecx & (1 << 22), 0, "TOPOEXT kept");
        assert_eq!(features, get(&amd_kvm_cpuid(), 0x8000_0001, 0));
    }
    // Without leaf 0x8000_001e, TOPOEXT goes.
    let mut entries = amd_kvm_cpuid().as_slice().to_vec();
    entries.retain(|e| e.function != 0x8000_001e);
    let cpuid = normalized(CpuId::from_entries(&entries).unwrap(), 0, 1);
    assert_eq!(get(&cpuid, 0x8000_0001, 0).ecx & (1 << 22), 0);
}

#[test]
fn other_leaves_untouched() {
    for input in [intel_kvm_cpuid(), amd_kvm_cpuid()] {
        let cpuid = normalized(input.clone(), 3, 4);
        for function in [0x0, 0x4000_0001, 0x8000_0000] {
            assert_eq!(get(&cpuid, function, 0), get(&input, function, 0));
        }
        assert_eq!(cpuid.as_slice().len(), input.as_slice().len());
    }
}

#[test]
fn normalization_is_idempotent() {
    for (index, count) in TOPOLOGIES {
        for input in [intel_kvm_cpuid(), amd_kvm_cpuid()] {
            let once = normalized(input, index, count);
            let twice = normalized(once.clone(), index, count);
            assert_eq!(once, twice);
        }
    }
}

#[test]
fn normalizes_the_host_kvm_answer() {
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("skipped: no /dev/kvm");
        return;
    }
    let kvm = match kvm_ioctls::Kvm::new() {
        Ok(kvm) => kvm,
        Err(err) => {
            eprintln!("skipped: cannot open /dev/kvm: {err}");
            return;
        }
    };
    let supported = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .expect("KVM_GET_SUPPORTED_CPUID");
    let vm = kvm.create_vm().expect("KVM_CREATE_VM");
    for cpu_index in 0..2 {
        let mut cpuid = supported.clone();
        normalize(
            &mut cpuid,
            CpuidTopology {
                cpu_index,
                cpu_count: 2,
            },
        )
        .expect("normalize");
        let leaf = get(&cpuid, 0x1, 0);
        assert_eq!(leaf.ebx >> 24, u32::from(cpu_index));
        let mut again = cpuid.clone();
        normalize(
            &mut again,
            CpuidTopology {
                cpu_index,
                cpu_count: 2,
            },
        )
        .expect("normalize again");
        assert_eq!(again, cpuid);
        // KVM takes it.
        let vcpu = vm.create_vcpu(u64::from(cpu_index)).expect("create vCPU");
        vcpu.set_cpuid2(&cpuid).expect("KVM_SET_CPUID2");
    }
}

#[test]
fn tsc_deadline_is_advertised_on_leaf_1_only() {
    let mut cpuid = CpuId::from_entries(&[
        kvm_bindings::kvm_cpuid_entry2 {
            function: 1,
            ecx: 0x8000_0000,
            ..Default::default()
        },
        kvm_bindings::kvm_cpuid_entry2 {
            function: 7,
            ..Default::default()
        },
    ])
    .unwrap();
    enable_tsc_deadline(&mut cpuid);
    let entries = cpuid.as_slice();
    assert_eq!(entries[0].ecx, 0x8000_0000 | LEAF1_ECX_TSC_DEADLINE);
    assert_eq!(entries[1].ecx, 0);
}
