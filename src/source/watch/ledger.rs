//! File identity for `watch`: which file versions already have a row. A file's identity is its
//! path, size and modification time ([`FileKey`]), as its verdict row records them. The path is
//! compared as the file system's bytes, not as text: a name that is not valid UTF-8 is read back
//! from the `path_bytes` column (parts written before that column existed fall back to `path`,
//! so such a name is scored once more after an upgrade). The ledger
//! is rebuilt at start from the finalized parts of the output folder, and grows as files are
//! handed on; it keeps one version per path, so it is bounded by the files being watched, not
//! by the history of the folder.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use arrow::array::Array;

use crate::sink::rolling::is_part_name;
use crate::verdict::reader::{read_batches, ReadError};
use crate::verdict::{column, row_path, to_ms};

/// A scored file's identity, as its verdict row records it (`path` or `path_bytes`,
/// `size_bytes`, `modified`). Size and time are absent for candidates that were never a readable
/// regular file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileKey {
    pub path: PathBuf,
    pub size: Option<u64>,
    pub modified_ms: Option<i64>,
}

impl FileKey {
    pub fn of(path: &Path, md: Option<&std::fs::Metadata>) -> Self {
        let md = md.filter(|m| m.is_file());
        FileKey {
            path: path.to_path_buf(),
            size: md.map(|m| m.len()),
            modified_ms: md.and_then(|m| m.modified().ok()).map(to_ms),
        }
    }
}

/// The version of each path that has a row: the newest by modification time when the output
/// holds several (a file changed, and was scored again).
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    // Ordered by path, component by component, so that everything under a removed folder is
    // one range right after it.
    versions: BTreeMap<PathBuf, (Option<u64>, Option<i64>)>,
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
        let under: Vec<PathBuf> = self
            .versions
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(path))
            .map(|(p, _)| p.clone())
            .collect();
        for p in under {
            self.versions.remove(&p);
        }
    }

    /// Keeps only the paths `keep` accepts (those that still exist, after the first walk).
    pub fn retain(&mut self, mut keep: impl FnMut(&Path) -> bool) {
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
pub fn read_ledger(dir: &Path) -> Result<(Ledger, usize), ReadError> {
    let mut ledger = Ledger::default();
    let io = |source| ReadError::Io {
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
fn read_part_keys(path: &Path, ledger: &mut Ledger) -> Result<(), ReadError> {
    let wanted = [
        column::PATH,
        column::PATH_BYTES,
        column::SIZE_BYTES,
        column::MODIFIED,
    ];
    for batch in read_batches(path, Some(&wanted))? {
        let batch = batch?;
        let (p, s, m) = (
            batch.text(column::PATH)?,
            batch.u64(column::SIZE_BYTES)?,
            batch.time(column::MODIFIED)?,
        );
        let bytes = batch.bytes_opt(column::PATH_BYTES)?;
        for i in 0..batch.num_rows() {
            ledger.insert_newest(FileKey {
                path: row_path(
                    p.value(i),
                    bytes.filter(|b| b.is_valid(i)).map(|b| b.value(i)),
                ),
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
        let table = Table::new(vec![ModelColumn::for_tests("m", 0.5)]);
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

    fn one_model() -> Table {
        Table::new(vec![ModelColumn::for_tests("m", 0.5)])
    }

    fn scored_row(path: &Path) -> Verdict {
        let mut meta = FileMeta::of_path(path);
        meta.size_bytes = Some(7);
        meta.modified_ms = Some(1_000);
        Verdict::scored(meta, vec![0.25])
    }

    fn file_key(path: &Path) -> FileKey {
        FileKey {
            path: path.to_path_buf(),
            size: Some(7),
            modified_ms: Some(1_000),
        }
    }

    #[cfg(unix)]
    #[test]
    fn names_that_differ_only_in_invalid_bytes_are_two_files_when_read_back() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let path = |b: &[u8]| Path::new(OsStr::from_bytes(b)).to_path_buf();
        let solo = path(b"/in/solo_\xfa.jpg");
        // Both are "/in/twin_\u{fffd}.jpg" as lossy text.
        let twins = [path(b"/in/twin_\xfa.jpg"), path(b"/in/twin_\xfb.jpg")];
        let policy = RollPolicy {
            max_rows: 100,
            max_age: std::time::Duration::from_secs(60),
        };
        let mut sink = Box::new(RollingSink::create(dir.path(), one_model(), policy).unwrap());
        let rows: Vec<Verdict> = [&solo, &twins[0], &twins[1]]
            .into_iter()
            .map(|p| scored_row(p))
            .collect();
        sink.write(&rows).unwrap();
        sink.finish().unwrap();

        let (ledger, _) = read_ledger(dir.path()).unwrap();
        assert_eq!(ledger.len(), 3);
        for p in [&solo, &twins[0], &twins[1]] {
            assert!(ledger.contains(&file_key(p)), "{p:?}");
        }
        assert!(!ledger.contains(&file_key(&path(b"/in/twin_\xfc.jpg"))));
    }

    #[test]
    fn parts_written_before_the_path_bytes_column_are_read_by_their_path_text() {
        let dir = tempfile::tempdir().unwrap();
        let table = one_model();
        let batch = table
            .to_record_batch(&[scored_row(Path::new("/in/old.jpg"))])
            .unwrap();
        let without: Vec<usize> = (0..batch.num_columns())
            .filter(|&i| batch.schema().field(i).name() != column::PATH_BYTES)
            .collect();
        let old = batch.project(&without).unwrap();
        let file = std::fs::File::create(dir.path().join("part-1-000000.parquet")).unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, old.schema(), None).unwrap();
        writer.write(&old).unwrap();
        writer.close().unwrap();

        let (ledger, parts) = read_ledger(dir.path()).unwrap();
        assert_eq!((parts, ledger.len()), (1, 1));
        assert!(ledger.contains(&file_key(Path::new("/in/old.jpg"))));
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
