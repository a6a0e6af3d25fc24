//! Taking over a watch output folder, in the order that keeps rows exactly once: make it, lock
//! it against a second watcher (what counts as stale next would be that watcher's open part),
//! refuse it if it cannot take a part, remove the parts an earlier run left unfinished, and
//! rebuild the ledger from the finished ones.

use std::path::{Path, PathBuf};

use super::ledger::{read_ledger, Ledger};
use crate::sink::lock::{self, LockError, OutdirLock};
use crate::sink::{self, rolling, SinkError};
use crate::verdict::reader::ReadError;

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Held(LockError),
    #[error(transparent)]
    Unwritable(SinkError),
    #[error("removing unfinished parts: {0}")]
    Stale(SinkError),
    #[error("reading the finished parts: {0}")]
    Ledger(#[from] ReadError),
}

impl ResumeError {
    /// Whether the folder given was refused before anything was done (the command line's
    /// fault, exit 2), rather than failing while being read.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ResumeError::Create { .. } | ResumeError::Held(_) | ResumeError::Unwritable(_)
        )
    }
}

/// A watch output folder, taken over.
#[derive(Debug)]
pub struct Resumed {
    /// The folder, absolute, so that a restart from elsewhere finds the same rows.
    pub out: PathBuf,
    /// Held for the run; `None` where the file system cannot lock (a warning says so).
    pub lock: Option<OutdirLock>,
    /// The file versions that already have a row.
    pub ledger: Ledger,
    /// Finished parts read, and unfinished ones removed.
    pub parts: usize,
    pub stale: usize,
}

pub fn resume(out: &Path) -> Result<Resumed, ResumeError> {
    let create = |source| ResumeError::Create {
        path: out.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out).map_err(create)?;
    let out = out.canonicalize().map_err(create)?;
    let lock = match lock::lock(&out) {
        Ok(l) => Some(l),
        Err(e @ LockError::Held { .. }) => return Err(ResumeError::Held(e)),
        Err(e) => {
            tracing::warn!(
                "{e}; nothing stops a second watcher on this folder from duplicating rows"
            );
            None
        }
    };
    sink::check_writable(&out.join(rolling::PROBE_NAME)).map_err(ResumeError::Unwritable)?;
    let stale = rolling::remove_stale_partials(&out).map_err(ResumeError::Stale)?;
    let (ledger, parts) = read_ledger(&out)?;
    Ok(Resumed {
        out,
        lock,
        ledger,
        parts,
        stale,
    })
}
