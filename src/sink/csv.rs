//! CSV with a header row; timestamps as RFC 3339.

use std::fs::File;
use std::io::BufWriter;

use arrow::csv::{Writer, WriterBuilder};
use arrow::record_batch::RecordBatch;

use super::Encoder;

pub fn encoder(file: BufWriter<File>) -> Box<dyn Encoder> {
    Box::new(WriterBuilder::new().with_header(true).build(file))
}

impl Encoder for Writer<BufWriter<File>> {
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.write(batch).map_err(|e| e.to_string())
    }

    fn close(self: Box<Self>) -> Result<File, String> {
        self.into_inner()
            .into_inner()
            .map_err(|e| e.into_error().to_string())
    }
}
