//! CSV with a header row; timestamps as RFC 3339. Text cells that a spreadsheet would run as a
//! formula are neutralized (see [`neutralize`]); Parquet and JSON keep the exact text.

use std::borrow::Cow;
use std::io::Write;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::csv::{Writer, WriterBuilder};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use super::Encoder;

pub fn encoder<W: Write + Send + 'static>(out: W) -> Box<dyn Encoder<W>> {
    Box::new(WriterBuilder::new().with_header(true).build(out))
}

impl<W: Write + Send> Encoder<W> for Writer<W> {
    fn encode(&mut self, batch: &RecordBatch) -> Result<(), String> {
        self.write(&neutralize_batch(batch).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())
    }

    fn close(self: Box<Self>) -> Result<W, String> {
        Ok(self.into_inner())
    }
}

/// A cell as it is safe to open in a spreadsheet. File names come from whoever made the files
/// (or uploaded them), and Excel, LibreOffice and Sheets run a cell starting with `=`, `+`, `-`
/// or `@` (or a tab or CR before one) as a formula: `=HYPERLINK(...)` would become a live link.
/// As OWASP recommends, such a cell gets a leading `'`, which the spreadsheet shows as text.
pub fn neutralize(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// The batch with every text column passed through [`neutralize`]; other columns untouched
/// (a negative number is not a formula).
fn neutralize_batch(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Utf8 => {
                let text = column
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("a Utf8 column is a StringArray");
                if text
                    .iter()
                    .flatten()
                    .any(|s| matches!(neutralize(s), Cow::Owned(_)))
                {
                    let safe: StringArray = text.iter().map(|s| s.map(neutralize)).collect();
                    Arc::new(safe) as ArrayRef
                } else {
                    column.clone()
                }
            }
            _ => column.clone(),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::{Field, Schema};

    #[test]
    fn formula_cells_get_a_quote_and_the_rest_is_untouched() {
        for (cell, want) in [
            (
                "=HYPERLINK(\"http://x\",\"y\")",
                "'=HYPERLINK(\"http://x\",\"y\")",
            ),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("photo.jpg", "photo.jpg"),
            ("a=b.png", "a=b.png"),
            ("", ""),
        ] {
            assert_eq!(neutralize(cell), want, "{cell:?}");
        }
    }

    #[test]
    fn the_csv_encoder_neutralizes_text_columns_only() {
        let schema = Schema::new(vec![
            Field::new("path", DataType::Utf8, true),
            Field::new("n", DataType::Int32, false),
        ]);
        let batch = RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec![Some("=cmd|' /C calc'!A0"), None])),
                Arc::new(Int32Array::from(vec![-5, 7])),
            ],
        )
        .unwrap();
        let mut encoder = encoder(Vec::new());
        encoder.encode(&batch).unwrap();
        let csv = String::from_utf8(encoder.close().unwrap()).unwrap();
        assert_eq!(csv, "path,n\n'=cmd|' /C calc'!A0,-5\n,7\n");
    }
}
