//! The file-system operations and measurements of `husk-checker`.

use crate::Op;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

/// Largest extended attribute value read.
const XATTR_MAX: usize = 64 << 10;
/// I/O chunk of the sequential benchmarks.
const CHUNK: usize = 1 << 20;

/// Runs one operation and gives back what to print.
pub fn run(op: Op) -> Result<String> {
    Ok(match op {
        Op::Stat { paths } => paths
            .iter()
            .map(|p| stat(p))
            .collect::<Result<Vec<_>>>()?
            .join("\n"),
        Op::Sha256 { path } => {
            let (digest, bytes) = sha256(&path)?;
            format!("sha256={digest} bytes={bytes}")
        }
        Op::Count { dir } => {
            let n = std::fs::read_dir(&dir)
                .with_context(|| format!("read_dir {}", dir.display()))?
                .map(|e| e.map(|_| ()))
                .collect::<std::io::Result<Vec<_>>>()?
                .len();
            format!("entries={n}")
        }
        Op::GetXattr { path, name } => format!("value={}", get_xattr(&path, &name)?),
        Op::SetXattr { path, name, value } => {
            set_xattr(&path, &name, &value)?;
            "done".into()
        }
        Op::Create {
            path,
            text,
            mode,
            owner,
        } => {
            let mode = u32::from_str_radix(&mode, 8).context("mode is octal")?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .with_context(|| format!("create {}", path.display()))?;
            f.write_all(text.as_bytes())?;
            // The umask may have narrowed the mode: set it as asked.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            if let Some(owner) = owner {
                let (uid, gid) = owner.split_once(':').context("owner is UID:GID")?;
                std::os::unix::fs::chown(&path, Some(uid.parse()?), Some(gid.parse()?))?;
            }
            "done".into()
        }
        Op::Read { path } => format!(
            "text={}",
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?
        ),
        Op::Rename { from, to } => {
            std::fs::rename(&from, &to)
                .with_context(|| format!("rename {} {}", from.display(), to.display()))?;
            "done".into()
        }
        Op::Unlink { path } => {
            std::fs::remove_file(&path).with_context(|| format!("unlink {}", path.display()))?;
            "done".into()
        }
        Op::Exists { path } => {
            let exists = path.symlink_metadata().is_ok();
            format!("exists={}", if exists { "yes" } else { "no" })
        }
        Op::MakeFiles { dir, count } => {
            make_files(&dir, count)?;
            "done".into()
        }
        Op::WriteSeq { path, mib } => {
            let start = Instant::now();
            let mut f = std::fs::File::create(&path)?;
            let buf = vec![0x5au8; CHUNK];
            for _ in 0..mib {
                f.write_all(&buf)?;
            }
            f.sync_all()?;
            format!(
                "bytes={} secs={:.6}",
                mib << 20,
                start.elapsed().as_secs_f64()
            )
        }
        Op::ReadSeq { path } => {
            let start = Instant::now();
            let mut f = std::fs::File::open(&path)?;
            let mut buf = vec![0u8; CHUNK];
            let mut bytes = 0u64;
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                bytes += n as u64;
            }
            format!("bytes={bytes} secs={:.6}", start.elapsed().as_secs_f64())
        }
        Op::CreateRate { dir, count } => {
            let start = Instant::now();
            make_files(&dir, count)?;
            format!("files={count} secs={:.6}", start.elapsed().as_secs_f64())
        }
        Op::Validate { .. } => bail!("validate is not a file-system operation"),
    })
}

fn stat(path: &Path) -> Result<String> {
    let m = path
        .symlink_metadata()
        .with_context(|| format!("stat {}", path.display()))?;
    Ok(format!(
        "mode={:#o} uid={} gid={} size={}",
        m.mode(),
        m.uid(),
        m.gid(),
        m.size()
    ))
}

fn sha256(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    let digest = hasher.finalize();
    Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), bytes))
}

fn make_files(dir: &Path, count: u32) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for i in 0..count {
        std::fs::write(dir.join(i.to_string()), b"x")
            .with_context(|| format!("create {}/{i}", dir.display()))?;
    }
    Ok(())
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).context("path has a NUL byte")
}

fn get_xattr(path: &Path, name: &str) -> Result<String> {
    let (p, n) = (c_path(path)?, CString::new(name)?);
    let mut buf = vec![0u8; XATTR_MAX];
    // SAFETY: NUL-terminated path and name; the buffer is ours and its length passed.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        bail!(
            "getxattr {} {name}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    buf.truncate(len as usize);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn set_xattr(path: &Path, name: &str, value: &str) -> Result<()> {
    let (p, n) = (c_path(path)?, CString::new(name)?);
    // SAFETY: NUL-terminated path and name; the value's pointer and length match.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        bail!(
            "setxattr {} {name}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
