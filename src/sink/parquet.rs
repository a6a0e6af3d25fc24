//! Parquet (zstd) with bounded row groups, flushed as rows arrive.

use std::io::Write;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use super::Encoder;

/// Rows per row group: small enough that memory stays bounded and a long scan's file grows as
/// it goes, large enough for good compression of the repetitive columns.
pub const ROW_GROUP_ROWS: usize = 4096;

pub fn encoder<W: Write + Send + 'static>(
    out: W,
    schema: SchemaRef,
    metadata: &[(String, String)],
) -> Result<Box<dyn Encoder<W>>, String> {
    let key_values = metadata
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect::<Vec<_>>();
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata((!key_values.is_empty()).then_some(key_values))
        .build();
    let writer = ArrowWriter::try_new(out, schema, Some(props)).map_err(|e| e.to_string())?;
    Ok(Box::new(writer))
}

impl<W: Write + Send> Encoder<W> for ArrowWriter<W> {
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.write(batch).map_err(|e| e.to_string())
    }

    fn close(self: Box<Self>) -> Result<W, String> {
        self.into_inner().map_err(|e| e.to_string())
    }
}
