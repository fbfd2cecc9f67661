//! The Intel MultiProcessor Specification (version 1.4) table.
//!
//! A Linux guest booted without ACPI finds its processors and its I/O APIC through an
//! MP table. Linux scans, among other places, the last KiB of base memory
//! (`0x9fc00..0xa0000`) for the 16-byte *MP floating pointer structure*, whose
//! signature is `_MP_`. That structure points at the *MP configuration table*: a
//! `PCMP` header followed by variable-length entries, here
//!
//! * one processor entry per vCPU (local APIC id = vCPU index, cpu 0 is the bootstrap
//!   processor),
//! * one ISA bus entry (bus id 0),
//! * one I/O APIC entry (id `num_cpus + 1`, at `0xfec00000`),
//! * one I/O interrupt entry per ISA IRQ 0..=23, each routed to the I/O APIC pin of the
//!   same number, with conforming polarity and trigger mode,
//! * two local interrupt entries: ExtINT to LINT0 and NMI to LINT1 of every local APIC.
//!
//! The whole table (floating pointer, header, entries) is written contiguously from
//! [`MPTABLE_START`] and must end at or before [`MPTABLE_END`], the range the e820 map
//! marks reserved. Processor entries are 20 bytes each, so that window holds at most
//! [`MAX_SUPPORTED_CPUS`] of them.

use std::mem::size_of;

use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryError};

/// Guest physical address of the MP table: the start of the EBDA, i.e. the last KiB of
/// the 640 KiB of base memory, one of the places Linux scans for the floating pointer.
pub const MPTABLE_START: u64 = 0x9fc00;

/// End (exclusive) of the guest memory the MP table may occupy: the top of base memory.
/// `MPTABLE_START..MPTABLE_END` must be marked reserved in the e820 map.
pub const MPTABLE_END: u64 = 0xa0000;

/// The most vCPUs an MP table at [`MPTABLE_START`] can describe.
///
/// Local APIC ids are 8 bits wide, 0xff is the broadcast id and the I/O APIC takes the id
/// after the last vCPU, which would allow 254 vCPUs. The binding limit however is space:
/// with 20 bytes per processor entry only this many fit between [`MPTABLE_START`] and
/// [`MPTABLE_END`].
pub const MAX_SUPPORTED_CPUS: u8 = {
    let by_space = ((MPTABLE_END - MPTABLE_START) as usize - fixed_size()) / size_of::<MpcCpu>();
    if by_space > MAX_APIC_IDS {
        MAX_APIC_IDS as u8
    } else {
        by_space as u8
    }
};

/// vCPU count allowed by the 8-bit APIC id space (see [`MAX_SUPPORTED_CPUS`]).
const MAX_APIC_IDS: usize = 254;

/// Signature of the MP floating pointer structure.
const SMP_MAGIC_IDENT: [u8; 4] = *b"_MP_";
/// Signature of the MP configuration table header.
const MPC_SIGNATURE: [u8; 4] = *b"PCMP";
/// MP specification revision 1.4.
const MPC_SPEC: u8 = 4;
/// OEM id in the configuration table header (8 bytes, space padded).
const MPC_OEM: [u8; 8] = *b"HUSK    ";
/// Product id in the configuration table header (12 bytes, space padded).
const MPC_PRODUCT_ID: [u8; 12] = *b"HUSK MICROVM";
/// Default physical address of the local APICs.
const APIC_DEFAULT_PHYS_BASE: u32 = 0xfee0_0000;
/// Default physical address of the I/O APIC.
const IO_APIC_DEFAULT_PHYS_BASE: u32 = 0xfec0_0000;
/// Local APIC version reported for every processor (an integrated xAPIC).
const APIC_VERSION: u8 = 0x14;
/// I/O APIC version (the 82093AA, as KVM's in-kernel I/O APIC).
const IO_APIC_VERSION: u8 = 0x11;
/// The highest ISA IRQ routed to the I/O APIC; KVM's I/O APIC has 24 pins.
const IRQ_MAX: u8 = 23;
/// Id of the (only) ISA bus.
const ISA_BUS_ID: u8 = 0;
/// Bus type string of an ISA bus entry (6 bytes, space padded).
const BUS_TYPE_ISA: [u8; 6] = *b"ISA   ";
/// Destination APIC id meaning "every local APIC".
const MP_APIC_ALL: u8 = 0xff;

/// Entry type: processor.
const MP_PROCESSOR: u8 = 0;
/// Entry type: bus.
const MP_BUS: u8 = 1;
/// Entry type: I/O APIC.
const MP_IOAPIC: u8 = 2;
/// Entry type: I/O interrupt assignment.
const MP_INTSRC: u8 = 3;
/// Entry type: local interrupt assignment.
const MP_LINTSRC: u8 = 4;

/// Processor entry flag: the processor is usable.
const CPU_ENABLED: u8 = 1;
/// Processor entry flag: the processor is the bootstrap processor.
const CPU_BOOTPROCESSOR: u8 = 2;
/// CPU signature of the processor entries: family 6, model 0, stepping 0. Linux does
/// not use it; the real one comes from CPUID.
const CPU_STEPPING: u32 = 0x600;
/// Feature flag (CPUID.1:EDX layout): on-chip FPU.
const CPU_FEATURE_FPU: u32 = 1 << 0;
/// Feature flag (CPUID.1:EDX layout): on-chip local APIC.
const CPU_FEATURE_APIC: u32 = 1 << 9;

/// I/O APIC entry flag: the I/O APIC is usable.
const MPC_APIC_USABLE: u8 = 1;

/// Interrupt type: vectored interrupt, vector from the APIC redirection table.
const MP_INT: u8 = 0;
/// Interrupt type: non-maskable interrupt.
const MP_NMI: u8 = 1;
/// Interrupt type: external (8259-compatible) interrupt.
const MP_EXTINT: u8 = 3;
/// Interrupt flags: polarity and trigger mode conform to the bus specification.
const MP_IRQ_CONFORMING: u16 = 0;
/// Local APIC interrupt input LINT0.
const LINT0: u8 = 0;
/// Local APIC interrupt input LINT1.
const LINT1: u8 = 1;

/// The MP floating pointer structure (MP spec 4.1), 16 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
struct MpfIntel {
    /// `_MP_`.
    signature: [u8; 4],
    /// Physical address of the configuration table.
    physptr: u32,
    /// Length of this structure in 16-byte units (1).
    length: u8,
    /// Specification revision (4 for 1.4).
    specification: u8,
    /// Makes all bytes of this structure sum to 0.
    checksum: u8,
    /// Default configuration number; 0 means a configuration table is present.
    feature1: u8,
    /// Bit 7: IMCR present (PIC mode). 0: virtual wire mode.
    feature2: u8,
    /// Reserved.
    feature3: u8,
    /// Reserved.
    feature4: u8,
    /// Reserved.
    feature5: u8,
}

/// The MP configuration table header (MP spec 4.2), 44 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
struct MpcTable {
    /// `PCMP`.
    signature: [u8; 4],
    /// Length of the base table, header included, in bytes.
    length: u16,
    /// Specification revision (4 for 1.4).
    spec: u8,
    /// Makes all bytes of the base table (header and entries) sum to 0.
    checksum: u8,
    /// OEM id, space padded.
    oem: [u8; 8],
    /// Product id, space padded.
    productid: [u8; 12],
    /// Physical address of an OEM table (0: none).
    oemptr: u32,
    /// Size of the OEM table.
    oemsize: u16,
    /// Number of entries in the base table.
    oemcount: u16,
    /// Physical address of the local APICs.
    lapic: u32,
    /// Length of the extended table (0: none).
    ext_length: u16,
    /// Checksum of the extended table.
    ext_checksum: u8,
    /// Reserved.
    reserved: u8,
}

/// A processor entry (MP spec 4.3.1), 20 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
struct MpcCpu {
    /// [`MP_PROCESSOR`].
    entry_type: u8,
    /// Local APIC id.
    apicid: u8,
    /// Local APIC version.
    apicver: u8,
    /// [`CPU_ENABLED`], [`CPU_BOOTPROCESSOR`].
    cpuflag: u8,
    /// CPU signature (CPUID.1:EAX layout).
    cpufeature: u32,
    /// Feature flags (CPUID.1:EDX layout).
    featureflag: u32,
    /// Reserved.
    reserved: [u32; 2],
}

/// A bus entry (MP spec 4.3.2), 8 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
struct MpcBus {
    /// [`MP_BUS`].
    entry_type: u8,
    /// Bus id.
    busid: u8,
    /// Bus type string, space padded.
    bustype: [u8; 6],
}

/// An I/O APIC entry (MP spec 4.3.3), 8 bytes.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
struct MpcIoapic {
    /// [`MP_IOAPIC`].
    entry_type: u8,
    /// I/O APIC id.
    apicid: u8,
    /// I/O APIC version.
    apicver: u8,
    /// [`MPC_APIC_USABLE`].
    flags: u8,
    /// Physical address of the I/O APIC.
    apicaddr: u32,
}

/// An I/O interrupt (MP spec 4.3.4) or local interrupt (4.3.5) entry, 8 bytes; the two
/// share a layout.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
struct MpcIntsrc {
    /// [`MP_INTSRC`] or [`MP_LINTSRC`].
    entry_type: u8,
    /// [`MP_INT`], [`MP_NMI`], [`MP_EXTINT`].
    irqtype: u8,
    /// Polarity (bits 1:0) and trigger mode (bits 3:2).
    irqflag: u16,
    /// Source bus id.
    srcbus: u8,
    /// IRQ on the source bus.
    srcbusirq: u8,
    /// Destination (I/O or local) APIC id.
    dstapic: u8,
    /// Destination I/O APIC pin or local APIC LINTn input.
    dstirq: u8,
}

// SAFETY: `MpfIntel` is `repr(C, packed)` and made of integers and byte arrays only, so
// it has no padding and every bit pattern is a valid value.
unsafe impl ByteValued for MpfIntel {}
// SAFETY: `MpcTable` is `repr(C, packed)` and made of integers and byte arrays only, so
// it has no padding and every bit pattern is a valid value.
unsafe impl ByteValued for MpcTable {}
// SAFETY: `MpcCpu` is `repr(C, packed)` and made of integers and integer arrays only, so
// it has no padding and every bit pattern is a valid value.
unsafe impl ByteValued for MpcCpu {}
// SAFETY: `MpcBus` is `repr(C, packed)` and made of integers and byte arrays only, so it
// has no padding and every bit pattern is a valid value.
unsafe impl ByteValued for MpcBus {}
// SAFETY: `MpcIoapic` is `repr(C, packed)` and made of integers only, so it has no
// padding and every bit pattern is a valid value.
unsafe impl ByteValued for MpcIoapic {}
// SAFETY: `MpcIntsrc` is `repr(C, packed)` and made of integers only, so it has no
// padding and every bit pattern is a valid value.
unsafe impl ByteValued for MpcIntsrc {}

// The sizes the MP specification prescribes.
const _: () = assert!(size_of::<MpfIntel>() == 16);
const _: () = assert!(size_of::<MpcTable>() == 44);
const _: () = assert!(size_of::<MpcCpu>() == 20);
const _: () = assert!(size_of::<MpcBus>() == 8);
const _: () = assert!(size_of::<MpcIoapic>() == 8);
const _: () = assert!(size_of::<MpcIntsrc>() == 8);

// The largest table fits below MPTABLE_END.
const _: () = assert!(MPTABLE_START + mptable_size(MAX_SUPPORTED_CPUS) as u64 <= MPTABLE_END);

/// Number of I/O interrupt entries: ISA IRQs 0..=[`IRQ_MAX`].
const NUM_INTSRC: usize = IRQ_MAX as usize + 1;
/// Number of local interrupt entries: ExtINT on LINT0, NMI on LINT1.
const NUM_LINTSRC: usize = 2;

/// Size of everything in the table but the processor entries.
const fn fixed_size() -> usize {
    size_of::<MpfIntel>()
        + size_of::<MpcTable>()
        + size_of::<MpcBus>()
        + size_of::<MpcIoapic>()
        + (NUM_INTSRC + NUM_LINTSRC) * size_of::<MpcIntsrc>()
}

/// Size in bytes of the whole MP table (floating pointer included) for `num_cpus` vCPUs.
const fn mptable_size(num_cpus: u8) -> usize {
    fixed_size() + num_cpus as usize * size_of::<MpcCpu>()
}

/// Why the MP table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum MptableError {
    /// An MP table must describe at least the bootstrap processor.
    #[error("an MP table needs at least one vCPU")]
    NoCpus,
    /// More vCPUs than fit below [`MPTABLE_END`].
    #[error("{requested} vCPUs requested, the MP table supports at most {max}")]
    TooManyCpus {
        /// The number of vCPUs asked for.
        requested: u8,
        /// [`MAX_SUPPORTED_CPUS`].
        max: u8,
    },
    /// Guest memory does not cover the table's range or could not be written.
    #[error("cannot write the MP table ({len} bytes at {addr:#x}) to guest memory")]
    Write {
        /// Where the table starts.
        addr: u64,
        /// Its length.
        len: usize,
        /// What guest memory reported.
        #[source]
        source: GuestMemoryError,
    },
}

/// The value that makes the bytes of `data` plus itself sum to 0 modulo 256.
fn checksum(data: &[u8]) -> u8 {
    data.iter()
        .fold(0u8, |sum, b| sum.wrapping_add(*b))
        .wrapping_neg()
}

/// Lays out the MP table for `num_cpus` vCPUs as if it were placed at `start`.
/// `num_cpus` must be between 1 and [`MAX_SUPPORTED_CPUS`].
fn build_mptable(start: u64, num_cpus: u8) -> Vec<u8> {
    let total = mptable_size(num_cpus);
    let config_start = start + size_of::<MpfIntel>() as u64;
    let ioapic_id = num_cpus + 1;

    // The configuration table: header first (filled last), then the entries.
    let mut config = vec![0u8; size_of::<MpcTable>()];
    let mut entries: u16 = 0;
    let mut push = |config: &mut Vec<u8>, bytes: &[u8]| {
        config.extend_from_slice(bytes);
        entries += 1;
    };

    for cpu in 0..num_cpus {
        let mut cpuflag = CPU_ENABLED;
        if cpu == 0 {
            cpuflag |= CPU_BOOTPROCESSOR;
        }
        let entry = MpcCpu {
            entry_type: MP_PROCESSOR,
            apicid: cpu,
            apicver: APIC_VERSION,
            cpuflag,
            cpufeature: CPU_STEPPING,
            featureflag: CPU_FEATURE_APIC | CPU_FEATURE_FPU,
            reserved: [0; 2],
        };
        push(&mut config, entry.as_slice());
    }

    let bus = MpcBus {
        entry_type: MP_BUS,
        busid: ISA_BUS_ID,
        bustype: BUS_TYPE_ISA,
    };
    push(&mut config, bus.as_slice());

    let ioapic = MpcIoapic {
        entry_type: MP_IOAPIC,
        apicid: ioapic_id,
        apicver: IO_APIC_VERSION,
        flags: MPC_APIC_USABLE,
        apicaddr: IO_APIC_DEFAULT_PHYS_BASE,
    };
    push(&mut config, ioapic.as_slice());

    for irq in 0..=IRQ_MAX {
        let intsrc = MpcIntsrc {
            entry_type: MP_INTSRC,
            irqtype: MP_INT,
            irqflag: MP_IRQ_CONFORMING,
            srcbus: ISA_BUS_ID,
            srcbusirq: irq,
            dstapic: ioapic_id,
            dstirq: irq,
        };
        push(&mut config, intsrc.as_slice());
    }

    for (irqtype, lint) in [(MP_EXTINT, LINT0), (MP_NMI, LINT1)] {
        let lintsrc = MpcIntsrc {
            entry_type: MP_LINTSRC,
            irqtype,
            irqflag: MP_IRQ_CONFORMING,
            srcbus: ISA_BUS_ID,
            srcbusirq: 0,
            dstapic: MP_APIC_ALL,
            dstirq: lint,
        };
        push(&mut config, lintsrc.as_slice());
    }

    let mut header = MpcTable {
        signature: MPC_SIGNATURE,
        // At most `MPTABLE_END - MPTABLE_START` bytes: fits.
        length: config.len() as u16,
        spec: MPC_SPEC,
        checksum: 0,
        oem: MPC_OEM,
        productid: MPC_PRODUCT_ID,
        oemptr: 0,
        oemsize: 0,
        oemcount: entries,
        lapic: APIC_DEFAULT_PHYS_BASE,
        ext_length: 0,
        ext_checksum: 0,
        reserved: 0,
    };
    config[..size_of::<MpcTable>()].copy_from_slice(header.as_slice());
    header.checksum = checksum(&config);
    config[..size_of::<MpcTable>()].copy_from_slice(header.as_slice());

    let mut mpf = MpfIntel {
        signature: SMP_MAGIC_IDENT,
        // Below 1 MiB: fits.
        physptr: config_start as u32,
        length: 1,
        specification: MPC_SPEC,
        ..Default::default()
    };
    mpf.checksum = checksum(mpf.as_slice());

    let mut table = Vec::with_capacity(total);
    table.extend_from_slice(mpf.as_slice());
    table.extend_from_slice(&config);
    debug_assert_eq!(table.len(), total);
    table
}

/// Writes an MP table describing `num_cpus` vCPUs (local APIC ids `0..num_cpus`, cpu 0
/// the bootstrap processor), an ISA bus and an I/O APIC to `mem` at [`MPTABLE_START`].
///
/// # Errors
///
/// [`MptableError::NoCpus`] for 0 vCPUs, [`MptableError::TooManyCpus`] for more than
/// [`MAX_SUPPORTED_CPUS`], [`MptableError::Write`] when `mem` does not cover
/// `MPTABLE_START..` the end of the table.
pub fn setup_mptable(mem: &impl GuestMemoryBackend, num_cpus: u8) -> Result<(), MptableError> {
    if num_cpus == 0 {
        return Err(MptableError::NoCpus);
    }
    if num_cpus > MAX_SUPPORTED_CPUS {
        return Err(MptableError::TooManyCpus {
            requested: num_cpus,
            max: MAX_SUPPORTED_CPUS,
        });
    }
    let table = build_mptable(MPTABLE_START, num_cpus);
    // Holds by the choice of MAX_SUPPORTED_CPUS.
    debug_assert!(MPTABLE_START + table.len() as u64 <= MPTABLE_END);
    mem.write_slice(&table, GuestAddress(MPTABLE_START))
        .map_err(|source| MptableError::Write {
            addr: MPTABLE_START,
            len: table.len(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    /// Guest memory covering the first MiB.
    fn low_mem() -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    /// Reads a whole byte range of guest memory.
    fn read_bytes(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
        buf
    }

    fn sum(data: &[u8]) -> u8 {
        data.iter().fold(0u8, |s, b| s.wrapping_add(*b))
    }

    fn read_mpf(mem: &GuestMemoryMmap) -> MpfIntel {
        mem.read_obj(GuestAddress(MPTABLE_START)).unwrap()
    }

    fn read_header(mem: &GuestMemoryMmap) -> MpcTable {
        let mpf = read_mpf(mem);
        mem.read_obj(GuestAddress(u64::from(mpf.physptr))).unwrap()
    }

    /// The configuration table's entries, split by type, as raw byte strings.
    fn read_entries(mem: &GuestMemoryMmap) -> Vec<Vec<u8>> {
        let mpf = read_mpf(mem);
        let header = read_header(mem);
        let base = u64::from(mpf.physptr);
        let config = read_bytes(mem, base, usize::from(header.length));
        let mut entries = Vec::new();
        let mut off = size_of::<MpcTable>();
        while off < config.len() {
            let len = if config[off] == MP_PROCESSOR {
                size_of::<MpcCpu>()
            } else {
                8
            };
            entries.push(config[off..off + len].to_vec());
            off += len;
        }
        assert_eq!(off, config.len(), "entries overrun the table length");
        entries
    }

    fn cpus(mem: &GuestMemoryMmap) -> Vec<MpcCpu> {
        read_entries(mem)
            .iter()
            .filter(|e| e[0] == MP_PROCESSOR)
            .map(|e| *MpcCpu::from_slice(e).unwrap())
            .collect()
    }

    fn of_type<T: ByteValued>(mem: &GuestMemoryMmap, entry_type: u8) -> Vec<T> {
        read_entries(mem)
            .iter()
            .filter(|e| e[0] == entry_type)
            .map(|e| T::from_slice(e).copied().unwrap())
            .collect()
    }

    #[test]
    fn floating_pointer_signature_pointer_and_checksum() {
        let mem = low_mem();
        for n in [1, 4, MAX_SUPPORTED_CPUS] {
            setup_mptable(&mem, n).unwrap();
            let mpf = read_mpf(&mem);
            assert_eq!(mpf.signature, *b"_MP_");
            assert_eq!({ mpf.physptr }, (MPTABLE_START + 16) as u32);
            assert_eq!(mpf.length, 1);
            assert_eq!(mpf.specification, 4);
            assert_eq!(mpf.feature1, 0, "a configuration table is present");
            assert_eq!(sum(mpf.as_slice()), 0);
            assert_eq!(sum(&read_bytes(&mem, MPTABLE_START, 16)), 0);
        }
    }

    #[test]
    fn config_table_header_and_checksum() {
        let mem = low_mem();
        for n in [1, 2, 4, MAX_SUPPORTED_CPUS] {
            setup_mptable(&mem, n).unwrap();
            let header = read_header(&mem);
            assert_eq!(header.signature, *b"PCMP");
            assert_eq!(header.spec, 4);
            assert_eq!({ header.lapic }, 0xfee0_0000);
            assert_eq!(&header.oem[..4], b"HUSK");
            assert_eq!(
                usize::from(header.length),
                mptable_size(n) - size_of::<MpfIntel>()
            );
            let config = read_bytes(&mem, MPTABLE_START + 16, usize::from(header.length));
            assert_eq!(sum(&config), 0);
        }
    }

    #[test]
    fn entry_count_matches_header() {
        let mem = low_mem();
        for n in [1, 3, MAX_SUPPORTED_CPUS] {
            setup_mptable(&mem, n).unwrap();
            let header = read_header(&mem);
            let entries = read_entries(&mem);
            assert_eq!(usize::from(header.oemcount), entries.len());
            // cpus + bus + ioapic + 24 I/O interrupts + 2 local interrupts.
            assert_eq!(entries.len(), usize::from(n) + 1 + 1 + 24 + 2);
        }
    }

    #[test]
    fn one_processor_entry_per_cpu_bsp_first() {
        let mem = low_mem();
        for n in [1, 4, MAX_SUPPORTED_CPUS] {
            setup_mptable(&mem, n).unwrap();
            let cpus = cpus(&mem);
            assert_eq!(cpus.len(), usize::from(n));
            for (i, cpu) in cpus.iter().enumerate() {
                assert_eq!(usize::from(cpu.apicid), i);
                assert_eq!(cpu.apicver, 0x14);
                assert_ne!(cpu.cpuflag & CPU_ENABLED, 0);
                assert_eq!(cpu.cpuflag & CPU_BOOTPROCESSOR != 0, i == 0);
                assert_eq!({ cpu.cpufeature }, CPU_STEPPING);
                assert_eq!({ cpu.featureflag }, CPU_FEATURE_APIC | CPU_FEATURE_FPU);
            }
        }
    }

    #[test]
    fn isa_bus_and_ioapic_entries() {
        let mem = low_mem();
        setup_mptable(&mem, 4).unwrap();
        let buses: Vec<MpcBus> = of_type(&mem, MP_BUS);
        assert_eq!(buses.len(), 1);
        assert_eq!(buses[0].busid, 0);
        assert_eq!(&buses[0].bustype, b"ISA   ");

        let ioapics: Vec<MpcIoapic> = of_type(&mem, MP_IOAPIC);
        assert_eq!(ioapics.len(), 1);
        let ioapic = ioapics[0];
        assert_eq!(ioapic.apicid, 5);
        assert_eq!(ioapic.apicver, 0x11);
        assert_eq!(ioapic.flags, MPC_APIC_USABLE);
        assert_eq!({ ioapic.apicaddr }, 0xfec0_0000);
    }

    #[test]
    fn interrupt_entries() {
        let mem = low_mem();
        setup_mptable(&mem, 2).unwrap();
        let ints: Vec<MpcIntsrc> = of_type(&mem, MP_INTSRC);
        assert_eq!(ints.len(), 24);
        for (i, int) in ints.iter().enumerate() {
            assert_eq!(int.irqtype, MP_INT);
            assert_eq!({ int.irqflag }, 0);
            assert_eq!(int.srcbus, 0);
            assert_eq!(usize::from(int.srcbusirq), i);
            assert_eq!(int.dstapic, 3, "routed to the I/O APIC");
            assert_eq!(usize::from(int.dstirq), i);
        }

        let lints: Vec<MpcIntsrc> = of_type(&mem, MP_LINTSRC);
        assert_eq!(lints.len(), 2);
        assert_eq!((lints[0].irqtype, lints[0].dstirq), (MP_EXTINT, 0));
        assert_eq!((lints[1].irqtype, lints[1].dstirq), (MP_NMI, 1));
        for lint in lints {
            assert_eq!(lint.dstapic, 0xff);
            assert_eq!({ lint.irqflag }, 0);
        }
    }

    #[test]
    fn max_cpus_stays_below_end_of_base_memory() {
        const {
            assert!(MAX_SUPPORTED_CPUS >= 1);
            assert!(MAX_SUPPORTED_CPUS <= 254);
            assert!(MPTABLE_START + mptable_size(MAX_SUPPORTED_CPUS) as u64 <= MPTABLE_END);
            // One more would not fit: the limit is as high as the window allows.
            assert!(MPTABLE_START + mptable_size(MAX_SUPPORTED_CPUS + 1) as u64 > MPTABLE_END);
        }

        // Memory that ends exactly at MPTABLE_END is enough.
        let mem =
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MPTABLE_END as usize)]).unwrap();
        setup_mptable(&mem, MAX_SUPPORTED_CPUS).unwrap();
        assert_eq!(cpus(&mem).len(), usize::from(MAX_SUPPORTED_CPUS));
    }

    #[test]
    fn too_many_cpus_refused() {
        let mem = low_mem();
        for n in [MAX_SUPPORTED_CPUS + 1, 254, 255] {
            match setup_mptable(&mem, n) {
                Err(MptableError::TooManyCpus { requested, max }) => {
                    assert_eq!(requested, n);
                    assert_eq!(max, MAX_SUPPORTED_CPUS);
                }
                other => panic!("{n} vCPUs: {other:?}"),
            }
        }
        // Nothing was written.
        assert_eq!(read_bytes(&mem, MPTABLE_START, 4), [0; 4]);
    }

    #[test]
    fn zero_cpus_refused() {
        assert!(matches!(
            setup_mptable(&low_mem(), 0),
            Err(MptableError::NoCpus)
        ));
    }

    #[test]
    fn memory_not_covering_the_table_is_an_error() {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x9_0000)]).unwrap();
        let err = setup_mptable(&mem, 1).unwrap_err();
        assert!(matches!(err, MptableError::Write { .. }));
        assert!(std::error::Error::source(&err).is_some());
    }
}
