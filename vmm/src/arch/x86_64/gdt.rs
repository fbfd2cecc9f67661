//! Segment descriptors of the boot GDT, and their KVM form.

use kvm_bindings::kvm_segment;

/// Access and flag bits of a descriptor, as stored in bits 40..56 of the entry
/// (`flags` bits 0..8 = access byte, bits 12..16 = G, D/B, L, AVL).
pub const CODE64_FLAGS: u16 = 0xa09b; // G, L, present, code, execute/read, accessed
/// Flat data segment.
pub const DATA_FLAGS: u16 = 0xc093; // G, D/B, present, data, read/write, accessed
/// 64-bit TSS (busy).
pub const TSS_FLAGS: u16 = 0x808b; // G, present, system, 64-bit TSS busy

/// The boot GDT: null, code, data, TSS. The selector of entry `i` is `8 * i`.
pub const BOOT_GDT: [u64; 4] = [
    0,
    descriptor(CODE64_FLAGS, 0, 0xfffff),
    descriptor(DATA_FLAGS, 0, 0xfffff),
    descriptor(TSS_FLAGS, 0, 0xfffff),
];

/// Index of the code segment in [`BOOT_GDT`].
pub const CODE_INDEX: u16 = 1;
/// Index of the data segment in [`BOOT_GDT`].
pub const DATA_INDEX: u16 = 2;
/// Index of the TSS in [`BOOT_GDT`].
pub const TSS_INDEX: u16 = 3;

/// Encodes a segment descriptor from its flags, 32-bit base and 20-bit limit.
pub const fn descriptor(flags: u16, base: u32, limit: u32) -> u64 {
    let base = base as u64;
    let limit = limit as u64;
    let flags = flags as u64;
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0xf_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

fn bit(entry: u64, n: u32) -> u8 {
    ((entry >> n) & 1) as u8
}

/// The KVM view of GDT entry `index`.
pub fn kvm_segment(entry: u64, index: u16) -> kvm_segment {
    let base = ((entry >> 32) & 0xff00_0000) | ((entry >> 16) & 0x00ff_ffff);
    let raw_limit = (((entry >> 32) & 0xf_0000) | (entry & 0xffff)) as u32;
    let granular = bit(entry, 55) == 1;
    let present = bit(entry, 47);
    kvm_segment {
        base,
        limit: if granular {
            (raw_limit << 12) | 0xfff
        } else {
            raw_limit
        },
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present,
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(entry, 54),
        s: bit(entry, 44),
        l: bit(entry, 53),
        g: bit(entry, 55),
        avl: bit(entry, 52),
        unusable: u8::from(present == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_flat_64_bit_and_executable() {
        let seg = kvm_segment(BOOT_GDT[CODE_INDEX as usize], CODE_INDEX);
        assert_eq!((seg.base, seg.limit, seg.selector), (0, 0xffff_ffff, 0x8));
        assert_eq!((seg.l, seg.db, seg.g, seg.present, seg.s), (1, 0, 1, 1, 1));
        assert_eq!(seg.type_, 0xb, "execute/read, accessed");
        assert_eq!(seg.unusable, 0);
    }

    #[test]
    fn data_and_tss_segments_decode_as_encoded() {
        let data = kvm_segment(BOOT_GDT[DATA_INDEX as usize], DATA_INDEX);
        assert_eq!(
            (data.selector, data.type_, data.db, data.l, data.s),
            (0x10, 0x3, 1, 0, 1)
        );
        let tss = kvm_segment(BOOT_GDT[TSS_INDEX as usize], TSS_INDEX);
        assert_eq!(
            (tss.selector, tss.type_, tss.s, tss.present),
            (0x18, 0xb, 0, 1)
        );
    }

    #[test]
    fn base_and_limit_survive_the_split_encoding() {
        let entry = descriptor(0x0093, 0x1234_5678, 0xa_bcde);
        let seg = kvm_segment(entry, 5);
        assert_eq!((seg.base, seg.limit, seg.g), (0x1234_5678, 0xa_bcde, 0));
        assert_eq!(
            kvm_segment(0, 0).unusable,
            1,
            "the null descriptor is not present"
        );
    }
}
