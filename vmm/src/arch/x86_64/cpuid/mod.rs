//! CPUID normalization.
//!
//! `KVM_GET_SUPPORTED_CPUID` answers with what KVM *can* offer a guest, largely the
//! host's CPUID with unsupported features masked off. Its topology fields describe the
//! host (host APIC ids, host core and thread counts), and a few leaves advertise things
//! a VM cannot honour. [`normalize`] rewrites that answer for one vCPU of a VM before it
//! is handed to `KVM_SET_CPUID2`.
//!
//! The topology presented to the guest: one package (socket) whose cores are the vCPUs,
//! one thread per core, one NUMA node. vCPU `i` has (x2)APIC id `i`, matching the MP
//! table ([`super::mptable`]) and KVM's default APIC id (the vCPU id).
//!
//! What is changed, leaf by leaf (each rule is documented where it is applied):
//!
//! | leaf | change |
//! |------|--------|
//! | `0x1` | APIC id, logical processor count, CLFLUSH size, hypervisor bit, HTT |
//! | `0x4` | cores per package, threads sharing each cache |
//! | `0x6` | everything but ARAT cleared |
//! | `0xb`, `0x1f` | SMT and core levels rewritten, x2APIC id |
//! | `0x4000_0000` | KVM signature and highest KVM leaf |
//! | `0x8000_0001` (AMD) | TOPOEXT cleared if `0x8000_001e` is missing |
//! | `0x8000_0008` (AMD) | core count (NC) and APIC id core bits |
//! | `0x8000_001d` (AMD) | threads sharing each cache |
//! | `0x8000_001e` (AMD) | extended APIC id, core id, node id |
//!
//! Leaves the input lacks are left alone: a leaf KVM does not report is one the guest
//! sees as zeros. The exceptions are
//!
//! * the KVM signature leaf `0x4000_0000`: its absence means the input is not a KVM
//!   answer at all, so [`normalize`] refuses it ([`CpuidError::MissingKvmLeaf`]) rather
//!   than hiding KVM (and kvm-clock) from the guest;
//! * subleaves 0 and 1 of `0xb` and `0x1f` *when the leaf exists*: a guest that finds the
//!   leaf expects both the SMT and the core level, so missing ones are added.
//!
//! Normalization is idempotent: normalizing twice gives the result of normalizing once.

use kvm_bindings::{kvm_cpuid_entry2, CpuId, KVM_CPUID_FLAG_SIGNIFCANT_INDEX};

/// Where a vCPU sits in the VM's topology: each vCPU is a core of a single package,
/// with one thread per core.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidTopology {
    /// Index of this vCPU, also its (x2)APIC id; below `cpu_count`.
    pub cpu_index: u8,
    /// Number of vCPUs in the VM; at least 1.
    pub cpu_count: u8,
}

/// Why CPUID could not be normalized.
#[derive(Debug, thiserror::Error)]
pub enum CpuidError {
    /// `cpu_count` is 0 or `cpu_index` is not below it.
    #[error("vCPU {cpu_index} of {cpu_count} is not a valid topology")]
    InvalidTopology {
        /// The vCPU index given.
        cpu_index: u8,
        /// The vCPU count given.
        cpu_count: u8,
    },
    /// The input has no KVM signature leaf `0x4000_0000`; it is not KVM's answer.
    #[error("CPUID leaf 0x40000000 (KVM signature) is missing")]
    MissingKvmLeaf,
    /// A missing subleaf could not be added: the CPUID array is full.
    #[error("cannot add CPUID leaf {function:#x} subleaf {index}")]
    AddEntry {
        /// The leaf.
        function: u32,
        /// The subleaf.
        index: u32,
        /// What the CPUID array reported.
        #[source]
        source: vmm_sys_util::fam::Error,
    },
}

/// Leaf 0x0: highest basic leaf and vendor id.
const LEAF_VENDOR: u32 = 0x0;
/// Leaf 0x1: version and feature information.
const LEAF_FEATURES: u32 = 0x1;
/// Leaf 0x4: Intel deterministic cache parameters.
const LEAF_CACHE_PARAMS: u32 = 0x4;
/// Leaf 0x6: thermal and power management.
const LEAF_THERMAL_POWER: u32 = 0x6;
/// Leaf 0xb: extended topology enumeration.
const LEAF_EXT_TOPOLOGY: u32 = 0xb;
/// Leaf 0x1f: V2 extended topology enumeration.
const LEAF_EXT_TOPOLOGY_V2: u32 = 0x1f;
/// Leaf 0x4000_0000: KVM signature and highest KVM leaf.
const LEAF_KVM_SIGNATURE: u32 = 0x4000_0000;
/// Leaf 0x4000_0001: KVM paravirtual features.
const LEAF_KVM_FEATURES: u32 = 0x4000_0001;
/// Leaf 0x8000_0001: extended features.
const LEAF_EXT_FEATURES: u32 = 0x8000_0001;
/// Leaf 0x8000_0008: address sizes and (AMD) core count.
const LEAF_AMD_SIZE_IDS: u32 = 0x8000_0008;
/// Leaf 0x8000_001d: AMD cache topology.
const LEAF_AMD_CACHE_TOPOLOGY: u32 = 0x8000_001d;
/// Leaf 0x8000_001e: AMD extended APIC id, core and node ids.
const LEAF_AMD_EXT_APIC_ID: u32 = 0x8000_001e;

/// "KVMKVMKVM\0\0\0" as CPUID.0x4000_0000 returns it in EBX, ECX, EDX.
const KVM_SIGNATURE: [u32; 3] = [
    u32::from_le_bytes(*b"KVMK"),
    u32::from_le_bytes(*b"VMKV"),
    u32::from_le_bytes(*b"M\0\0\0"),
];

/// CPUID.1:EBX[31:24], initial APIC id.
const EBX_APIC_ID_SHIFT: u32 = 24;
/// CPUID.1:EBX[23:16], maximum addressable logical processor ids in the package.
const EBX_CPU_COUNT_SHIFT: u32 = 16;
/// CPUID.1:EBX[15:8], CLFLUSH line size in 8-byte units.
const EBX_CLFLUSH_SHIFT: u32 = 8;
/// CLFLUSH line size: 8 * 8 = 64 bytes.
const CLFLUSH_LINE_SIZE: u32 = 8;
/// CPUID.1:ECX[31], running under a hypervisor.
const ECX_HYPERVISOR: u32 = 1 << 31;
/// CPUID.1:EDX[28], HTT: EBX[23:16] is valid (more than one logical processor).
const EDX_HTT: u32 = 1 << 28;

/// CPUID.4:EAX[4:0] (and 0x8000_001d): cache type, 0 = no more caches.
const CACHE_TYPE_MASK: u32 = 0x1f;
/// CPUID.4:EAX[7:5]: cache level.
const CACHE_LEVEL_SHIFT: u32 = 5;
/// CPUID.4:EAX[25:14]: logical processors sharing this cache, minus 1.
const CACHE_SHARING_SHIFT: u32 = 14;
/// Width of CPUID.4:EAX[25:14].
const CACHE_SHARING_MASK: u32 = 0xfff;
/// CPUID.4:EAX[31:26]: addressable core ids in the package, minus 1.
const CACHE_CORES_SHIFT: u32 = 26;
/// Width of CPUID.4:EAX[31:26].
const CACHE_CORES_MASK: u32 = 0x3f;

/// CPUID.6:EAX[2], ARAT: the APIC timer runs in every C-state.
const EAX_ARAT: u32 = 1 << 2;

/// CPUID.0xb:ECX[15:8], level type.
const LEVEL_TYPE_SHIFT: u32 = 8;
/// Level type: SMT (threads of a core).
const LEVEL_TYPE_SMT: u32 = 1;
/// Level type: core.
const LEVEL_TYPE_CORE: u32 = 2;

/// CPUID.0x8000_0001:ECX[22], TOPOEXT: leaves 0x8000_001d and 0x8000_001e are valid.
const ECX_TOPOEXT: u32 = 1 << 22;
/// CPUID.0x8000_0008:ECX[7:0], NC: number of cores in the package, minus 1.
const ECX_NC_MASK: u32 = 0xff;
/// CPUID.0x8000_0008:ECX[15:12], ApicIdCoreIdSize: APIC id bits that number cores.
const ECX_APIC_ID_SIZE_SHIFT: u32 = 12;
/// Width of CPUID.0x8000_0008:ECX[15:12].
const ECX_APIC_ID_SIZE_MASK: u32 = 0xf;

/// Replaces the `mask`-wide field at `shift` of `reg` with `value` (truncated).
fn set_field(reg: &mut u32, shift: u32, mask: u32, value: u32) {
    *reg = (*reg & !(mask << shift)) | ((value & mask) << shift);
}

/// Bits an id needs so that `count` distinct ids fit: ceil(log2(count)).
fn id_bits(count: u8) -> u32 {
    u32::from(count).next_power_of_two().trailing_zeros()
}

/// The CPU vendor, as far as normalization cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vendor {
    /// AMD or Hygon: the AMD topology leaves apply.
    Amd,
    /// Anything else (Intel, or no leaf 0).
    Other,
}

/// Reads the vendor from leaf 0 (vendor string in EBX, EDX, ECX).
fn vendor(cpuid: &CpuId) -> Vendor {
    let amd_like = [*b"AuthenticAMD", *b"HygonGenuine"];
    cpuid
        .as_slice()
        .iter()
        .find(|e| e.function == LEAF_VENDOR)
        .map_or(Vendor::Other, |e| {
            let mut id = [0u8; 12];
            id[0..4].copy_from_slice(&e.ebx.to_le_bytes());
            id[4..8].copy_from_slice(&e.edx.to_le_bytes());
            id[8..12].copy_from_slice(&e.ecx.to_le_bytes());
            if amd_like.contains(&id) {
                Vendor::Amd
            } else {
                Vendor::Other
            }
        })
}

/// Whether `cpuid` has any entry for leaf `function`.
fn has_leaf(cpuid: &CpuId, function: u32) -> bool {
    cpuid.as_slice().iter().any(|e| e.function == function)
}

/// Adds the subleaves 0 and 1 of `function` that are missing, if the leaf exists.
fn add_topology_subleaves(cpuid: &mut CpuId, function: u32) -> Result<(), CpuidError> {
    if !has_leaf(cpuid, function) {
        return Ok(());
    }
    for index in [0, 1] {
        let present = cpuid
            .as_slice()
            .iter()
            .any(|e| e.function == function && e.index == index);
        if !present {
            let entry = kvm_cpuid_entry2 {
                function,
                index,
                flags: KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
                ..Default::default()
            };
            cpuid.push(entry).map_err(|source| CpuidError::AddEntry {
                function,
                index,
                source,
            })?;
        }
    }
    Ok(())
}

/// Rewrites the CPUID that `KVM_GET_SUPPORTED_CPUID` returned for vCPU
/// `topo.cpu_index` of a VM of `topo.cpu_count` vCPUs (see the [module docs](self) for
/// the rules). Call it on a fresh copy of KVM's answer for every vCPU, then pass the
/// result to `set_cpuid2`.
///
/// # Errors
///
/// [`CpuidError::InvalidTopology`] when `cpu_count` is 0 or `cpu_index >= cpu_count`,
/// [`CpuidError::MissingKvmLeaf`] when there is no leaf `0x4000_0000`,
/// [`CpuidError::AddEntry`] when a missing topology subleaf cannot be added. `cpuid` is
/// unchanged after the first two; after the last it may have gained subleaves.
pub fn normalize(cpuid: &mut CpuId, topo: CpuidTopology) -> Result<(), CpuidError> {
    let CpuidTopology {
        cpu_index,
        cpu_count,
    } = topo;
    if cpu_count == 0 || cpu_index >= cpu_count {
        return Err(CpuidError::InvalidTopology {
            cpu_index,
            cpu_count,
        });
    }
    if !has_leaf(cpuid, LEAF_KVM_SIGNATURE) {
        return Err(CpuidError::MissingKvmLeaf);
    }
    let vendor = vendor(cpuid);
    add_topology_subleaves(cpuid, LEAF_EXT_TOPOLOGY)?;
    add_topology_subleaves(cpuid, LEAF_EXT_TOPOLOGY_V2)?;
    let has_amd_ext_apic_id = has_leaf(cpuid, LEAF_AMD_EXT_APIC_ID);

    let index = u32::from(cpu_index);
    let count = u32::from(cpu_count);
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            LEAF_FEATURES => normalize_features(entry, index, count),
            LEAF_CACHE_PARAMS => normalize_cache(entry, count, true),
            LEAF_THERMAL_POWER => normalize_thermal_power(entry),
            LEAF_EXT_TOPOLOGY | LEAF_EXT_TOPOLOGY_V2 => {
                normalize_ext_topology(entry, index, cpu_count)
            }
            LEAF_KVM_SIGNATURE => normalize_kvm_signature(entry),
            // TOPOEXT tells the guest to take its core ids and extended APIC id from
            // leaf 0x8000_001e (and cache sharing from 0x8000_001d). Without that leaf
            // it would read zeros: every vCPU would claim APIC id 0 and core 0.
            // Everything else, CmpLegacy included (with HTT it says that the logical
            // processors are cores, which is what they are here), is kept as KVM
            // reports it.
            LEAF_EXT_FEATURES if vendor == Vendor::Amd && !has_amd_ext_apic_id => {
                entry.ecx &= !ECX_TOPOEXT;
            }
            LEAF_AMD_SIZE_IDS if vendor == Vendor::Amd => {
                // NC: cores in the package minus 1; ApicIdCoreIdSize: the APIC id bits
                // that number those cores (0 would mean "derive from NC", the same
                // here; KVM passes the host's value through, so it must be set).
                // On Intel this ECX is reserved and left alone.
                set_field(&mut entry.ecx, 0, ECX_NC_MASK, count - 1);
                set_field(
                    &mut entry.ecx,
                    ECX_APIC_ID_SIZE_SHIFT,
                    ECX_APIC_ID_SIZE_MASK,
                    id_bits(cpu_count),
                );
            }
            LEAF_AMD_CACHE_TOPOLOGY if vendor == Vendor::Amd => {
                normalize_cache(entry, count, false)
            }
            LEAF_AMD_EXT_APIC_ID if vendor == Vendor::Amd => {
                // KVM reports zeros. EAX: extended APIC id. EBX[7:0]: core (compute
                // unit) id; EBX[15:8]: threads per core minus 1 = 0. ECX[7:0]: node
                // id 0; ECX[10:8]: nodes per package minus 1 = 0. EDX: reserved.
                entry.eax = index;
                entry.ebx = index;
                entry.ecx = 0;
                entry.edx = 0;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Leaf 0x1.
fn normalize_features(entry: &mut kvm_cpuid_entry2, index: u32, count: u32) {
    // EBX[31:24] initial APIC id; EBX[23:16] logical processors in the package (valid
    // with HTT); EBX[15:8] CLFLUSH line size, 64 bytes as on every x86-64 CPU. EBX[7:0],
    // the brand index, is kept.
    set_field(&mut entry.ebx, EBX_APIC_ID_SHIFT, 0xff, index);
    set_field(&mut entry.ebx, EBX_CPU_COUNT_SHIFT, 0xff, count);
    set_field(&mut entry.ebx, EBX_CLFLUSH_SHIFT, 0xff, CLFLUSH_LINE_SIZE);
    // The guest runs under a hypervisor; Linux looks at this before probing for
    // paravirtual features. ECX[24], the TSC deadline timer, is kept as KVM reports it:
    // KVM emulates it when KVM_CAP_TSC_DEADLINE_TIMER is present, which is the caller's
    // to check if it wants to set the bit.
    entry.ecx |= ECX_HYPERVISOR;
    // HTT: more than one logical processor in the package.
    if count > 1 {
        entry.edx |= EDX_HTT;
    } else {
        entry.edx &= !EDX_HTT;
    }
}

/// Leaf 0x4 (`intel_fields`) or 0x8000_001d: one subleaf per cache.
fn normalize_cache(entry: &mut kvm_cpuid_entry2, count: u32, intel_fields: bool) {
    if entry.eax & CACHE_TYPE_MASK == 0 {
        // No cache: the terminating subleaf, kept as is (zeros).
        return;
    }
    // With one thread per core, L1 and L2 are private to a vCPU; L3 (and beyond) is
    // shared by the whole package, so Linux puts all vCPUs in one LLC domain.
    let level = (entry.eax >> CACHE_LEVEL_SHIFT) & 0x7;
    let sharing = if level >= 3 { count - 1 } else { 0 };
    set_field(
        &mut entry.eax,
        CACHE_SHARING_SHIFT,
        CACHE_SHARING_MASK,
        sharing,
    );
    if intel_fields {
        // Addressable core ids in the package minus 1; the field is 6 bits wide, so
        // more than 64 vCPUs saturate at 63 (leaf 0xb, which Linux prefers, is exact).
        set_field(
            &mut entry.eax,
            CACHE_CORES_SHIFT,
            CACHE_CORES_MASK,
            (count - 1).min(CACHE_CORES_MASK),
        );
    }
}

/// Leaf 0x6.
fn normalize_thermal_power(entry: &mut kvm_cpuid_entry2) {
    // EAX: keep only ARAT (KVM's emulated APIC timer does not stop in idle states);
    // drop digital thermal sensor, turbo boost (bit 1), power limit notification,
    // HWP and the like, whose MSRs KVM does not emulate.
    entry.eax &= EAX_ARAT;
    // EBX: number of interrupt thresholds of the digital thermal sensor, absent.
    entry.ebx = 0;
    // ECX: bit 0 (APERF/MPERF) needs MSRs KVM intercepts by default; bit 3, the energy
    // performance bias MSR, is not emulated (Firecracker clears it too). Nothing else
    // in ECX is emulated either.
    entry.ecx = 0;
    // EDX: hardware feedback interface, not emulated.
    entry.edx = 0;
}

/// Leaf 0xb or 0x1f, one entry per subleaf.
fn normalize_ext_topology(entry: &mut kvm_cpuid_entry2, index: u32, cpu_count: u8) {
    // Each subleaf is its own entry: make sure KVM matches on the subleaf.
    entry.flags |= KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
    match entry.index {
        0 => {
            // SMT level: one thread per core, so no x2APIC id bits for threads.
            entry.eax = 0;
            entry.ebx = 1;
            entry.ecx = (LEVEL_TYPE_SMT << LEVEL_TYPE_SHIFT) | entry.index;
        }
        1 => {
            // Core level: the package's cores are numbered by the low id_bits(count)
            // bits of the x2APIC id; shifting those away gives the package id 0.
            entry.eax = id_bits(cpu_count);
            entry.ebx = u32::from(cpu_count);
            entry.ecx = (LEVEL_TYPE_CORE << LEVEL_TYPE_SHIFT) | entry.index;
        }
        _ => {
            // No further levels (module, tile, die): level type 0 ends the list.
            // ECX[7:0] echoes the subleaf, as hardware does for invalid levels.
            entry.eax = 0;
            entry.ebx = 0;
            entry.ecx = entry.index & 0xff;
        }
    }
    // EDX: x2APIC id of this vCPU, on every subleaf.
    entry.edx = index;
}

/// Leaf 0x4000_0000.
fn normalize_kvm_signature(entry: &mut kvm_cpuid_entry2) {
    // The signature Linux's kvm_cpuid_base() looks for, and at least the features leaf
    // 0x4000_0001 behind it (kvm-clock, PV EOI, ...).
    entry.eax = entry.eax.max(LEAF_KVM_FEATURES);
    [entry.ebx, entry.ecx, entry.edx] = KVM_SIGNATURE;
}

/// CPUID.01H:ECX bit 24: the local APIC supports TSC-deadline mode.
pub const LEAF1_ECX_TSC_DEADLINE: u32 = 1 << 24;

/// Advertises the TSC-deadline timer. `KVM_GET_SUPPORTED_CPUID` leaves this bit to the
/// VMM, to be set when KVM has `KVM_CAP_TSC_DEADLINE_TIMER`. Without it Linux drives
/// its local APIC timer in one-shot mode after calibrating it against the PIT, which
/// is slower to boot and, under nested virtualization, can stall.
pub fn enable_tsc_deadline(cpuid: &mut CpuId) {
    for entry in cpuid.as_mut_slice() {
        if entry.function == 1 {
            entry.ecx |= LEAF1_ECX_TSC_DEADLINE;
        }
    }
}

#[cfg(test)]
mod tests;
