//! The job directory: what to run in the test host, and how it ended.
//!
//! Files, each item NUL-terminated where it holds a list: `argv`, `env` (`KEY=VALUE`), `cwd`;
//! the test host writes `status` (a decimal exit code) when the command ends.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// A command to run inside the test host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Program and arguments; the program is looked up in the job's `PATH`.
    pub argv: Vec<OsString>,
    /// The whole environment of the command.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory, a path of the shared root.
    pub cwd: PathBuf,
}

/// A job directory that cannot be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A file of the job directory could not be read or written.
    #[error("job file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A file holds something else than the format above.
    #[error("job file {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, JobError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|source| JobError::Io { path, source })
}

fn write(dir: &Path, name: &str, data: &[u8]) -> Result<(), JobError> {
    let path = dir.join(name);
    std::fs::write(&path, data).map_err(|source| JobError::Io { path, source })
}

fn join_nul<'a>(items: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(item);
        out.push(0);
    }
    out
}

/// Splits a list of NUL-terminated items; empty items survive.
fn split_nul(data: &[u8]) -> Option<Vec<&[u8]>> {
    if data.is_empty() {
        return Some(Vec::new());
    }
    let body = data.strip_suffix(&[0])?;
    Some(body.split(|b| *b == 0).collect())
}

impl Job {
    /// Writes the job into `dir`.
    pub fn write_to(&self, dir: &Path) -> Result<(), JobError> {
        write(
            dir,
            "argv",
            &join_nul(self.argv.iter().map(|a| a.as_bytes())),
        )?;
        let env: Vec<Vec<u8>> = self
            .env
            .iter()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect();
        write(dir, "env", &join_nul(env.iter().map(Vec::as_slice)))?;
        write(dir, "cwd", self.cwd.as_os_str().as_bytes())
    }

    /// Reads a job back from `dir`.
    pub fn read_from(dir: &Path) -> Result<Job, JobError> {
        let malformed = |name: &str, reason| JobError::Malformed {
            path: dir.join(name),
            reason,
        };
        let argv: Vec<OsString> = split_nul(&read(dir, "argv")?)
            .ok_or_else(|| malformed("argv", "not NUL-terminated"))?
            .into_iter()
            .map(|a| OsString::from_vec(a.to_vec()))
            .collect();
        if argv.is_empty() {
            return Err(malformed("argv", "no command"));
        }
        let mut env = Vec::new();
        let env_file = read(dir, "env")?;
        let items = split_nul(&env_file).ok_or_else(|| malformed("env", "not NUL-terminated"))?;
        for item in items {
            let eq = item
                .iter()
                .position(|b| *b == b'=')
                .ok_or_else(|| malformed("env", "an entry has no '='"))?;
            env.push((
                OsString::from_vec(item[..eq].to_vec()),
                OsString::from_vec(item[eq + 1..].to_vec()),
            ));
        }
        let cwd = PathBuf::from(OsString::from_vec(read(dir, "cwd")?));
        Ok(Job { argv, env, cwd })
    }
}

/// Records the command's exit status in `dir`.
pub fn write_status(dir: &Path, code: i32) -> Result<(), JobError> {
    write(dir, "status", format!("{code}\n").as_bytes())
}

/// Reads the command's exit status from `dir`; `Ok(None)` if it never ended.
pub fn read_status(dir: &Path) -> Result<Option<i32>, JobError> {
    let path = dir.join("status");
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| JobError::Malformed {
            path,
            reason: "not a decimal exit code",
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(JobError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("husk-job-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn job_round_trips_awkward_arguments() {
        let dir = scratch("roundtrip");
        let job = Job {
            argv: vec![
                "sh".into(),
                "-c".into(),
                "echo 'a b'\nexit 3".into(),
                "".into(),
            ],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("EQ".into(), "a=b".into()),
            ],
            cwd: "/work/dir with space".into(),
        };
        job.write_to(&dir).unwrap();
        let back = Job::read_from(&dir).unwrap();
        assert_eq!(back, job);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn status_is_absent_until_written() {
        let dir = scratch("status");
        assert_eq!(read_status(&dir).unwrap(), None);
        write_status(&dir, 137).unwrap();
        assert_eq!(read_status(&dir).unwrap(), Some(137));
        std::fs::write(dir.join("status"), "garbage").unwrap();
        assert!(matches!(read_status(&dir), Err(JobError::Malformed { .. })));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn job_without_command_is_refused() {
        let dir = scratch("empty");
        std::fs::write(dir.join("argv"), b"").unwrap();
        std::fs::write(dir.join("env"), b"").unwrap();
        std::fs::write(dir.join("cwd"), b"/").unwrap();
        let err = Job::read_from(&dir).unwrap_err();
        assert!(err.to_string().ends_with("argv: no command"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
