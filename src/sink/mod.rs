//! Writing verdict rows durably. Every sink writes to a temporary name beside the target and
//! renames it into place only when complete, so a reader never sees half a file.

pub mod csv;
pub mod jsonl;
pub mod lock;
pub mod parquet;
pub mod rolling;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;

use crate::verdict::{Table, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode verdicts for {path}: {reason}")]
    Encode { path: PathBuf, reason: String },
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Parquet,
    Csv,
    Jsonl,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Parquet, Format::Csv, Format::Jsonl];

    /// The format's name, as its file extension.
    pub fn name(self) -> &'static str {
        self.extension()
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
        }
    }

    /// The format a name asks for (`parquet`, `csv`, `jsonl`).
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The format a file name asks for, if its extension names one.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "parquet" => Some(Format::Parquet),
            "csv" => Some(Format::Csv),
            "jsonl" | "ndjson" => Some(Format::Jsonl),
            _ => None,
        }
    }
}

pub trait Sink: Send {
    fn write(&mut self, rows: &[Verdict]) -> Result<(), SinkError>;
    /// Called when no rows have arrived for a while, so that a sink with a time-based duty
    /// (finalizing a part after some seconds) can do it even when input pauses.
    fn tick(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
    /// Flushes, closes and renames the file into place; returns its final path (`None` for a
    /// sink that writes no file).
    fn finish(self: Box<Self>) -> Result<Option<PathBuf>, SinkError>;
}

pub fn create(format: Format, path: &Path, table: Table) -> Result<Box<dyn Sink>, SinkError> {
    Ok(Box::new(FileSink::create(format, path, table)?))
}

/// What differs between the formats: how a batch of rows is encoded into the open output, and
/// how it is closed (footers, flushes). Errors are text; [`FileSink`] adds the path.
pub trait Encoder<W>: Send {
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), String>;
    fn close(self: Box<Self>) -> Result<W, String>;
}

pub fn encoder<W: Write + Send + 'static>(
    format: Format,
    out: W,
    table: &Table,
) -> Result<Box<dyn Encoder<W>>, String> {
    match format {
        Format::Parquet => parquet::encoder(out, table.schema(), table.metadata()),
        Format::Csv => Ok(csv::encoder(out)),
        Format::Jsonl => Ok(jsonl::encoder(out)),
    }
}

/// A whole set of rows as one in-memory file, for answers that never touch the disk.
pub fn encode_to_vec(format: Format, table: &Table, rows: &[Verdict]) -> Result<Vec<u8>, String> {
    let batch = table.to_record_batch(rows).map_err(|e| e.to_string())?;
    let mut encoder = encoder(format, Vec::new(), table)?;
    encoder.encode(&batch)?;
    encoder.close()
}

/// One output file in any format, written under a temporary name and renamed when finished.
/// Dropped unfinished (an error, an interrupted run), it removes the temporary file.
pub struct FileSink {
    // Declared first so that it is dropped, and its file closed, before `pending` removes it.
    encoder: Box<dyn Encoder<BufWriter<Trap<File>>>>,
    pending: PendingFile,
    table: Table,
    io_error: Slot,
}

impl FileSink {
    pub fn create(format: Format, path: &Path, table: Table) -> Result<Self, SinkError> {
        let (pending, file) = PendingFile::create(path)?;
        let io_error = Slot::default();
        // Nothing is buffered yet, so taking the file out of its buffer loses nothing.
        let out = BufWriter::new(Trap {
            inner: file.into_parts().0,
            slot: io_error.clone(),
        });
        let encoder = encoder(format, out, &table).map_err(|e| failure(&io_error, &pending, e))?;
        Ok(FileSink {
            encoder,
            pending,
            table,
            io_error,
        })
    }

    /// Closes the file and renames it into place; returns its final path.
    pub fn close(self) -> Result<PathBuf, SinkError> {
        let FileSink {
            encoder,
            pending,
            io_error,
            ..
        } = self;
        let file = encoder
            .close()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error().to_string()))
            .map_err(|e| failure(&io_error, &pending, e))?;
        pending.commit(file.inner)
    }
}

/// The error to report: the file system's own when a write failed (a full disk), however the
/// encoder worded it, else the encoder's.
fn failure(io_error: &Slot, pending: &PendingFile, reason: impl ToString) -> SinkError {
    match io_error.lock().ok().and_then(|mut e| e.take()) {
        Some(source) => SinkError::Io {
            path: pending.target.clone(),
            source,
        },
        None => pending.encode_error(reason),
    }
}

impl Sink for FileSink {
    fn write(&mut self, rows: &[Verdict]) -> Result<(), SinkError> {
        let batch = self
            .table
            .to_record_batch(rows)
            .map_err(|e| failure(&self.io_error, &self.pending, e))?;
        self.encoder
            .encode(&batch)
            .map_err(|e| failure(&self.io_error, &self.pending, e))
    }

    fn finish(self: Box<Self>) -> Result<Option<PathBuf>, SinkError> {
        self.close().map(Some)
    }
}

/// The first I/O error met by a [`Trap`].
type Slot = std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>;

/// A writer that keeps the first error it returns, because encoders pass it on only as text.
pub struct Trap<W> {
    inner: W,
    slot: Slot,
}

impl<W> Trap<W> {
    fn keep<T>(&self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.inspect_err(|e| {
            if let Ok(mut slot) = self.slot.lock() {
                slot.get_or_insert_with(|| std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

impl<W: Write> Write for Trap<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.keep(r)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.keep(r)
    }
}

/// A sink that keeps nothing, for runs that only need the rows as they pass (`eval` and
/// `calibrate` without `--out`).
pub struct Discard;

impl Sink for Discard {
    fn write(&mut self, _rows: &[Verdict]) -> Result<(), SinkError> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Option<PathBuf>, SinkError> {
        Ok(None)
    }
}

/// A file being written under a temporary name in the target's folder (so the rename is atomic).
/// Dropped before [`PendingFile::commit`] succeeds, it removes the temporary file, so that a
/// failed write (a full disk above all) does not leave a hidden file filling the disk.
pub struct PendingFile {
    pub tmp: PathBuf,
    pub target: PathBuf,
    committed: bool,
}

impl PendingFile {
    pub fn create(target: &Path) -> Result<(Self, BufWriter<File>), SinkError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "verdicts".into());
        let tmp = target.with_file_name(format!(".{name}.{}.partial", std::process::id()));
        // Errors name the target, the path the user gave; the temporary name is ours.
        let io = |source| SinkError::Io {
            path: target.to_path_buf(),
            source,
        };
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| match e.kind() {
                // What mkdir says of a file in the folder's place ("File exists") misleads.
                std::io::ErrorKind::AlreadyExists => io(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is a file, not a folder", dir.display()),
                )),
                _ => io(e),
            })?;
        }
        let file = File::create(&tmp).map_err(io)?;
        Ok((
            PendingFile {
                tmp,
                target: target.to_path_buf(),
                committed: false,
            },
            BufWriter::new(file),
        ))
    }

    /// Syncs the closed file and renames it over the target.
    pub fn commit(mut self, file: File) -> Result<PathBuf, SinkError> {
        let io = |source| SinkError::Io {
            path: self.target.clone(),
            source,
        };
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(io)?;
        self.committed = true;
        Ok(self.target.clone())
    }

    pub fn encode_error(&self, reason: impl ToString) -> SinkError {
        SinkError::Encode {
            path: self.target.clone(),
            reason: reason.to_string(),
        }
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        match std::fs::remove_file(&self.tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot remove {}: {e}", self.tmp.display()),
        }
    }
}

/// Refuses an output path that cannot be written, before any work: the folder is made if
/// missing, as the sink would, and a temporary file is created there and removed.
pub fn check_writable(target: &Path) -> Result<(), SinkError> {
    if target.is_dir() {
        return Err(SinkError::Io {
            path: target.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a folder"),
        });
    }
    PendingFile::create(target).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{FileMeta, ModelColumn};

    fn table() -> Table {
        Table::new(vec![ModelColumn::for_tests("m", 0.5)])
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn an_unfinished_file_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        for format in Format::ALL {
            let target = dir.path().join(format!("v.{}", format.extension()));
            let mut sink = create(format, &target, table()).unwrap();
            let row = Verdict::scored(FileMeta::new("a.png".into()), vec![0.5]);
            sink.write(&[row]).unwrap();
            assert_eq!(files(dir.path()).len(), 1, "{format:?}: the temporary file");
            // Dropped without finishing, as when a write fails or the run stops.
            drop(sink);
            assert!(files(dir.path()).is_empty(), "{format:?}");
        }
        let target = dir.path().join("v.csv");
        create(Format::Csv, &target, table())
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(files(dir.path()), vec!["v.csv".to_string()]);
    }

    #[test]
    fn an_unwritable_target_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").unwrap();
        let target = file.join("v.parquet");
        let e = check_writable(&target).unwrap_err().to_string();
        assert!(e.contains(&*target.to_string_lossy()), "{e}");
        assert!(e.contains("is a file, not a folder"), "{e}");
        let e = check_writable(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is a folder"), "{e}");
        check_writable(&dir.path().join("sub/v.parquet")).unwrap();
        assert_eq!(files(&dir.path().join("sub")), Vec::<String>::new());
    }
}
