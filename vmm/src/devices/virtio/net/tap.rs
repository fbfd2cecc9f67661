//! The host end of a virtio-net device: a tap interface.
//!
//! A tap is opened from `/dev/net/tun` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`: every
//! read and write is one Ethernet frame preceded by a [`VNET_HDR_LEN`]-byte virtio-net
//! header (the same header the guest driver uses), so checksum and segmentation
//! offloads pass between guest and host kernel untouched. The descriptor is
//! non-blocking and close-on-exec.

use std::ffi::CStr;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

/// Size of the virtio-net header in front of every frame (`virtio_net_hdr_v1`: a
/// modern device always has the `num_buffers` field).
pub const VNET_HDR_LEN: usize = 12;

/// Why a tap could not be opened or set up.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The interface name cannot be a Linux interface name.
    #[error("invalid tap name {0:?}: 1 to 15 bytes, no '/', ':', NUL or whitespace")]
    InvalidName(String),
    /// `/dev/net/tun` could not be opened.
    #[error("cannot open /dev/net/tun")]
    Open(#[source] io::Error),
    /// The kernel refused an ioctl on the tap.
    #[error("tap {name}: {what} failed")]
    Ioctl {
        /// The interface.
        name: String,
        /// The request.
        what: &'static str,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// A descriptor handed over is not a tap with a virtio-net header.
    #[error("descriptor {fd} is not a tap opened with IFF_TAP, IFF_NO_PI and IFF_VNET_HDR")]
    NotVnetTap {
        /// The descriptor.
        fd: RawFd,
    },
}

/// What a virtio-net device needs from its backend: whole frames in and out, and the
/// offloads the guest can take. The tap implements it; tests use a socket pair.
pub trait NetBackend: AsRawFd + Send {
    /// Reads one frame (with its header) into `buf`; `WouldBlock` when none waits.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Writes one frame (with its header).
    fn send(&self, frame: &[u8]) -> io::Result<usize>;
    /// Tells the backend which offloads (`TUN_F_*`) the guest accepts on receive.
    fn set_offload(&self, flags: u32) -> io::Result<()>;
}

/// A tap interface.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
}

/// `ifreq` with `name` and `flags` filled in.
fn ifreq(name: &str, flags: libc::c_int) -> Result<libc::ifreq, TapError> {
    let bad = name.is_empty()
        || name.len() >= libc::IFNAMSIZ
        || name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if bad {
        return Err(TapError::InvalidName(name.to_owned()));
    }
    // SAFETY: `ifreq` is plain old data (integers, arrays and a union of them); all
    // zeroes is a valid value of it.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    // Interface flags are a C short; the TUN flags used here all fit.
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    Ok(req)
}

/// A tap ioctl with the argument its request reads or writes: the request and the
/// argument's type come together, so no call can hand the kernel a buffer of the
/// wrong size.
enum TapIoctl<'a> {
    /// `TUNSETIFF`: attach to (or create) the interface named in the request.
    SetIff(&'a mut libc::ifreq),
    /// `TUNGETIFF`: the attached interface's name and flags.
    GetIff(&'a mut libc::ifreq),
    /// `TUNSETVNETHDRSZ`: the virtio-net header length.
    SetVnetHdrSz(&'a mut libc::c_int),
}

impl TapIoctl<'_> {
    /// Makes the call on `fd`.
    fn call(self, fd: RawFd) -> io::Result<()> {
        let ret = match self {
            // SAFETY: TUNSETIFF and TUNGETIFF read or write one `ifreq` behind the
            // pointer, which is live and exclusively borrowed for the call.
            TapIoctl::SetIff(req) => unsafe { libc::ioctl(fd, libc::TUNSETIFF, req as *mut _) },
            // SAFETY: as above.
            TapIoctl::GetIff(req) => unsafe { libc::ioctl(fd, libc::TUNGETIFF, req as *mut _) },
            // SAFETY: TUNSETVNETHDRSZ reads one `int` behind the pointer, live and
            // exclusively borrowed for the call.
            TapIoctl::SetVnetHdrSz(len) => unsafe {
                libc::ioctl(fd, libc::TUNSETVNETHDRSZ, len as *mut _)
            },
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Tap {
    /// Opens (creating it if needed) the tap `name` in the calling thread's network
    /// namespace.
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let mut req = ifreq(name, libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::Open)?;
        let fd = OwnedFd::from(file);
        TapIoctl::SetIff(&mut req)
            .call(fd.as_raw_fd())
            .map_err(|source| TapError::Ioctl {
                name: name.to_owned(),
                what: "TUNSETIFF",
                source,
            })?;
        let tap = Tap {
            fd,
            name: name.to_owned(),
        };
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    /// Takes over a tap opened elsewhere (for example in another network namespace):
    /// it must have been attached with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`. The
    /// descriptor is made non-blocking.
    pub fn from_fd(fd: OwnedFd) -> Result<Tap, TapError> {
        let raw = fd.as_raw_fd();
        let mut req = ifreq("x", 0)?;
        TapIoctl::GetIff(&mut req)
            .call(raw)
            .map_err(|_| TapError::NotVnetTap { fd: raw })?;
        // SAFETY: TUNGETIFF filled the flags member of the union.
        let flags = libc::c_int::from(unsafe { req.ifr_ifru.ifru_flags });
        let want = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if flags & want != want {
            return Err(TapError::NotVnetTap { fd: raw });
        }
        // SAFETY: TUNGETIFF wrote a NUL-terminated name into the IFNAMSIZ-byte array.
        let name = unsafe { CStr::from_ptr(req.ifr_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        let nonblock = nix::fcntl::OFlag::O_NONBLOCK;
        let current =
            nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).map_err(|e| TapError::Ioctl {
                name: name.clone(),
                what: "F_GETFL",
                source: e.into(),
            })?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(current) | nonblock;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(|e| {
            TapError::Ioctl {
                name: name.clone(),
                what: "F_SETFL O_NONBLOCK",
                source: e.into(),
            }
        })?;
        let tap = Tap { fd, name };
        tap.set_vnet_hdr_len()?;
        Ok(tap)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn set_vnet_hdr_len(&self) -> Result<(), TapError> {
        let mut len = VNET_HDR_LEN as libc::c_int;
        TapIoctl::SetVnetHdrSz(&mut len)
            .call(self.fd.as_raw_fd())
            .map_err(|source| TapError::Ioctl {
                name: self.name.clone(),
                what: "TUNSETVNETHDRSZ",
                source,
            })
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl NetBackend for Tap {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        nix::unistd::read(&self.fd, buf).map_err(io::Error::from)
    }

    fn send(&self, frame: &[u8]) -> io::Result<usize> {
        nix::unistd::write(&self.fd, frame).map_err(io::Error::from)
    }

    fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value and touches no memory.
        let ret = unsafe {
            libc::ioctl(
                self.fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(flags),
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for bad in ["", "a/b", "with space", "0123456789abcdef", "a:1", "nul\0"] {
            assert!(
                matches!(ifreq(bad, 0), Err(TapError::InvalidName(_))),
                "{bad:?}"
            );
        }
        let req = ifreq("tap0", libc::IFF_TAP).unwrap();
        assert_eq!(
            req.ifr_name[..5],
            [b't', b'a', b'p', b'0', 0].map(|b| b as libc::c_char)
        );
    }

    #[test]
    fn a_non_tap_descriptor_is_refused() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = Tap::from_fd(OwnedFd::from(file)).unwrap_err();
        assert!(matches!(err, TapError::NotVnetTap { .. }), "{err}");
    }

    /// Needs root and `/dev/net/tun`; says so and passes where they are missing.
    #[test]
    fn a_tap_opens_and_takes_offloads() {
        let name = format!("hktest{}", std::process::id() % 100_000);
        let tap = match Tap::open(&name) {
            Ok(tap) => tap,
            Err(e) => {
                eprintln!("skipped: cannot create a tap here: {e}");
                return;
            }
        };
        assert_eq!(tap.name(), name);
        tap.set_offload(libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6)
            .unwrap();
        // Nothing is queued on a tap that is down.
        let mut buf = [0u8; 64];
        let err = tap.recv(&mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        // The descriptor can be taken over as it is.
        let again = Tap::from_fd(tap.fd).unwrap();
        assert_eq!(again.name(), name);
    }
}
