//! JSON Lines: one object per verdict, nulls omitted.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow::json::LineDelimitedWriter;

use super::{PendingFile, Sink, SinkError};
use crate::verdict::{Table, Verdict};

pub struct JsonlSink {
    pending: PendingFile,
    writer: LineDelimitedWriter<BufWriter<File>>,
    table: Table,
}

impl JsonlSink {
    pub fn create(path: &Path, table: Table) -> Result<Self, SinkError> {
        let (pending, file) = PendingFile::create(path)?;
        Ok(JsonlSink {
            pending,
            writer: LineDelimitedWriter::new(file),
            table,
        })
    }
}

impl Sink for JsonlSink {
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
        let JsonlSink {
            pending,
            mut writer,
            ..
        } = *self;
        writer.finish().map_err(|e| pending.encode_error(e))?;
        let file = writer
            .into_inner()
            .into_inner()
            .map_err(|e| pending.io_error(e.into_error()))?;
        pending.commit(file)
    }
}
