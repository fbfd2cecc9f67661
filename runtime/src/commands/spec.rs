//! `husk spec`: a default config.json, like `runc spec`.

use crate::bundle::CONFIG_FILE;
use crate::error::RuntimeError;
use crate::state::OCI_VERSION;
use oci_spec::runtime::Spec;
use std::io::Write;
use std::path::Path;

/// The default spec: `sh` on a terminal, read-only `rootfs`, hostname `husk`.
pub fn default_spec() -> Spec {
    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_hostname(Some("husk".to_string()));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
    }
    spec
}

/// Writes `bundle/config.json`; refuses to overwrite one, as runc does.
/// (`--rootless=true` never gets here: [`super::dispatch`] refuses it.)
pub fn spec(bundle: &Path) -> Result<(), RuntimeError> {
    let path = bundle.join(CONFIG_FILE);
    let json = serde_json::to_vec_pretty(&default_spec())
        .map_err(|e| RuntimeError::io("format the default spec", std::io::Error::other(e)))?;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(RuntimeError::InvalidArgument(format!(
                "File {} exists. Remove it first",
                path.display()
            )))
        }
        Err(e) => return Err(RuntimeError::io(format!("create {}", path.display()), e)),
    };
    file.write_all(&json)
        .and_then(|()| file.write_all(b"\n"))
        .map_err(|e| RuntimeError::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_round_trips_and_is_runc_like() {
        let dir = tempfile::tempdir().unwrap();
        spec(dir.path()).unwrap();
        let loaded = crate::bundle::load_spec(&dir.path().join(CONFIG_FILE)).unwrap();
        assert_eq!(loaded, default_spec());
        let process = loaded.process().as_ref().unwrap();
        assert_eq!(process.args().as_ref().unwrap(), &vec!["sh".to_string()]);
        assert_eq!(process.terminal(), Some(true));
        let root = loaded.root().as_ref().unwrap();
        assert_eq!(root.path(), Path::new("rootfs"));
        assert_eq!(root.readonly(), Some(true));
        let err = spec(dir.path()).unwrap_err().to_string();
        assert!(err.contains("exists"), "{err}");
    }
}
