//! Where candidate files come from. A source knows nothing of decoding or models: it hands on
//! paths, and the problems it met on the way (a loop, a permission error) as candidates with a
//! defect, so that they too end as a verdict row. Uploads to `serve` arrive as candidates that
//! carry their bytes, so they never touch the filesystem.

pub mod walk;
pub mod watch;

use std::path::PathBuf;

use crate::verdict::{to_ms, Status};

/// A file the pipeline must account for with exactly one verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub path: PathBuf,
    /// Set when the source already knows the file cannot be scored.
    pub defect: Option<Defect>,
    /// The file's bytes when they are in memory already; `path` is then only a label.
    pub content: Option<Upload>,
    /// The version the source handed on, from a source that hands a file on again whenever it
    /// changes (`watch`). A file found to be another version when read is then dropped rather
    /// than scored: its row would describe a version the source is about to hand on itself.
    pub version: Option<Version>,
}

/// A file's size and modification time, as its verdict row records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub size: u64,
    pub modified_ms: Option<i64>,
}

impl Version {
    /// The version `md` describes; `None` for anything but a regular file.
    pub fn of(md: &std::fs::Metadata) -> Option<Version> {
        md.is_file().then(|| Version {
            size: md.len(),
            modified_ms: md.modified().ok().map(to_ms),
        })
    }
}

/// An in-memory file and the ticket that routes its verdict back to whoever sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub ticket: u64,
    pub bytes: bytes::Bytes,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Defect {
    pub status: Status,
    pub message: String,
}

impl Candidate {
    pub fn file(path: PathBuf) -> Self {
        Candidate {
            path,
            defect: None,
            content: None,
            version: None,
        }
    }

    pub fn in_memory(name: String, ticket: u64, bytes: bytes::Bytes) -> Self {
        Candidate {
            path: PathBuf::from(name),
            defect: None,
            content: Some(Upload { ticket, bytes }),
            version: None,
        }
    }

    pub fn defective(path: PathBuf, status: Status, message: impl Into<String>) -> Self {
        Candidate {
            path,
            defect: Some(Defect {
                status,
                message: message.into(),
            }),
            content: None,
            version: None,
        }
    }

    pub fn display(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}
