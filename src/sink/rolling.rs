//! A folder of Parquet parts for a long-running watch: rows go to an open part, which is
//! finalized (closed, synced, renamed from a hidden temporary name) once it holds `max_rows` rows
//! or has been open for `max_age`, whichever comes first. Readers of the folder (DuckDB, pyarrow,
//! polars) skip names starting with '.', so they see whole parts only, and rows appear within
//! `max_age` of being written.
//!
//! A part's rows are durable only once it is renamed; after a crash the temporary file of the
//! open part is garbage (see [`remove_stale_partials`]) and its files are scored again, because
//! the watch ledger (`source::watch::ledger`) is rebuilt from finalized parts only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{FileSink, Format, Sink, SinkError};
use crate::verdict::{now_ms, Table, Verdict};

const PART_PREFIX: &str = "part-";
const PART_SUFFIX: &str = ".parquet";
/// A part name that is never written, only checked for: its temporary file is one that
/// [`remove_stale_partials`] removes, should a check ever leave it.
pub const PROBE_NAME: &str = "part-check.parquet";

/// When a part is finalized.
#[derive(Debug, Clone, Copy)]
pub struct RollPolicy {
    pub max_rows: usize,
    pub max_age: Duration,
}

struct OpenPart {
    sink: FileSink,
    opened: Instant,
    rows: usize,
}

pub struct RollingSink {
    dir: PathBuf,
    table: Table,
    policy: RollPolicy,
    open: Option<OpenPart>,
    seq: u64,
    finalized: u64,
}

impl RollingSink {
    pub fn create(dir: &Path, table: Table, policy: RollPolicy) -> Result<Self, SinkError> {
        std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(RollingSink {
            dir: dir.to_path_buf(),
            table,
            policy: RollPolicy {
                max_rows: policy.max_rows.max(1),
                ..policy
            },
            open: None,
            seq: 0,
            finalized: 0,
        })
    }

    /// Parts finalized so far by this sink.
    pub fn finalized(&self) -> u64 {
        self.finalized
    }

    fn open_part(&mut self) -> Result<&mut OpenPart, SinkError> {
        if self.open.is_none() {
            // The timestamp keeps names unique across restarts and sorts parts by age; the
            // sequence number orders parts opened within the same millisecond.
            let path = self.dir.join(format!(
                "{PART_PREFIX}{:013}-{:06}{PART_SUFFIX}",
                now_ms().max(0),
                self.seq
            ));
            self.seq += 1;
            let sink = FileSink::create(Format::Parquet, &path, self.table.clone())?;
            self.open = Some(OpenPart {
                sink,
                opened: Instant::now(),
                rows: 0,
            });
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    fn finalize(&mut self) -> Result<(), SinkError> {
        let Some(part) = self.open.take() else {
            return Ok(());
        };
        let path = part.sink.close()?;
        // The rename is only durable once the folder entry is on disk.
        if let Ok(dir) = std::fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.finalized += 1;
        tracing::info!(
            part = %path.display(),
            rows = part.rows,
            open_ms = part.opened.elapsed().as_millis() as u64,
            "finalized verdict part"
        );
        Ok(())
    }

    fn expired(&self) -> bool {
        self.open
            .as_ref()
            .is_some_and(|p| p.opened.elapsed() >= self.policy.max_age)
    }
}

impl Sink for RollingSink {
    fn write(&mut self, mut rows: &[Verdict]) -> Result<(), SinkError> {
        while !rows.is_empty() {
            let max_rows = self.policy.max_rows;
            let part = self.open_part()?;
            let take = rows.len().min(max_rows - part.rows);
            part.sink.write(&rows[..take])?;
            part.rows += take;
            rows = &rows[take..];
            if part.rows >= max_rows {
                self.finalize()?;
            }
        }
        // Rows arriving steadily keep the collector from ever idling, so age is checked here
        // too, not only in `tick`.
        if self.expired() {
            self.finalize()?;
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), SinkError> {
        if self.expired() {
            self.finalize()?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<Option<PathBuf>, SinkError> {
        self.finalize()?;
        Ok(Some(self.dir.clone()))
    }
}

/// Whether a file name is a finalized part (the only files the ledger trusts).
pub fn is_part_name(name: &str) -> bool {
    name.starts_with(PART_PREFIX) && name.ends_with(PART_SUFFIX)
}

/// Deletes temporary files of parts that a killed process never finalized. Only one watcher may
/// write to a folder at a time: this would delete another live writer's open part.
pub fn remove_stale_partials(dir: &Path) -> Result<usize, SinkError> {
    let io = |source| SinkError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&format!(".{PART_PREFIX}")) && name.ends_with(".partial") {
            std::fs::remove_file(entry.path()).map_err(|source| SinkError::Io {
                path: entry.path(),
                source,
            })?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{FileMeta, ModelColumn};

    fn table() -> Table {
        Table::new(vec![ModelColumn::for_tests("m", 0.5)])
    }

    fn row(i: u64) -> Verdict {
        let mut meta = FileMeta::new(format!("/in/{i}.png"));
        meta.size_bytes = Some(100 + i);
        meta.modified_ms = Some(1_000 + i as i64);
        Verdict::scored(meta, vec![0.25])
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn parts_roll_by_rows_and_age() {
        let dir = tempfile::tempdir().unwrap();
        let policy = RollPolicy {
            max_rows: 4,
            max_age: Duration::from_millis(100),
        };
        let mut sink = Box::new(RollingSink::create(dir.path(), table(), policy).unwrap());
        let rows: Vec<Verdict> = (0..10).map(row).collect();
        sink.write(&rows[..9]).unwrap();
        // 9 rows: two full parts, one open (hidden) part.
        let n = names(dir.path());
        assert_eq!(n.iter().filter(|n| is_part_name(n)).count(), 2, "{n:?}");
        assert_eq!(n.iter().filter(|n| n.starts_with('.')).count(), 1, "{n:?}");
        std::thread::sleep(Duration::from_millis(120));
        sink.tick().unwrap();
        assert_eq!(names(dir.path()).len(), 3);
        sink.write(&rows[9..]).unwrap();
        sink.finish().unwrap();
        let n = names(dir.path());
        assert!(n.iter().all(|n| is_part_name(n)), "{n:?}");
        assert_eq!(n.len(), 4);
    }

    #[test]
    fn stale_partials_are_removed_and_parts_kept() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".part-1-000001.parquet.77.partial"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert_eq!(remove_stale_partials(dir.path()).unwrap(), 1);
        assert_eq!(names(dir.path()), vec!["notes.txt".to_string()]);
    }
}
