//! The verdict row: the one contract that every sink and every reader shares.
//!
//! A [`Verdict`] holds what the pipeline learned about one candidate file. Labels are not stored
//! in it: they follow from the scores and the thresholds, which [`Table`] knows, so that a row is
//! turned into columns the same way by every sink.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, StringBuilder, TimestampMillisecondBuilder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::provenance::policy::{self, Basis};
use crate::provenance::Provenance;

/// What happened to a file. Every candidate ends with exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Decoded and scored by every model.
    Ok,
    /// The bytes are an image format we know, but the decoder failed (corrupt, truncated).
    DecodeError,
    /// Not an image format we can decode (unknown magic bytes, or an empty file).
    Unsupported,
    /// Over a size limit (file bytes, pixel count or decoder allocation); refused before decoding.
    TooLarge,
    /// The file could not be read (permissions, broken symlink, symlink loop, vanished).
    IoError,
    /// The path is not a regular file (a directory or device with an image name).
    NotAFile,
    /// Decoded, but the model failed on the batch holding it.
    InferenceError,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Ok,
        Status::DecodeError,
        Status::Unsupported,
        Status::TooLarge,
        Status::IoError,
        Status::NotAFile,
        Status::InferenceError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::DecodeError => "decode_error",
            Status::Unsupported => "unsupported",
            Status::TooLarge => "too_large",
            Status::IoError => "io_error",
            Status::NotAFile => "not_a_file",
            Status::InferenceError => "inference_error",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Facts about the file itself, filled in as far as the pipeline got.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileMeta {
    /// The path as given by the source; lossy UTF-8 for names that are not valid UTF-8.
    pub path: String,
    pub size_bytes: Option<u64>,
    /// Modification time, milliseconds since the Unix epoch.
    pub modified_ms: Option<i64>,
    /// BLAKE3 of the file's bytes, hex.
    pub blake3: Option<String>,
    /// Format detected from the content, not the extension.
    pub format: Option<&'static str>,
    /// Size after EXIF orientation.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// Encoder quality estimated from the JPEG quantization tables (JPEG only).
    pub jpeg_quality: Option<u8>,
    /// What the file declares about its making; `None` when it was not read (the file could
    /// not be read, or provenance is off).
    pub provenance: Option<Provenance>,
    /// For in-memory uploads: routes the row back to the request that sent the file. Not a
    /// column.
    pub ticket: Option<u64>,
}

impl FileMeta {
    pub fn new(path: String) -> Self {
        FileMeta {
            path,
            ..FileMeta::default()
        }
    }
}

/// One row of output.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub meta: FileMeta,
    /// Probability of AI-generated, one per model in [`Table`] order; `None` unless `status` is ok.
    pub scores: Vec<Option<f32>>,
    pub status: Status,
    pub error: Option<String>,
    pub scanned_at_ms: i64,
}

impl Verdict {
    pub fn scored(meta: FileMeta, scores: Vec<f32>) -> Self {
        Verdict {
            meta,
            scores: scores.into_iter().map(Some).collect(),
            status: Status::Ok,
            error: None,
            scanned_at_ms: now_ms(),
        }
    }

    pub fn failed(meta: FileMeta, status: Status, error: impl Into<String>) -> Self {
        Verdict {
            meta,
            scores: Vec::new(),
            status,
            error: Some(error.into()),
            scanned_at_ms: now_ms(),
        }
    }
}

pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

pub fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// A model as the output sees it: where its columns come from and how its label is decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelColumn {
    pub name: String,
    pub version: String,
    pub threshold: f32,
    pub precision: String,
}

impl ModelColumn {
    /// Column-safe form of the model name (`resnet18-demo` → `resnet18_demo`), so that SQL
    /// engines can name the column without quoting.
    pub fn column_stem(&self) -> String {
        self.name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    }

    /// The name of this model's score column.
    pub fn score_column(&self) -> String {
        format!("{}{}", column::SCORE_PREFIX, self.column_stem())
    }

    /// The name of this model's label column.
    pub fn label_column(&self) -> String {
        format!("{}{}", column::LABEL_PREFIX, self.column_stem())
    }
}

pub const REAL: &str = "real";
pub const FAKE: &str = "fake";

/// The names of the columns that readers of a verdict dataset look up (the watch ledger,
/// `report`, the API's model list), so that they are spelled in one place; a test checks them
/// against the schema of [`Table::new`].
pub mod column {
    pub const PATH: &str = "path";
    pub const SIZE_BYTES: &str = "size_bytes";
    pub const MODIFIED: &str = "modified";
    pub const FORMAT: &str = "format";
    pub const JPEG_QUALITY: &str = "jpeg_quality";
    pub const WIDTH: &str = "width";
    pub const HEIGHT: &str = "height";
    pub const LABEL: &str = "label";
    pub const STATUS: &str = "status";
    pub const SCANNED_AT: &str = "scanned_at";
    /// Before a model's column stem: its score column.
    pub const SCORE_PREFIX: &str = "score_";
    /// Before a model's column stem: its label column.
    pub const LABEL_PREFIX: &str = "label_";
}

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
        let ts = || DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into()));
        let mut fields = vec![
            Field::new("path", DataType::Utf8, false),
            Field::new("size_bytes", DataType::UInt64, true),
            Field::new("modified", ts(), true),
            Field::new("blake3", DataType::Utf8, true),
            Field::new("format", DataType::Utf8, true),
            Field::new("width", DataType::UInt32, true),
            Field::new("height", DataType::UInt32, true),
            Field::new("jpeg_quality", DataType::UInt8, true),
        ];
        for m in &models {
            let stem = m.column_stem();
            fields.push(Field::new(format!("score_{stem}"), DataType::Float32, true));
            fields.push(Field::new(format!("label_{stem}"), DataType::Utf8, true));
        }
        fields.extend([
            Field::new("score", DataType::Float32, true),
            Field::new("label", DataType::Utf8, true),
            Field::new("basis", DataType::Utf8, true),
            Field::new("provenance", DataType::Utf8, true),
            Field::new("provenance_generator", DataType::Utf8, true),
            Field::new("provenance_ai", DataType::Boolean, true),
            Field::new("c2pa_state", DataType::Utf8, true),
            Field::new("provenance_error", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, true),
            Field::new("models", DataType::Utf8, false),
            Field::new("precision", DataType::Utf8, false),
            Field::new("scanned_at", ts(), false),
        ]);
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
    /// declares AI generation (see [`policy`]).
    pub fn final_label(&self, v: &Verdict) -> Option<(&'static str, Basis)> {
        let model = self
            .combined_score(v)
            .map(|s| Self::label(s, self.combined_threshold()));
        policy::final_label(model, v.meta.provenance.as_ref())
    }

    pub fn label(score: f32, threshold: f32) -> &'static str {
        if score >= threshold {
            FAKE
        } else {
            REAL
        }
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

    pub fn to_record_batch(&self, rows: &[Verdict]) -> Result<RecordBatch, ArrowError> {
        let n = rows.len();
        let mut path = StringBuilder::with_capacity(n, n * 64);
        let mut size = UInt64Builder::with_capacity(n);
        let mut modified = TimestampMillisecondBuilder::with_capacity(n).with_timezone("+00:00");
        let mut hash = StringBuilder::with_capacity(n, n * 64);
        let mut format = StringBuilder::with_capacity(n, n * 4);
        let mut width = UInt32Builder::with_capacity(n);
        let mut height = UInt32Builder::with_capacity(n);
        let mut quality = UInt8Builder::with_capacity(n);
        let mut model_scores: Vec<Float32Builder> = self
            .models
            .iter()
            .map(|_| Float32Builder::with_capacity(n))
            .collect();
        let mut model_labels: Vec<StringBuilder> = self
            .models
            .iter()
            .map(|_| StringBuilder::with_capacity(n, n * 4))
            .collect();
        let mut score = Float32Builder::with_capacity(n);
        let mut label = StringBuilder::with_capacity(n, n * 4);
        let mut basis = StringBuilder::with_capacity(n, n * 8);
        let mut provenance = StringBuilder::new();
        let mut generator = StringBuilder::new();
        let mut declares_ai = BooleanBuilder::with_capacity(n);
        let mut c2pa_state = StringBuilder::new();
        let mut provenance_error = StringBuilder::new();
        let mut status = StringBuilder::with_capacity(n, n * 4);
        let mut error = StringBuilder::new();
        let mut models = StringBuilder::new();
        let mut precision = StringBuilder::new();
        let mut scanned = TimestampMillisecondBuilder::with_capacity(n).with_timezone("+00:00");

        let models_text = self.models_text();
        let precision_text = self.precision_text();
        for v in rows {
            let m = &v.meta;
            path.append_value(&m.path);
            size.append_option(m.size_bytes);
            modified.append_option(m.modified_ms);
            hash.append_option(m.blake3.as_deref());
            format.append_option(m.format);
            width.append_option(m.width);
            height.append_option(m.height);
            quality.append_option(m.jpeg_quality);
            for (i, model) in self.models.iter().enumerate() {
                let s = v.scores.get(i).copied().flatten();
                model_scores[i].append_option(s);
                model_labels[i].append_option(s.map(|s| Self::label(s, model.threshold)));
            }
            score.append_option(self.combined_score(v));
            let decided = self.final_label(v);
            label.append_option(decided.map(|(l, _)| l));
            basis.append_option(decided.map(|(_, b)| b.as_str()));
            let p = m.provenance.as_ref();
            provenance.append_option(p.and_then(Provenance::kind).map(|k| k.as_str()));
            generator.append_option(p.and_then(Provenance::generator));
            declares_ai.append_option(p.map(Provenance::ai));
            c2pa_state.append_option(p.and_then(|p| p.c2pa_state.as_ref()).map(|s| s.to_string()));
            provenance_error.append_option(p.and_then(Provenance::problems_text));
            status.append_value(v.status.as_str());
            error.append_option(v.error.as_deref());
            models.append_value(&models_text);
            precision.append_value(&precision_text);
            scanned.append_value(v.scanned_at_ms);
        }

        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(path.finish()),
            Arc::new(size.finish()),
            Arc::new(modified.finish()),
            Arc::new(hash.finish()),
            Arc::new(format.finish()),
            Arc::new(width.finish()),
            Arc::new(height.finish()),
            Arc::new(quality.finish()),
        ];
        for (s, l) in model_scores.iter_mut().zip(model_labels.iter_mut()) {
            columns.push(Arc::new(s.finish()));
            columns.push(Arc::new(l.finish()));
        }
        columns.extend::<[ArrayRef; 13]>([
            Arc::new(score.finish()),
            Arc::new(label.finish()),
            Arc::new(basis.finish()),
            Arc::new(provenance.finish()),
            Arc::new(generator.finish()),
            Arc::new(declares_ai.finish()),
            Arc::new(c2pa_state.finish()),
            Arc::new(provenance_error.finish()),
            Arc::new(status.finish()),
            Arc::new(error.finish()),
            Arc::new(models.finish()),
            Arc::new(precision.finish()),
            Arc::new(scanned.finish()),
        ]);
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float32Type;

    fn model(name: &str, threshold: f32) -> ModelColumn {
        ModelColumn {
            name: name.into(),
            version: "1".into(),
            threshold,
            precision: "fp32".into(),
        }
    }

    #[test]
    fn labels_follow_each_models_threshold_and_the_mean() {
        let table = Table::new(vec![model("a-b", 0.5), model("c", 0.9)]);
        let rows = vec![
            Verdict::scored(FileMeta::new("x.jpg".into()), vec![0.6, 0.8]),
            Verdict::failed(FileMeta::new("y.jpg".into()), Status::DecodeError, "bad"),
        ];
        let batch = table.to_record_batch(&rows).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let col = |name: &str| batch.column_by_name(name).unwrap().clone();
        assert_eq!(col("label_a_b").as_string::<i32>().value(0), "fake");
        assert_eq!(col("label_c").as_string::<i32>().value(0), "real");
        // mean score 0.7 against mean threshold 0.7 → fake
        let score = col("score");
        let score = score.as_primitive::<Float32Type>();
        assert!((score.value(0) - 0.7).abs() < 1e-6);
        assert_eq!(col("label").as_string::<i32>().value(0), "fake");
        assert!(score.is_null(1));
        assert_eq!(col("status").as_string::<i32>().value(1), "decode_error");
        assert_eq!(col("error").as_string::<i32>().value(1), "bad");
        assert_eq!(col("models").as_string::<i32>().value(1), "a-b@1,c@1");
    }

    #[test]
    fn the_exported_column_names_are_in_the_schema() {
        let m = model("a-b", 0.5);
        let table = Table::new(vec![m.clone()]);
        let schema = table.schema();
        let named = [
            column::PATH,
            column::SIZE_BYTES,
            column::MODIFIED,
            column::FORMAT,
            column::JPEG_QUALITY,
            column::WIDTH,
            column::HEIGHT,
            column::LABEL,
            column::STATUS,
            column::SCANNED_AT,
        ];
        for name in named
            .iter()
            .copied()
            .chain([m.score_column().as_str(), m.label_column().as_str()])
        {
            assert!(schema.field_with_name(name).is_ok(), "{name}");
        }
    }
}
