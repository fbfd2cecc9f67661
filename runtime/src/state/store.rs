//! The on-disk store of container states, with atomic writes and `flock` locking.

use super::{validate_id, ContainerState};
use crate::error::{RootProblem, RuntimeError};
use husk_protocol::error_chain;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, RenameFlags};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const STATE_FILE: &str = "state.json";
const LOCK_FILE: &str = "lock";
/// Containers being created are assembled under `ROOT/creating@<id>@<pid>@<n>`: `@` is
/// not allowed in ids, so these names never clash with a container and `list`
/// skips them.
const CREATING_MARK: char = '@';
/// How often [`Store::lock`] reopens a lock file that was replaced while it waited.
const LOCK_RETRIES: usize = 8;

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A name no other writer (process or thread) uses at the same time.
fn unique_suffix() -> String {
    format!(
        "{}.{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A held `flock` on `ROOT/<id>/lock`; released when dropped.
#[derive(Debug)]
pub struct Lock {
    _file: Flock<File>,
}

/// The store under `--root`: one directory per container.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating the directory (mode 0700) if needed. An
    /// existing root (creating fails on anything but a directory) must be husk's own
    /// user's, and no other user may write it: whoever can change the store can make husk act on another container's
    /// sockets and processes.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let root = root.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| RuntimeError::io(format!("create state root {}", root.display()), e))?;
        let meta = fs::metadata(&root)
            .map_err(|e| RuntimeError::io(format!("state root {}", root.display()), e))?;
        let unsafe_root = |problem| RuntimeError::UnsafeRoot {
            root: root.clone(),
            problem,
        };
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(unsafe_root(RootProblem::Owner {
                owner: meta.uid(),
                user: me,
            }));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(unsafe_root(RootProblem::Writable {
                mode: meta.mode() & 0o7777,
            }));
        }
        Ok(Store { root })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of container `id` (the sandbox keeps its sockets there too).
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Adds a new container atomically and returns its exclusive lock, held.
    ///
    /// The directory is assembled under a temporary name (lock file, locked, and
    /// `state.json`) and renamed into place with `RENAME_NOREPLACE`, so other
    /// commands see either nothing or a complete, locked container, and of two
    /// concurrent creates of one id exactly one wins; the other gets
    /// [`RuntimeError::AlreadyExists`].
    pub fn create(&self, state: &ContainerState) -> Result<Lock, RuntimeError> {
        validate_id(&state.id)?;
        if self.dir(&state.id).exists() {
            return Err(RuntimeError::AlreadyExists(state.id.clone()));
        }
        let tmp = self.root.join(format!(
            "creating{CREATING_MARK}{}{CREATING_MARK}{}",
            state.id,
            unique_suffix()
        ));
        let result = self.assemble(&tmp, state).and_then(|lock| {
            match nix::fcntl::renameat2(
                nix::fcntl::AT_FDCWD,
                &tmp,
                nix::fcntl::AT_FDCWD,
                &self.dir(&state.id),
                RenameFlags::RENAME_NOREPLACE,
            ) {
                Ok(()) => Ok(lock),
                Err(Errno::EEXIST | Errno::ENOTEMPTY) => {
                    Err(RuntimeError::AlreadyExists(state.id.clone()))
                }
                Err(e) => Err(RuntimeError::io(
                    format!("move {} into place", tmp.display()),
                    e.into(),
                )),
            }
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn assemble(&self, tmp: &Path, state: &ContainerState) -> Result<Lock, RuntimeError> {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(tmp)
            .map_err(|e| RuntimeError::io(format!("create {}", tmp.display()), e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.join(LOCK_FILE))
            .map_err(|e| RuntimeError::io(format!("create lock in {}", tmp.display()), e))?;
        let lock = flock(file, FlockArg::LockExclusive, tmp)?;
        write_atomic(tmp, STATE_FILE, &to_json(state)?)?;
        Ok(lock)
    }

    /// Reads the state of container `id` (take a lock first for a consistent
    /// read-modify-write; a lone read is consistent anyway, writes being atomic).
    pub fn load(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        validate_id(id)?;
        let path = self.dir(id).join(STATE_FILE);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                return Err(RuntimeError::NotFound(id.to_string()))
            }
            Err(e) => return Err(RuntimeError::io(format!("read {}", path.display()), e)),
        };
        serde_json::from_slice(&text).map_err(|source| RuntimeError::CorruptState { path, source })
    }

    /// Replaces the state of an existing container atomically (temporary file in the
    /// same directory, fsync, rename). The caller holds the container's exclusive lock.
    pub fn save(&self, state: &ContainerState) -> Result<(), RuntimeError> {
        validate_id(&state.id)?;
        let dir = self.dir(&state.id);
        if !dir.join(STATE_FILE).exists() {
            return Err(RuntimeError::NotFound(state.id.clone()));
        }
        write_atomic(&dir, STATE_FILE, &to_json(state)?)
    }

    /// Takes the exclusive lock of container `id`, waiting for other holders.
    pub fn lock(&self, id: &str) -> Result<Lock, RuntimeError> {
        self.lock_with(id, FlockArg::LockExclusive)
            .and_then(|l| l.ok_or_else(|| busy(id)))
    }

    /// Takes a shared lock of container `id`, waiting for an exclusive holder.
    pub fn lock_shared(&self, id: &str) -> Result<Lock, RuntimeError> {
        self.lock_with(id, FlockArg::LockShared)
            .and_then(|l| l.ok_or_else(|| busy(id)))
    }

    /// Takes a shared lock of container `id` if nobody holds it exclusively; `None`
    /// if someone does (a command is changing the container right now).
    pub fn try_lock_shared(&self, id: &str) -> Result<Option<Lock>, RuntimeError> {
        self.lock_with(id, FlockArg::LockSharedNonblock)
    }

    /// Locks `ROOT/<id>/lock`. If the container was deleted (and maybe created anew)
    /// while waiting, the file locked is no longer the one at that path: then it
    /// tries again, or reports the container missing.
    fn lock_with(&self, id: &str, arg: FlockArg) -> Result<Option<Lock>, RuntimeError> {
        validate_id(id)?;
        let path = self.dir(id).join(LOCK_FILE);
        for _ in 0..LOCK_RETRIES {
            let file = match OpenOptions::new().read(true).open(&path) {
                Ok(f) => f,
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    return Err(RuntimeError::NotFound(id.to_string()))
                }
                Err(e) => return Err(RuntimeError::io(format!("open {}", path.display()), e)),
            };
            let locked_ino = file
                .metadata()
                .map_err(|e| RuntimeError::io(format!("stat {}", path.display()), e))?
                .ino();
            let lock = match Flock::lock(file, arg) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) if arg == FlockArg::LockSharedNonblock => {
                    return Ok(None)
                }
                Err((_, e)) => {
                    return Err(RuntimeError::io(
                        format!("lock {}", path.display()),
                        e.into(),
                    ))
                }
            };
            match fs::metadata(&path) {
                Ok(m) if m.ino() == locked_ino => return Ok(Some(Lock { _file: lock })),
                Ok(_) => continue,
                Err(_) => return Err(RuntimeError::NotFound(id.to_string())),
            }
        }
        Err(RuntimeError::InvalidState(format!(
            "container \"{id}\" keeps being replaced while locking it"
        )))
    }

    /// Removes container `id`'s directory and everything in it (idempotent). The
    /// caller holds its exclusive lock.
    pub fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        validate_id(id)?;
        let dir = self.dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(RuntimeError::io(format!("remove {}", dir.display()), e)),
        }
    }

    /// The states of all containers, sorted by id. Directories without a readable
    /// state (being created, half removed, corrupt) are skipped with a debug line.
    pub fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let entries = fs::read_dir(&self.root)
            .map_err(|e| RuntimeError::io(format!("read {}", self.root.display()), e))?;
        let mut states = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| RuntimeError::io(format!("read {}", self.root.display()), e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if validate_id(&name).is_err() {
                continue;
            }
            match self.load(&name) {
                Ok(state) => states.push(state),
                Err(e) => tracing::debug!("list: skipping {name}: {}", error_chain(&e)),
            }
        }
        states.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(states)
    }
}

/// Only non-blocking locks give `None`; a blocking one that did is a bug, reported
/// rather than panicking.
fn busy(id: &str) -> RuntimeError {
    RuntimeError::InvalidState(format!("container \"{id}\" is locked by another command"))
}

fn flock(file: File, arg: FlockArg, dir: &Path) -> Result<Lock, RuntimeError> {
    Flock::lock(file, arg)
        .map(|f| Lock { _file: f })
        .map_err(|(_, e)| RuntimeError::io(format!("lock {}", dir.display()), e.into()))
}

fn to_json(state: &ContainerState) -> Result<Vec<u8>, RuntimeError> {
    serde_json::to_vec_pretty(state).map_err(|e| {
        RuntimeError::io(
            format!("serialise state of {}", state.id),
            std::io::Error::other(e),
        )
    })
}

/// Writes `dir/name` atomically: a temporary file in `dir`, fsync, rename, fsync of
/// the directory. Readers see the old content or the new, never a mix.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RuntimeError> {
    let tmp = dir.join(format!(".{name}.{}.tmp", unique_suffix()));
    let target = dir.join(name);
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &target)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        RuntimeError::io(format!("write {}", target.display()), e)
    })
}
