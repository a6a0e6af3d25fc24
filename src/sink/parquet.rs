//! Parquet (zstd) with bounded row groups, flushed as rows arrive.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{PendingFile, Sink, SinkError};
use crate::verdict::{Table, Verdict};

/// Rows per row group: small enough that memory stays bounded and a long scan's file grows as
/// it goes, large enough for good compression of the repetitive columns.
pub const ROW_GROUP_ROWS: usize = 4096;

pub struct ParquetSink {
    pending: PendingFile,
    writer: ArrowWriter<BufWriter<File>>,
    table: Table,
}

impl ParquetSink {
    pub fn create(path: &Path, table: Table) -> Result<Self, SinkError> {
        let (pending, file) = PendingFile::create(path)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer = ArrowWriter::try_new(file, table.schema(), Some(props))
            .map_err(|e| pending.encode_error(e))?;
        Ok(ParquetSink {
            pending,
            writer,
            table,
        })
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, rows: &[Verdict]) -> Result<(), SinkError> {
        let batch = self
            .table
            .to_record_batch(rows)
            .map_err(|e| self.pending.encode_error(e))?;
        self.writer
            .write(&batch)
            .map_err(|e| self.pending.encode_error(e))
    }

    fn finish(self: Box<Self>) -> Result<PathBuf, SinkError> {
        let ParquetSink {
            pending, writer, ..
        } = *self;
        let file = writer
            .into_inner()
            .map_err(|e| pending.encode_error(e))?
            .into_inner()
            .map_err(|e| pending.io_error(e.into_error()))?;
        pending.commit(file)
    }
}
