//! CSV with a header row; timestamps as RFC 3339.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::csv::{Writer, WriterBuilder};

use super::{PendingFile, Sink, SinkError};
use crate::verdict::{Table, Verdict};

pub struct CsvSink {
    pending: PendingFile,
    writer: Writer<BufWriter<File>>,
    table: Table,
}

impl CsvSink {
    pub fn create(path: &Path, table: Table) -> Result<Self, SinkError> {
        let (pending, file) = PendingFile::create(path)?;
        let writer = WriterBuilder::new().with_header(true).build(file);
        Ok(CsvSink {
            pending,
            writer,
            table,
        })
    }
}

impl Sink for CsvSink {
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
        let CsvSink {
            pending, writer, ..
        } = *self;
        let file = writer
            .into_inner()
            .into_inner()
            .map_err(|e| pending.io_error(e.into_error()))?;
        pending.commit(file)
    }
}
