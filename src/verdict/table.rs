//! The columns of a verdict dataset and the encoder that fills them. One list, [`FIXED_BEFORE`],
//! the models' own columns, then [`FIXED_AFTER`], names each column with its type and the way a
//! row fills it; the Arrow schema and the encoder both walk that list, so the two cannot drift.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, StringBuilder,
    TimestampMillisecondBuilder, UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::label::{self, Basis, Label};
use super::{ModelColumn, Verdict};
use crate::provenance::Provenance;

/// The names of the columns that readers of a verdict dataset look up (the watch ledger,
/// `report`, the API's model list), so that they are spelled in one place.
pub mod column {
    pub const PATH: &str = "path";
    pub const SIZE_BYTES: &str = "size_bytes";
    pub const MODIFIED: &str = "modified";
    pub const BLAKE3: &str = "blake3";
    pub const FORMAT: &str = "format";
    pub const WIDTH: &str = "width";
    pub const HEIGHT: &str = "height";
    pub const JPEG_QUALITY: &str = "jpeg_quality";
    pub const SCORE: &str = "score";
    pub const LABEL: &str = "label";
    pub const BASIS: &str = "basis";
    pub const PROVENANCE: &str = "provenance";
    pub const PROVENANCE_GENERATOR: &str = "provenance_generator";
    pub const PROVENANCE_AI: &str = "provenance_ai";
    pub const C2PA_STATE: &str = "c2pa_state";
    pub const PROVENANCE_ERROR: &str = "provenance_error";
    pub const STATUS: &str = "status";
    pub const ERROR: &str = "error";
    pub const MODELS: &str = "models";
    pub const PRECISION: &str = "precision";
    pub const SCANNED_AT: &str = "scanned_at";
    pub const PATH_BYTES: &str = "path_bytes";
    /// Before a model's column stem: its score column.
    pub const SCORE_PREFIX: &str = "score_";
    /// Before a model's column stem: its label column.
    pub const LABEL_PREFIX: &str = "label_";
}

/// The Arrow types the columns use.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    U64,
    U32,
    U8,
    F32,
    Bool,
    /// Milliseconds since the epoch, UTC.
    Time,
    Bytes,
}

impl Kind {
    fn data_type(self) -> DataType {
        match self {
            Kind::Text => DataType::Utf8,
            Kind::U64 => DataType::UInt64,
            Kind::U32 => DataType::UInt32,
            Kind::U8 => DataType::UInt8,
            Kind::F32 => DataType::Float32,
            Kind::Bool => DataType::Boolean,
            Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            Kind::Bytes => DataType::Binary,
        }
    }

    fn builder(self, rows: usize) -> Builder {
        match self {
            Kind::Text => Builder::Text(StringBuilder::with_capacity(rows, rows * 16)),
            Kind::U64 => Builder::U64(UInt64Builder::with_capacity(rows)),
            Kind::U32 => Builder::U32(UInt32Builder::with_capacity(rows)),
            Kind::U8 => Builder::U8(UInt8Builder::with_capacity(rows)),
            Kind::F32 => Builder::F32(Float32Builder::with_capacity(rows)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Time => Builder::Time(
                TimestampMillisecondBuilder::with_capacity(rows).with_timezone("+00:00"),
            ),
            Kind::Bytes => Builder::Bytes(BinaryBuilder::new()),
        }
    }
}

/// One row's value in one column.
enum Cell<'a> {
    Text(Option<&'a str>),
    Owned(Option<String>),
    U64(Option<u64>),
    U32(Option<u32>),
    U8(Option<u8>),
    F32(Option<f32>),
    Bool(Option<bool>),
    Time(Option<i64>),
    Bytes(Option<&'a [u8]>),
}

enum Builder {
    Text(StringBuilder),
    U64(UInt64Builder),
    U32(UInt32Builder),
    U8(UInt8Builder),
    F32(Float32Builder),
    Bool(BooleanBuilder),
    Time(TimestampMillisecondBuilder),
    Bytes(BinaryBuilder),
}

impl Builder {
    fn append(&mut self, cell: Cell) {
        match (self, cell) {
            (Builder::Text(b), Cell::Text(v)) => b.append_option(v),
            (Builder::Text(b), Cell::Owned(v)) => b.append_option(v),
            (Builder::U64(b), Cell::U64(v)) => b.append_option(v),
            (Builder::U32(b), Cell::U32(v)) => b.append_option(v),
            (Builder::U8(b), Cell::U8(v)) => b.append_option(v),
            (Builder::F32(b), Cell::F32(v)) => b.append_option(v),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_option(v),
            (Builder::Time(b), Cell::Time(v)) => b.append_option(v),
            (Builder::Bytes(b), Cell::Bytes(v)) => b.append_option(v),
            // The lists below pair each kind with its cell; a test encodes every column.
            _ => unreachable!("a column's cell does not match its kind"),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Text(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
            Builder::Bytes(b) => Arc::new(b.finish()),
        }
    }
}

/// What a fixed column reads from: the row, and what the table decided about it once.
struct Row<'a> {
    v: &'a Verdict,
    score: Option<f32>,
    decided: Option<(Label, Basis)>,
    models: &'a str,
    precision: &'a str,
}

impl<'a> Row<'a> {
    fn provenance(&self) -> Option<&'a Provenance> {
        self.v.meta.provenance.as_ref()
    }
}

/// A column every dataset has, whatever its models.
struct Fixed {
    name: &'static str,
    kind: Kind,
    nullable: bool,
    fill: for<'a> fn(&Row<'a>) -> Cell<'a>,
}

const fn fixed(
    name: &'static str,
    kind: Kind,
    nullable: bool,
    fill: for<'a> fn(&Row<'a>) -> Cell<'a>,
) -> Fixed {
    Fixed {
        name,
        kind,
        nullable,
        fill,
    }
}

/// The file's columns, before the models'.
const FIXED_BEFORE: [Fixed; 8] = [
    fixed(column::PATH, Kind::Text, false, |r| {
        Cell::Text(Some(&r.v.meta.path))
    }),
    fixed(column::SIZE_BYTES, Kind::U64, true, |r| {
        Cell::U64(r.v.meta.size_bytes)
    }),
    fixed(column::MODIFIED, Kind::Time, true, |r| {
        Cell::Time(r.v.meta.modified_ms)
    }),
    fixed(column::BLAKE3, Kind::Text, true, |r| {
        Cell::Text(r.v.meta.blake3.as_deref())
    }),
    fixed(column::FORMAT, Kind::Text, true, |r| {
        Cell::Text(r.v.meta.format)
    }),
    fixed(column::WIDTH, Kind::U32, true, |r| {
        Cell::U32(r.v.meta.width)
    }),
    fixed(column::HEIGHT, Kind::U32, true, |r| {
        Cell::U32(r.v.meta.height)
    }),
    fixed(column::JPEG_QUALITY, Kind::U8, true, |r| {
        Cell::U8(r.v.meta.jpeg_quality)
    }),
];

/// The verdict, provenance and run columns, after the models'.
const FIXED_AFTER: [Fixed; 14] = [
    fixed(column::SCORE, Kind::F32, true, |r| Cell::F32(r.score)),
    fixed(column::LABEL, Kind::Text, true, |r| {
        Cell::Text(r.decided.map(|(l, _)| l.as_str()))
    }),
    fixed(column::BASIS, Kind::Text, true, |r| {
        Cell::Text(r.decided.map(|(_, b)| b.as_str()))
    }),
    fixed(column::PROVENANCE, Kind::Text, true, |r| {
        Cell::Text(
            r.provenance()
                .and_then(Provenance::kind)
                .map(|k| k.as_str()),
        )
    }),
    fixed(column::PROVENANCE_GENERATOR, Kind::Text, true, |r| {
        Cell::Text(r.provenance().and_then(Provenance::generator))
    }),
    fixed(column::PROVENANCE_AI, Kind::Bool, true, |r| {
        Cell::Bool(r.provenance().map(Provenance::ai))
    }),
    fixed(column::C2PA_STATE, Kind::Text, true, |r| {
        Cell::Owned(
            r.provenance()
                .and_then(|p| p.c2pa_state.as_ref())
                .map(|s| s.to_string()),
        )
    }),
    fixed(column::PROVENANCE_ERROR, Kind::Text, true, |r| {
        Cell::Owned(r.provenance().and_then(Provenance::problems_text))
    }),
    fixed(column::STATUS, Kind::Text, false, |r| {
        Cell::Text(Some(r.v.status.as_str()))
    }),
    fixed(column::ERROR, Kind::Text, true, |r| {
        Cell::Text(r.v.error.as_deref())
    }),
    fixed(column::MODELS, Kind::Text, false, |r| {
        Cell::Text(Some(r.models))
    }),
    fixed(column::PRECISION, Kind::Text, false, |r| {
        Cell::Text(Some(r.precision))
    }),
    fixed(column::SCANNED_AT, Kind::Time, false, |r| {
        Cell::Time(Some(r.v.scanned_at_ms))
    }),
    // Last, so that the columns before it keep their places for positional readers.
    fixed(column::PATH_BYTES, Kind::Bytes, true, |r| {
        Cell::Bytes(r.v.meta.path_bytes.as_deref())
    }),
];

/// The columns of a verdict dataset for a given set of models.
#[derive(Debug, Clone)]
pub struct Table {
    models: Vec<ModelColumn>,
    schema: SchemaRef,
    /// Key-value pairs describing the run, for formats that carry them (Parquet); see
    /// [`crate::pipeline::run_metadata`].
    metadata: Vec<(String, String)>,
}

impl Table {
    pub fn new(models: Vec<ModelColumn>) -> Self {
        let field = |f: &Fixed| Field::new(f.name, f.kind.data_type(), f.nullable);
        let mut fields: Vec<Field> = FIXED_BEFORE.iter().map(field).collect();
        for m in &models {
            fields.push(Field::new(m.score_column(), Kind::F32.data_type(), true));
            fields.push(Field::new(m.label_column(), Kind::Text.data_type(), true));
        }
        fields.extend(FIXED_AFTER.iter().map(field));
        Table {
            models,
            schema: Arc::new(Schema::new(fields)),
            metadata: Vec::new(),
        }
    }

    pub fn with_metadata(mut self, metadata: Vec<(String, String)>) -> Self {
        self.metadata = metadata;
        self
    }

    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    pub fn models(&self) -> &[ModelColumn] {
        &self.models
    }

    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The combined score: the mean of the models' scores. With one model it is that model's.
    pub fn combined_score(&self, v: &Verdict) -> Option<f32> {
        let scores: Option<Vec<f32>> = v.scores.iter().copied().collect();
        let scores = scores.filter(|s| !s.is_empty() && s.len() == self.models.len())?;
        Some(scores.iter().sum::<f32>() / scores.len() as f32)
    }

    /// The combined threshold: the mean of the models' thresholds, to match [`Self::combined_score`].
    pub fn combined_threshold(&self) -> f32 {
        if self.models.is_empty() {
            return 0.5;
        }
        self.models.iter().map(|m| m.threshold).sum::<f32>() / self.models.len() as f32
    }

    /// The final label and what it rests on: the models' combined verdict, unless the file
    /// declares AI generation (see [`label`]).
    pub fn final_label(&self, v: &Verdict) -> Option<(Label, Basis)> {
        let model = self
            .combined_score(v)
            .map(|s| Label::of_score(s, self.combined_threshold()));
        label::final_label(model, v.meta.provenance.as_ref())
    }

    pub fn models_text(&self) -> String {
        self.models
            .iter()
            .map(|m| format!("{}@{}", m.name, m.version))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn precision_text(&self) -> String {
        let mut p: Vec<&str> = self.models.iter().map(|m| m.precision.as_str()).collect();
        p.dedup();
        p.join(",")
    }

    /// The rows as one Arrow batch of [`Self::schema`], column by column in the schema's order.
    pub fn to_record_batch(&self, rows: &[Verdict]) -> Result<RecordBatch, ArrowError> {
        let n = rows.len();
        let mut before: Vec<Builder> = FIXED_BEFORE.iter().map(|f| f.kind.builder(n)).collect();
        let mut models: Vec<(Builder, Builder)> = self
            .models
            .iter()
            .map(|_| (Kind::F32.builder(n), Kind::Text.builder(n)))
            .collect();
        let mut after: Vec<Builder> = FIXED_AFTER.iter().map(|f| f.kind.builder(n)).collect();

        let (models_text, precision_text) = (self.models_text(), self.precision_text());
        for v in rows {
            let row = Row {
                v,
                score: self.combined_score(v),
                decided: self.final_label(v),
                models: &models_text,
                precision: &precision_text,
            };
            for (b, f) in before.iter_mut().zip(&FIXED_BEFORE) {
                b.append((f.fill)(&row));
            }
            for (i, (model, (score, label))) in self.models.iter().zip(&mut models).enumerate() {
                let s = v.scores.get(i).copied().flatten();
                score.append(Cell::F32(s));
                label.append(Cell::Text(
                    s.map(|s| Label::of_score(s, model.threshold).as_str()),
                ));
            }
            for (b, f) in after.iter_mut().zip(&FIXED_AFTER) {
                b.append((f.fill)(&row));
            }
        }

        let mut columns: Vec<ArrayRef> = before.iter_mut().map(Builder::finish).collect();
        for (score, label) in &mut models {
            columns.push(score.finish());
            columns.push(label.finish());
        }
        columns.extend(after.iter_mut().map(Builder::finish));
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::{Declaration, Kind as Declared};
    use crate::verdict::{FileMeta, Status};
    use arrow::array::{Array, AsArray};

    #[test]
    fn the_columns_keep_their_order_and_every_one_encodes() {
        let table = Table::new(vec![ModelColumn::for_tests("a", 0.5)]);
        let names: Vec<String> = table
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        // Readers that go by position (CSV consumers) rely on this order.
        assert_eq!(
            names,
            [
                "path",
                "size_bytes",
                "modified",
                "blake3",
                "format",
                "width",
                "height",
                "jpeg_quality",
                "score_a",
                "label_a",
                "score",
                "label",
                "basis",
                "provenance",
                "provenance_generator",
                "provenance_ai",
                "c2pa_state",
                "provenance_error",
                "status",
                "error",
                "models",
                "precision",
                "scanned_at",
                "path_bytes",
            ]
        );
        let full = FileMeta {
            size_bytes: Some(10),
            modified_ms: Some(1),
            blake3: Some("h".into()),
            format: Some("png"),
            width: Some(2),
            height: Some(3),
            jpeg_quality: Some(90),
            path_bytes: Some(b"x\xff".to_vec()),
            provenance: Some(Provenance {
                declaration: Some(Declaration {
                    kind: Declared::Iptc,
                    generator: Some("gen".into()),
                    ai: true,
                }),
                problems: vec!["odd".into()],
                ..Provenance::default()
            }),
            ..FileMeta::new("x".into())
        };
        let rows = [
            Verdict::scored(full, vec![0.2]),
            Verdict::failed(FileMeta::new("y".into()), Status::IoError, "gone"),
        ];
        let batch = table.to_record_batch(&rows).unwrap();
        for (field, col) in table.schema().fields().iter().zip(batch.columns()) {
            let nulls_in_full_row = usize::from(col.is_null(0));
            let expected =
                usize::from([column::C2PA_STATE, column::ERROR].contains(&field.name().as_str()));
            assert_eq!(nulls_in_full_row, expected, "{}", field.name());
        }
        // The declaration makes the label fake although the score is low.
        let label = batch.column_by_name(column::LABEL).unwrap();
        assert_eq!(label.as_string::<i32>().value(0), "fake");
    }
}
