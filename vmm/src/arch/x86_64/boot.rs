//! The Linux x86 boot protocol: load the kernel (ELF `vmlinux` or bzImage), the
//! initramfs and the command line, and fill the zero page with the e820 map.

use super::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, EBDA_START, HIMEM_START, ZERO_PAGE_START};
use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{self, BzImage, Elf, KernelLoader};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// Offset of the 64-bit entry point in a bzImage's protected-mode kernel.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// `xloadflags` bit: the kernel has a 64-bit entry point.
const XLF_KERNEL_64: u16 = 1;
/// `boot_flag` value of a valid setup header.
const BOOT_FLAG_MAGIC: u16 = 0xaa55;
/// `header` value of a valid setup header ("HdrS").
const HDRS_MAGIC: u32 = 0x5372_6448;
/// `type_of_loader`: undefined boot loader.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// Default kernel alignment for ELF kernels, which carry no setup header.
const ELF_KERNEL_ALIGNMENT: u32 = 0x100_0000;

/// Why the guest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A file could not be opened or read.
    #[error("cannot read {0}")]
    File(PathBuf, #[source] std::io::Error),
    /// Neither an ELF nor a bzImage.
    #[error("{0} is neither an ELF vmlinux nor a bzImage")]
    UnknownKernelFormat(PathBuf),
    /// The kernel image is malformed or does not fit.
    #[error("cannot load kernel {0}")]
    Kernel(PathBuf, #[source] loader::Error),
    /// A bzImage without a 64-bit entry point.
    #[error("{0} has no 64-bit entry point (xloadflags lacks XLF_KERNEL_64)")]
    Not64Bit(PathBuf),
    /// The initramfs does not fit between the kernel and the end of low memory.
    #[error("initramfs {path} ({size} bytes) does not fit in guest memory ({room} bytes free above the kernel)")]
    InitrdTooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// Room there was.
        room: u64,
    },
    /// The command line is invalid or too long.
    #[error("invalid kernel command line")]
    Cmdline(#[source] linux_loader::cmdline::Error),
    /// Writing boot data to guest memory failed.
    #[error("cannot write the {0} to guest memory")]
    Memory(&'static str, #[source] vm_memory::GuestMemoryError),
    /// More RAM ranges than the zero page has e820 slots for.
    #[error("{0} memory ranges do not fit in the zero page's e820 table")]
    TooManyRanges(usize),
}

/// A loaded kernel.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    /// Where the vCPU starts, in 64-bit mode.
    pub entry: GuestAddress,
    /// First byte above everything the kernel occupies while it boots (for a bzImage,
    /// the area it decompresses into), so the initramfs goes above it.
    pub reserved_end: u64,
    /// The bzImage's setup header, copied into the zero page; `None` for ELF.
    pub setup_header: Option<setup_header>,
}

fn open(path: &Path) -> Result<File, BootError> {
    File::open(path).map_err(|e| BootError::File(path.to_owned(), e))
}

/// Loads an ELF `vmlinux` or a bzImage at 1 MiB and up.
pub fn load_kernel(mem: &GuestMemoryMmap, path: &Path) -> Result<LoadedKernel, BootError> {
    let mut file = open(path)?;
    let mut magic = [0u8; 4];
    let read_err = |e| BootError::File(path.to_owned(), e);
    file.read_exact(&mut magic)
        .map_err(|_| BootError::UnknownKernelFormat(path.to_owned()))?;
    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
    let himem = Some(GuestAddress(HIMEM_START));
    let load_err = |e| BootError::Kernel(path.to_owned(), e);

    if magic == *b"\x7fELF" {
        let loaded = Elf::load(mem, None, &mut file, himem).map_err(load_err)?;
        return Ok(LoadedKernel {
            entry: loaded.kernel_load,
            reserved_end: loaded.kernel_end,
            setup_header: None,
        });
    }
    let loaded = BzImage::load(mem, None, &mut file, himem).map_err(|e| match e {
        loader::Error::Bzimage(linux_loader::loader::bzimage::Error::InvalidBzImage) => {
            BootError::UnknownKernelFormat(path.to_owned())
        }
        e => load_err(e),
    })?;
    let header = loaded
        .setup_header
        .ok_or_else(|| BootError::UnknownKernelFormat(path.to_owned()))?;
    if header.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BootError::Not64Bit(path.to_owned()));
    }
    let decompress_end = header.pref_address + u64::from(header.init_size);
    Ok(LoadedKernel {
        entry: GuestAddress(loaded.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET),
        reserved_end: loaded.kernel_end.max(decompress_end),
        setup_header: Some(header),
    })
}

/// Loads the initramfs page-aligned at the top of `[above, low_end)`; returns its
/// address and size.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    path: &Path,
    above: u64,
    low_end: u64,
) -> Result<(GuestAddress, u64), BootError> {
    let mut file = open(path)?;
    let size = file
        .metadata()
        .map_err(|e| BootError::File(path.to_owned(), e))?
        .len();
    let room = low_end.saturating_sub(above);
    let too_large = || BootError::InitrdTooLarge {
        path: path.to_owned(),
        size,
        room,
    };
    let addr = low_end.checked_sub(size).ok_or_else(too_large)? & !0xfff;
    if addr < above {
        return Err(too_large());
    }
    mem.read_exact_volatile_from(GuestAddress(addr), &mut file, size as usize)
        .map_err(|e| BootError::Memory("initramfs", e))?;
    Ok((GuestAddress(addr), size))
}

/// Builds a kernel command line from words, checking the size limit.
pub fn build_cmdline<'a>(words: impl IntoIterator<Item = &'a str>) -> Result<Cmdline, BootError> {
    let mut cmdline = Cmdline::new(CMDLINE_MAX_SIZE).map_err(BootError::Cmdline)?;
    for word in words {
        cmdline.insert_str(word).map_err(BootError::Cmdline)?;
    }
    Ok(cmdline)
}

/// The e820 map for the given RAM ranges: the low 640 KiB less the EBDA, RAM from
/// 1 MiB to the end of low memory, and any RAM above 4 GiB.
pub fn e820_map(ram: &[(GuestAddress, u64)]) -> Vec<boot_e820_entry> {
    let entry = |addr, size| boot_e820_entry {
        addr,
        size,
        r#type: E820_RAM,
    };
    let mut map = vec![entry(0, EBDA_START)];
    for &(GuestAddress(start), len) in ram {
        let end = start + len;
        let start = start.max(HIMEM_START);
        if end > start {
            map.push(entry(start, end - start));
        }
    }
    map
}

/// Fills the zero page: setup header, command line, initramfs and e820 map.
pub fn write_boot_params(
    mem: &GuestMemoryMmap,
    kernel: &LoadedKernel,
    cmdline: &Cmdline,
    initrd: Option<(GuestAddress, u64)>,
    ram: &[(GuestAddress, u64)],
) -> Result<(), BootError> {
    let cmdline_str = cmdline.as_cstring().map_err(BootError::Cmdline)?;
    loader::load_cmdline(mem, GuestAddress(CMDLINE_START), cmdline).map_err(|_| {
        BootError::Memory(
            "command line",
            vm_memory::GuestMemoryError::InvalidBackendAddress,
        )
    })?;

    let mut params = boot_params::default();
    if let Some(header) = kernel.setup_header {
        params.hdr = header;
    } else {
        params.hdr.boot_flag = BOOT_FLAG_MAGIC;
        params.hdr.header = HDRS_MAGIC;
        params.hdr.kernel_alignment = ELF_KERNEL_ALIGNMENT;
    }
    params.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    params.hdr.cmd_line_ptr = CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline_str.as_bytes().len() as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr.0 as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820_map(ram);
    if map.len() > params.e820_table.len() {
        return Err(BootError::TooManyRanges(map.len()));
    }
    params.e820_table[..map.len()].copy_from_slice(&map);
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
        .map_err(|e| BootError::Memory("zero page", e))
}

/// The end of RAM below the MMIO hole.
pub fn low_ram_end(mem: &GuestMemoryMmap) -> u64 {
    mem.iter()
        .map(|r| {
            vm_memory::GuestMemoryRegion::start_addr(r).0 + vm_memory::GuestMemoryRegion::len(r)
        })
        .filter(|end| *end <= super::layout::MMIO_HOLE_START)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(mib: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), mib << 20)]).unwrap()
    }

    #[test]
    fn e820_skips_the_ebda_and_legacy_hole() {
        let map = e820_map(&[(GuestAddress(0), 256 << 20)]);
        let plain: Vec<(u64, u64)> = map.iter().map(|e| (e.addr, e.size)).collect();
        assert_eq!(
            plain,
            vec![(0, EBDA_START), (HIMEM_START, (256 << 20) - HIMEM_START)]
        );
        assert!(map.iter().all(|e| e.r#type == E820_RAM));
    }

    #[test]
    fn e820_includes_ram_above_4_gib() {
        let map = e820_map(&[(GuestAddress(0), 3 << 30), (GuestAddress(4 << 30), 1 << 30)]);
        assert_eq!(map.len(), 3);
        assert_eq!((map[2].addr, map[2].size), (4 << 30, 1 << 30));
    }

    #[test]
    fn garbage_is_not_a_kernel() {
        let dir = std::env::temp_dir().join(format!("husk-boot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("garbage");
        std::fs::write(&path, vec![0x55u8; 8192]).unwrap();
        let err = load_kernel(&mem(64), &path).unwrap_err();
        assert!(matches!(err, BootError::UnknownKernelFormat(_)), "{err:?}");
        std::fs::write(&path, b"\x7fELF truncated").unwrap();
        let err = load_kernel(&mem(64), &path).unwrap_err();
        assert!(matches!(err, BootError::Kernel(..)), "{err:?}");
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(
            load_kernel(&mem(64), &path),
            Err(BootError::UnknownKernelFormat(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
        let err = load_kernel(&mem(64), Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert_eq!(err.to_string(), "cannot read /nonexistent/vmlinux");
    }

    #[test]
    fn initrd_goes_page_aligned_to_the_top_and_must_fit() {
        let dir = std::env::temp_dir().join(format!("husk-initrd-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("initrd");
        std::fs::write(&path, vec![7u8; 10_000]).unwrap();
        let m = mem(64);
        let (addr, size) = load_initrd(&m, &path, 32 << 20, 64 << 20).unwrap();
        assert_eq!(size, 10_000);
        assert_eq!(addr.0 % 4096, 0);
        assert!(addr.0 + size <= 64 << 20 && addr.0 >= 32 << 20);
        let byte: u8 = m.read_obj(addr).unwrap();
        assert_eq!(byte, 7);
        let err = load_initrd(&m, &path, (64 << 20) - 4096, 64 << 20).unwrap_err();
        assert!(matches!(
            err,
            BootError::InitrdTooLarge {
                size: 10_000,
                room: 4096,
                ..
            }
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn zero_page_carries_cmdline_initrd_and_e820() {
        let m = mem(64);
        let kernel = LoadedKernel {
            entry: GuestAddress(0x100_0000),
            reserved_end: 0x200_0000,
            setup_header: None,
        };
        let cmdline = build_cmdline(["console=ttyS0", "reboot=t"]).unwrap();
        let ram = [(GuestAddress(0), 64u64 << 20)];
        write_boot_params(
            &m,
            &kernel,
            &cmdline,
            Some((GuestAddress(0x300_0000), 1234)),
            &ram,
        )
        .unwrap();
        let params: boot_params = m.read_obj(GuestAddress(ZERO_PAGE_START)).unwrap();
        let hdr = params.hdr;
        assert_eq!({ hdr.boot_flag }, BOOT_FLAG_MAGIC);
        assert_eq!({ hdr.header }, HDRS_MAGIC);
        assert_eq!({ hdr.cmd_line_ptr }, CMDLINE_START as u32);
        assert_eq!(
            { hdr.cmdline_size } as usize,
            "console=ttyS0 reboot=t".len()
        );
        assert_eq!(
            ({ hdr.ramdisk_image }, { hdr.ramdisk_size }),
            (0x300_0000, 1234)
        );
        assert_eq!(params.e820_entries, 2);
        let mut text = vec![0u8; 22];
        m.read_slice(&mut text, GuestAddress(CMDLINE_START))
            .unwrap();
        assert_eq!(text, b"console=ttyS0 reboot=t");
    }

    #[test]
    fn overlong_cmdline_is_refused() {
        let long = "x".repeat(CMDLINE_MAX_SIZE);
        assert!(matches!(
            build_cmdline([long.as_str()]),
            Err(BootError::Cmdline(_))
        ));
    }
}
