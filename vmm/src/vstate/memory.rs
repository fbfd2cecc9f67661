//! Guest memory: sized, laid out around the MMIO hole, backed by a memfd so that
//! vhost-user backends (virtiofsd) can map the same pages.

use crate::arch::x86_64::layout::{MMIO_HOLE_END, MMIO_HOLE_START};
use std::fs::File;
use std::os::fd::FromRawFd;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap};

/// Smallest guest memory husk accepts: room for the kernel, initramfs and boot data.
pub const MIN_MEM_MIB: u64 = 64;
/// Largest guest memory husk accepts (the boot identity map and the e820 table are
/// not the limit; the host is).
pub const MAX_MEM_MIB: u64 = 1 << 20;

/// Why guest memory could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// The size is outside what husk accepts.
    #[error("guest memory of {0} MiB is out of range ({MIN_MEM_MIB} to {MAX_MEM_MIB} MiB)")]
    Size(u64),
    /// memfd_create or ftruncate failed.
    #[error("cannot create the memfd backing guest memory")]
    Memfd(#[source] std::io::Error),
    /// Mapping the memfd failed.
    #[error("cannot map guest memory")]
    Map(#[source] vm_memory::mmap::FromRangesError),
}

/// The RAM ranges for `mem_mib` MiB: below the MMIO hole, then above 4 GiB.
pub fn ram_ranges(mem_mib: u64) -> Result<Vec<(GuestAddress, u64)>, MemoryError> {
    if !(MIN_MEM_MIB..=MAX_MEM_MIB).contains(&mem_mib) {
        return Err(MemoryError::Size(mem_mib));
    }
    let total = mem_mib << 20;
    let low = total.min(MMIO_HOLE_START);
    let mut ranges = vec![(GuestAddress(0), low)];
    if total > low {
        ranges.push((GuestAddress(MMIO_HOLE_END), total - low));
    }
    Ok(ranges)
}

/// The memfd that backs guest memory, and the guest memory mapped from it.
#[derive(Debug)]
pub struct GuestRam {
    /// The mapping, shared (MAP_SHARED) with the memfd.
    pub memory: GuestMemoryMmap,
    /// The memfd, for backends that map guest memory themselves.
    pub memfd: std::sync::Arc<File>,
    /// The RAM ranges, as [`ram_ranges`] laid them out.
    pub ranges: Vec<(GuestAddress, u64)>,
}

/// Creates `mem_mib` MiB of guest memory in one memfd, mapped region by region.
pub fn create_guest_ram(mem_mib: u64) -> Result<GuestRam, MemoryError> {
    let ranges = ram_ranges(mem_mib)?;
    // SAFETY: memfd_create takes a NUL-terminated name and flags; the result is checked.
    let fd = unsafe { libc::memfd_create(c"husk-guest-ram".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(MemoryError::Memfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh descriptor owned by nothing else.
    let file = std::sync::Arc::new(unsafe { File::from_raw_fd(fd) });
    file.set_len(mem_mib << 20).map_err(MemoryError::Memfd)?;

    let mut offset = 0;
    let mut regions = Vec::with_capacity(ranges.len());
    for &(addr, len) in &ranges {
        regions.push((
            addr,
            len as usize,
            Some(FileOffset::from_arc(file.clone(), offset)),
        ));
        offset += len;
    }
    let memory = GuestMemoryMmap::from_ranges_with_files(regions).map_err(MemoryError::Map)?;
    Ok(GuestRam {
        memory,
        memfd: file,
        ranges,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn small_memory_is_one_range_below_the_hole() {
        assert_eq!(ram_ranges(256).unwrap(), vec![(GuestAddress(0), 256 << 20)]);
    }

    #[test]
    fn memory_past_the_hole_continues_at_4_gib() {
        let ranges = ram_ranges(4096).unwrap();
        assert_eq!(
            ranges,
            vec![(GuestAddress(0), 3 << 30), (GuestAddress(4 << 30), 1 << 30)]
        );
        assert_eq!(ranges.iter().map(|r| r.1).sum::<u64>(), 4096 << 20);
    }

    #[test]
    fn too_little_or_too_much_memory_is_refused() {
        assert!(matches!(ram_ranges(16), Err(MemoryError::Size(16))));
        assert!(matches!(ram_ranges(0), Err(MemoryError::Size(0))));
        assert!(ram_ranges(MAX_MEM_MIB + 1).is_err());
        let msg = ram_ranges(16).unwrap_err().to_string();
        assert_eq!(
            msg,
            "guest memory of 16 MiB is out of range (64 to 1048576 MiB)"
        );
    }

    #[test]
    fn guest_ram_is_shared_with_its_memfd() {
        use std::os::unix::fs::FileExt;
        let ram = create_guest_ram(64).unwrap();
        assert_eq!(ram.memory.num_regions(), 1);
        ram.memory
            .write_obj(0xdead_beef_u32, GuestAddress(0x1000))
            .unwrap();
        let mut buf = [0u8; 4];
        ram.memfd.read_exact_at(&mut buf, 0x1000).unwrap();
        assert_eq!(u32::from_le_bytes(buf), 0xdead_beef);
    }
}
