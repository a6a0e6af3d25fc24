//! CSV with a header row; timestamps as RFC 3339.

use std::io::Write;

use arrow::csv::{Writer, WriterBuilder};
use arrow::record_batch::RecordBatch;

use super::Encoder;

pub fn encoder<W: Write + Send + 'static>(out: W) -> Box<dyn Encoder<W>> {
    Box::new(WriterBuilder::new().with_header(true).build(out))
}

impl<W: Write + Send> Encoder<W> for Writer<W> {
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.write(batch).map_err(|e| e.to_string())
    }

    fn close(self: Box<Self>) -> Result<W, String> {
        Ok(self.into_inner())
    }
}
