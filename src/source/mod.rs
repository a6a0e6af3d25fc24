//! Where candidate files come from. A source knows nothing of decoding or models: it hands on
//! paths, and the problems it met on the way (a loop, a permission error) as candidates with a
//! defect, so that they too end as a verdict row.

pub mod walk;
pub mod watch;

use std::path::PathBuf;

use crate::verdict::Status;

/// A file the pipeline must account for with exactly one verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub path: PathBuf,
    /// Set when the source already knows the file cannot be scored.
    pub defect: Option<Defect>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Defect {
    pub status: Status,
    pub message: String,
}

impl Candidate {
    pub fn file(path: PathBuf) -> Self {
        Candidate { path, defect: None }
    }

    pub fn defective(path: PathBuf, status: Status, message: impl Into<String>) -> Self {
        Candidate {
            path,
            defect: Some(Defect {
                status,
                message: message.into(),
            }),
        }
    }

    pub fn display(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }
}
