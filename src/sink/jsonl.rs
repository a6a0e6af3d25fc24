//! JSON Lines: one object per verdict, nulls omitted.

use std::io::Write;

use arrow::json::LineDelimitedWriter;
use arrow::record_batch::RecordBatch;

use super::Encoder;

pub fn encoder<W: Write + Send + 'static>(out: W) -> Box<dyn Encoder<W>> {
    Box::new(LineDelimitedWriter::new(out))
}

impl<W: Write + Send> Encoder<W> for LineDelimitedWriter<W> {
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.write(batch).map_err(|e| e.to_string())
    }

    fn close(mut self: Box<Self>) -> Result<W, String> {
        self.finish().map_err(|e| e.to_string())?;
        Ok(self.into_inner())
    }
}
