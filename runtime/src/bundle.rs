//! OCI bundles: loading and checking `config.json` and the root filesystem.

use crate::error::{BundleError, RuntimeError};
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// The name of the spec inside a bundle.
pub const CONFIG_FILE: &str = "config.json";

/// A loaded, checked bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// Its `config.json`.
    pub spec: Spec,
    /// `root.path`, made absolute against the bundle.
    pub rootfs: PathBuf,
}

impl Bundle {
    /// Loads `dir/config.json` and checks what husk needs: a `root.path` that is an
    /// existing directory, and a `process` with `args` and an absolute `cwd`.
    pub fn load(dir: &Path) -> Result<Self, RuntimeError> {
        let dir = std::fs::canonicalize(dir)
            .map_err(|e| RuntimeError::io(format!("bundle {}", dir.display()), e))?;
        let spec = load_spec(&dir.join(CONFIG_FILE))?;
        let invalid = |source: BundleError| RuntimeError::InvalidBundle {
            bundle: dir.clone(),
            source,
        };
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| invalid(BundleError::NoRoot))?;
        let rootfs = dir.join(root.path());
        if !rootfs.is_dir() {
            return Err(invalid(BundleError::NoRootfs(rootfs)));
        }
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| invalid(BundleError::NoProcess))?;
        if !process.args().as_ref().is_some_and(|a| !a.is_empty()) {
            return Err(invalid(BundleError::NoArgs));
        }
        if !process.cwd().is_absolute() {
            return Err(invalid(BundleError::RelativeCwd(process.cwd().clone())));
        }
        Ok(Bundle { dir, spec, rootfs })
    }
}

/// Reads and parses a `config.json`; a parse error names the file, line and column.
pub fn load_spec(path: &Path) -> Result<Spec, RuntimeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| RuntimeError::io(format!("read {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|source| RuntimeError::MalformedConfig {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(config: &str, rootfs: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), config).unwrap();
        if rootfs {
            std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        }
        dir
    }

    const GOOD: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;

    #[test]
    fn loads_a_good_bundle() {
        let dir = bundle_with(GOOD, true);
        let b = Bundle::load(dir.path()).unwrap();
        assert!(b.dir.is_absolute());
        assert_eq!(b.rootfs, b.dir.join("rootfs"));
    }

    #[test]
    fn malformed_json_names_file_and_position() {
        let dir = bundle_with("{\n  \"ociVersion\": \"1.0.2\",\n  oops\n}", true);
        let msg = husk_protocol::error_chain(&Bundle::load(dir.path()).unwrap_err());
        assert!(
            msg.contains("config.json") && msg.contains("line 3"),
            "{msg}"
        );
    }

    #[test]
    fn missing_rootfs_is_named() {
        let dir = bundle_with(GOOD, false);
        let msg = husk_protocol::error_chain(&Bundle::load(dir.path()).unwrap_err());
        assert!(
            msg.contains("root.path") && msg.contains("does not exist"),
            "{msg}"
        );
    }

    #[test]
    fn process_is_checked() {
        let no_args = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":[],"cwd":"/","user":{"uid":0,"gid":0}}}"#;
        let msg = husk_protocol::error_chain(
            &Bundle::load(bundle_with(no_args, true).path()).unwrap_err(),
        );
        assert!(msg.contains("process.args"), "{msg}");
        let rel = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"tmp","user":{"uid":0,"gid":0}}}"#;
        let msg =
            husk_protocol::error_chain(&Bundle::load(bundle_with(rel, true).path()).unwrap_err());
        assert!(msg.contains("process.cwd"), "{msg}");
    }

    #[test]
    fn missing_config_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let msg = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("config.json"), "{msg}");
    }
}
