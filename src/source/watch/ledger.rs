//! File identity for `watch`: which file versions already have a row. A file's identity is its
//! path, size and modification time ([`FileKey`]), as its verdict row records them. The ledger
//! is rebuilt at start from the finalized parts of the output folder, and grows as files are
//! handed on; it keeps one version per path, so it is bounded by the files being watched, not
//! by the history of the folder.

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{TimestampMillisecondType, UInt64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::sink::rolling::is_part_name;
use crate::sink::SinkError;
use crate::verdict::{column, to_ms};

/// A scored file's identity, as its verdict row records it (`path`, `size_bytes`, `modified`).
/// Size and time are absent for candidates that were never a readable regular file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub path: String,
    pub size: Option<u64>,
    pub modified_ms: Option<i64>,
}

impl FileKey {
    pub fn of(path: &Path, md: Option<&std::fs::Metadata>) -> Self {
        let md = md.filter(|m| m.is_file());
        FileKey {
            path: path.to_string_lossy().into_owned(),
            size: md.map(|m| m.len()),
            modified_ms: md.and_then(|m| m.modified().ok()).map(to_ms),
        }
    }
}

/// The version of each path that has a row: the newest by modification time when the output
/// holds several (a file changed, and was scored again).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    // Ordered by path, so that everything under a removed folder is one range.
    versions: BTreeMap<String, (Option<u64>, Option<i64>)>,
}

impl Ledger {
    pub fn contains(&self, key: &FileKey) -> bool {
        self.versions.get(&key.path) == Some(&(key.size, key.modified_ms))
    }

    /// Records the version just handed on as the path's scored one.
    pub fn insert(&mut self, key: FileKey) {
        self.versions.insert(key.path, (key.size, key.modified_ms));
    }

    /// Records a version read from the output, where rows of one path come in no set order:
    /// the newest by modification time wins.
    fn insert_newest(&mut self, key: FileKey) {
        let version = (key.size, key.modified_ms);
        let entry = self.versions.entry(key.path).or_insert(version);
        if version.1 >= entry.1 {
            *entry = version;
        }
    }

    /// Forgets a path that is gone (removed, or renamed away) and, for a folder, every path
    /// under it: a file that comes back is new.
    pub fn forget(&mut self, path: &Path) {
        let path = path.to_string_lossy();
        self.versions.remove(path.as_ref());
        let folder = format!("{}/", path.trim_end_matches('/'));
        let under: Vec<String> = self
            .versions
            .range(folder.clone()..)
            .take_while(|(p, _)| p.starts_with(&folder))
            .map(|(p, _)| p.clone())
            .collect();
        for p in under {
            self.versions.remove(&p);
        }
    }

    /// Keeps only the paths `keep` accepts (those that still exist, after the first walk).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.versions.retain(|p, _| keep(p));
    }

    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }
}

/// The ledger of every finalized part in `dir`, and the number of parts read. Unreadable parts
/// are an error rather than skipped: skipping one would score its files again and duplicate
/// their rows.
pub fn read_ledger(dir: &Path) -> Result<(Ledger, usize), SinkError> {
    let mut ledger = Ledger::default();
    let io = |source| SinkError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((ledger, 0)),
        Err(source) => return Err(io(source)),
    };
    let mut parts = 0;
    for entry in entries {
        let entry = entry.map_err(io)?;
        if !is_part_name(&entry.file_name().to_string_lossy()) {
            continue;
        }
        read_part_keys(&entry.path(), &mut ledger)?;
        parts += 1;
    }
    Ok((ledger, parts))
}

/// Reads the identity columns of one part.
fn read_part_keys(path: &Path, ledger: &mut Ledger) -> Result<(), SinkError> {
    let encode = |reason: String| SinkError::Encode {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|source| SinkError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| encode(e.to_string()))?;
    let wanted = [column::PATH, column::SIZE_BYTES, column::MODIFIED];
    let schema = builder.parquet_schema();
    let indices: Vec<usize> = (0..schema.num_columns())
        .filter(|&i| wanted.contains(&schema.column(i).name()))
        .collect();
    let mask = ProjectionMask::leaves(schema, indices);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| encode(e.to_string()))?;
    for batch in reader {
        let batch = batch.map_err(|e| encode(e.to_string()))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| encode(format!("no {name} column")))
        };
        let (p, s, m) = (
            column(column::PATH)?,
            column(column::SIZE_BYTES)?,
            column(column::MODIFIED)?,
        );
        let (p, s, m) = (
            p.as_string_opt::<i32>()
                .ok_or_else(|| encode("path is not text".into()))?,
            s.as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| encode("size_bytes is not u64".into()))?,
            m.as_primitive_opt::<TimestampMillisecondType>()
                .ok_or_else(|| encode("modified is not a timestamp".into()))?,
        );
        for i in 0..batch.num_rows() {
            ledger.insert_newest(FileKey {
                path: p.value(i).to_string(),
                size: s.is_valid(i).then(|| s.value(i)),
                modified_ms: m.is_valid(i).then(|| m.value(i)),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::rolling::{RollPolicy, RollingSink};
    use crate::sink::Sink;
    use crate::verdict::{FileMeta, ModelColumn, Table, Verdict};

    fn key(path: &str, size: u64, modified_ms: i64) -> FileKey {
        FileKey {
            path: path.into(),
            size: Some(size),
            modified_ms: Some(modified_ms),
        }
    }

    #[test]
    fn the_ledger_reads_back_the_finalized_parts() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table::new(vec![ModelColumn {
            name: "m".into(),
            version: "1".into(),
            threshold: 0.5,
            precision: "fp32".into(),
        }]);
        let policy = RollPolicy {
            max_rows: 4,
            max_age: std::time::Duration::from_secs(60),
        };
        let mut sink = Box::new(RollingSink::create(dir.path(), table, policy).unwrap());
        let row = |i: u64, modified: i64| {
            let mut meta = FileMeta::new(format!("/in/{i}.png"));
            meta.size_bytes = Some(100 + i);
            meta.modified_ms = Some(modified);
            Verdict::scored(meta, vec![0.25])
        };
        let mut rows: Vec<Verdict> = (0..10).map(|i| row(i, 1_000 + i as i64)).collect();
        // 3.png changed and was scored again: the newer version is the one remembered.
        rows.push(row(3, 5_000));
        sink.write(&rows).unwrap();
        sink.finish().unwrap();

        let (ledger, parts) = read_ledger(dir.path()).unwrap();
        assert_eq!(parts, 3);
        assert_eq!(ledger.len(), 10);
        assert!(ledger.contains(&key("/in/3.png", 103, 5_000)));
        assert!(!ledger.contains(&key("/in/3.png", 103, 1_003)));
        assert!(ledger.contains(&key("/in/9.png", 109, 1_009)));
    }

    #[test]
    fn forgetting_a_folder_forgets_what_is_under_it_only() {
        let mut ledger = Ledger::default();
        for p in ["/w/a/1.png", "/w/a/sub/2.png", "/w/ab.png", "/w/b/3.png"] {
            ledger.insert(key(p, 1, 1));
        }
        ledger.forget(Path::new("/w/a"));
        assert!(!ledger.contains(&key("/w/a/1.png", 1, 1)));
        assert!(!ledger.contains(&key("/w/a/sub/2.png", 1, 1)));
        assert!(ledger.contains(&key("/w/ab.png", 1, 1)));
        ledger.forget(Path::new("/w/ab.png"));
        assert_eq!(ledger.len(), 1);
        // One version per path: the one handed on last.
        ledger.insert(key("/w/b/3.png", 2, 0));
        assert!(ledger.contains(&key("/w/b/3.png", 2, 0)));
        assert!(!ledger.contains(&key("/w/b/3.png", 1, 1)));
        assert_eq!(ledger.len(), 1);
    }
}
