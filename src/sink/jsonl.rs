//! JSON Lines: one object per verdict, nulls omitted.

use std::fs::File;
use std::io::BufWriter;

use arrow::json::LineDelimitedWriter;
use arrow::record_batch::RecordBatch;

use super::Encoder;

pub fn encoder(file: BufWriter<File>) -> Box<dyn Encoder> {
    Box::new(LineDelimitedWriter::new(file))
}

impl Encoder for LineDelimitedWriter<BufWriter<File>> {
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.write(batch).map_err(|e| e.to_string())
    }

    fn close(mut self: Box<Self>) -> Result<File, String> {
        self.finish().map_err(|e| e.to_string())?;
        self.into_inner()
            .into_inner()
            .map_err(|e| e.into_error().to_string())
    }
}
