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
pub struct FileSink {
    pending: PendingFile,
    encoder: Box<dyn Encoder<BufWriter<File>>>,
    table: Table,
}

impl FileSink {
    pub fn create(format: Format, path: &Path, table: Table) -> Result<Self, SinkError> {
        let (pending, file) = PendingFile::create(path)?;
        let encoder = encoder(format, file, &table).map_err(|e| pending.encode_error(e))?;
        Ok(FileSink {
            pending,
            encoder,
            table,
        })
    }
}

impl FileSink {
    /// Closes the file and renames it into place; returns its final path.
    pub fn close(self) -> Result<PathBuf, SinkError> {
        let FileSink {
            pending, encoder, ..
        } = self;
        let file = encoder
            .close()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error().to_string()))
            .map_err(|e| pending.encode_error(e))?;
        pending.commit(file)
    }
}

impl Sink for FileSink {
    fn write(&mut self, rows: &[Verdict]) -> Result<(), SinkError> {
        let batch = self
            .table
            .to_record_batch(rows)
            .map_err(|e| self.pending.encode_error(e))?;
        self.encoder
            .encode(&batch)
            .map_err(|e| self.pending.encode_error(e))
    }

    fn finish(self: Box<Self>) -> Result<Option<PathBuf>, SinkError> {
        self.close().map(Some)
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
pub struct PendingFile {
    pub tmp: PathBuf,
    pub target: PathBuf,
}

impl PendingFile {
    pub fn create(target: &Path) -> Result<(Self, BufWriter<File>), SinkError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "verdicts".into());
        let tmp = target.with_file_name(format!(".{name}.{}.partial", std::process::id()));
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SinkError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = File::create(&tmp).map_err(|source| SinkError::Io {
            path: tmp.clone(),
            source,
        })?;
        Ok((
            PendingFile {
                tmp,
                target: target.to_path_buf(),
            },
            BufWriter::new(file),
        ))
    }

    /// Syncs the closed file and renames it over the target.
    pub fn commit(self, file: File) -> Result<PathBuf, SinkError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SinkError::Io { path, source }
        };
        file.sync_all().map_err(io(&self.tmp))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(io(&self.target))?;
        Ok(self.target)
    }

    pub fn encode_error(&self, reason: impl ToString) -> SinkError {
        SinkError::Encode {
            path: self.target.clone(),
            reason: reason.to_string(),
        }
    }
}
