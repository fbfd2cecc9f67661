//! A mount's `options` as runc reads them: flags to set or clear, propagation
//! changes applied after the mount, and everything else passed on as data.

use nix::mount::MsFlags;

/// Options that need features husk does not have; refused by name.
const UNSUPPORTED: &[&str] = &[
    "tmpcopyup",
    "idmap",
    "ridmap",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnoatime",
    "ratime",
];

pub use husk_protocol::features::MOUNT_OPTIONS as KNOWN;

/// A mount's options, read.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// Flags for `mount(2)` (with `MS_BIND` and `MS_REC` for `bind` and `rbind`).
    pub flags: MsFlags,
    /// Propagation changes, in order, after the mount.
    pub propagation: Vec<MsFlags>,
    /// The file-system-specific rest, joined with commas.
    pub data: String,
}

/// The flag of a flag option, and whether the option clears it.
fn flag(option: &str) -> Option<(bool, MsFlags)> {
    use MsFlags as F;
    Some(match option {
        "defaults" => (false, F::empty()),
        "ro" => (false, F::MS_RDONLY),
        "rw" => (true, F::MS_RDONLY),
        "nosuid" => (false, F::MS_NOSUID),
        "suid" => (true, F::MS_NOSUID),
        "nodev" => (false, F::MS_NODEV),
        "dev" => (true, F::MS_NODEV),
        "noexec" => (false, F::MS_NOEXEC),
        "exec" => (true, F::MS_NOEXEC),
        "sync" => (false, F::MS_SYNCHRONOUS),
        "async" => (true, F::MS_SYNCHRONOUS),
        "dirsync" => (false, F::MS_DIRSYNC),
        "remount" => (false, F::MS_REMOUNT),
        "mand" => (false, F::MS_MANDLOCK),
        "nomand" => (true, F::MS_MANDLOCK),
        "noatime" => (false, F::MS_NOATIME),
        "atime" => (true, F::MS_NOATIME),
        "nodiratime" => (false, F::MS_NODIRATIME),
        "diratime" => (true, F::MS_NODIRATIME),
        "relatime" => (false, F::MS_RELATIME),
        "norelatime" => (true, F::MS_RELATIME),
        "strictatime" => (false, F::MS_STRICTATIME),
        "nostrictatime" => (true, F::MS_STRICTATIME),
        "lazytime" => (false, F::MS_LAZYTIME),
        "nolazytime" => (true, F::MS_LAZYTIME),
        "silent" => (false, F::MS_SILENT),
        "loud" => (true, F::MS_SILENT),
        "bind" => (false, F::MS_BIND),
        "rbind" => (false, F::MS_BIND.union(F::MS_REC)),
        _ => return None,
    })
}

/// The propagation change of a propagation option.
fn propagation(option: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match option {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// The propagation of `linux.rootfsPropagation`.
pub fn root_propagation(value: &str) -> Option<MsFlags> {
    propagation(value)
}

/// Reads `options` in order (a later `rw` undoes an earlier `ro`).
pub fn parse(options: &[String]) -> Result<Options, String> {
    let mut read = Options {
        flags: MsFlags::empty(),
        propagation: Vec::new(),
        data: String::new(),
    };
    let mut data = Vec::new();
    for option in options {
        if let Some((clear, f)) = flag(option) {
            if clear {
                read.flags.remove(f);
            } else {
                read.flags.insert(f);
            }
        } else if let Some(p) = propagation(option) {
            read.propagation.push(p);
        } else if UNSUPPORTED.contains(&option.as_str()) {
            return Err(format!("option {option:?} is not supported by husk"));
        } else if option.is_empty() || option.contains('\0') {
            return Err(format!("option {option:?} is not a valid mount option"));
        } else {
            data.push(option.as_str());
        }
    }
    read.data = data.join(",");
    Ok(read)
}
