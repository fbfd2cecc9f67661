//! virtio-fs shares: the host's directories (a container's root filesystem first of
//! all), mounted at boot under [`SHARES_DIR`] by their tags.

use nix::mount::{mount, MsFlags};
use std::path::{Path, PathBuf};

/// Where shares are mounted: `/run/husk/shares/<tag>`.
pub const SHARES_DIR: &str = "/run/husk/shares";
/// Longest virtio-fs tag (virtio 1.2, 5.11.4).
pub const MAX_TAG_LEN: usize = 36;

/// A tag that cannot name a share.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid virtio-fs tag {0:?}: 1 to 36 bytes of letters, digits, '-', '_' or '.', not '.' or '..'")]
pub struct BadTag(pub String);

/// Checks that `tag` is a valid virtio-fs tag and a safe directory name.
pub fn check_tag(tag: &str) -> Result<(), BadTag> {
    let ok = !tag.is_empty()
        && tag.len() <= MAX_TAG_LEN
        && tag != "."
        && tag != ".."
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(BadTag(tag.to_owned()))
    }
}

/// Where the share `tag` is mounted.
pub fn mount_point(tag: &str) -> PathBuf {
    Path::new(SHARES_DIR).join(tag)
}

/// A share that could not be mounted.
#[derive(Debug, thiserror::Error)]
#[error("cannot mount virtio-fs share {tag:?} on {}", target.display())]
pub struct ShareError {
    tag: String,
    target: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Mounts the virtio-fs share `tag` at its mount point and returns that.
pub fn mount_share(tag: &str) -> Result<PathBuf, ShareError> {
    let target = mount_point(tag);
    let fail = |source| ShareError {
        tag: tag.to_owned(),
        target: target.clone(),
        source,
    };
    std::fs::create_dir_all(&target).map_err(fail)?;
    mount(
        Some(tag),
        &target,
        Some("virtiofs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| fail(e.into()))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked() {
        for good in ["rootfs", "pod-1_a.b", &"x".repeat(36)] {
            check_tag(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(37)] {
            assert_eq!(check_tag(bad), Err(BadTag(bad.to_owned())));
        }
    }

    #[test]
    fn shares_live_under_run_husk() {
        assert_eq!(mount_point("rootfs"), Path::new("/run/husk/shares/rootfs"));
    }
}
