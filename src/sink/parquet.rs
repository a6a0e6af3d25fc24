//! Parquet (zstd) with bounded row groups, flushed as rows arrive.

use std::fs::File;
use std::io::BufWriter;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::Encoder;

/// Rows per row group: small enough that memory stays bounded and a long scan's file grows as
/// it goes, large enough for good compression of the repetitive columns.
pub const ROW_GROUP_ROWS: usize = 4096;

pub fn encoder(file: BufWriter<File>, schema: SchemaRef) -> Result<Box<dyn Encoder>, String> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| e.to_string())?;
    Ok(Box::new(writer))
}

impl Encoder for ArrowWriter<BufWriter<File>> {
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.write(batch).map_err(|e| e.to_string())
    }

    fn close(self: Box<Self>) -> Result<File, String> {
        self.into_inner()
            .map_err(|e| e.to_string())?
            .into_inner()
            .map_err(|e| e.into_error().to_string())
    }
}
