//! One writer per output folder. `watch` holds an advisory lock on its OUTDIR for as long as it
//! runs: a second watcher on the same folder would remove the first one's open part as stale at
//! start, and both would score the same new files, so the second stops before touching anything.
//!
//! The lock is taken on the folder itself (`flock` on its descriptor), not on a file in it, so
//! the folder holds only parts, and the lock goes with the process however it ends.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path} is the output folder of another running `synthscan watch`; stop that one first, or give this one another --out")]
    Held { path: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held while the folder is being written; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct OutdirLock {
    _dir: File,
}

/// Takes the lock on `dir` without waiting: [`LockError::Held`] when another process has it.
pub fn lock(dir: &Path) -> Result<OutdirLock, LockError> {
    let io = |source| LockError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let handle = File::open(dir).map_err(io)?;
    match handle.try_lock() {
        Ok(()) => Ok(OutdirLock { _dir: handle }),
        Err(TryLockError::WouldBlock) => Err(LockError::Held {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_folder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock(dir.path()).unwrap();
        // flock locks belong to the open file description, so a second open in this process
        // conflicts just as another process's would.
        let err = lock(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
        drop(first);
        lock(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
