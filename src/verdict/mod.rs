//! The verdict row: the one contract that every sink and every reader shares.
//!
//! A [`Verdict`] holds what the pipeline learned about one candidate file, with its [`Status`].
//! Labels are not stored in it: they follow from the scores and the thresholds ([`label`]),
//! which [`Table`] knows, so that a row is turned into columns the same way by every sink
//! ([`table`]: the schema and its encoder).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::provenance::Provenance;
pub use label::{Basis, Label};
pub use table::{column, Table};

pub mod label;
pub mod reader;
pub mod table;

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
    /// The path's bytes as the file system gave them, only when they are not valid UTF-8 (so
    /// that `path` lost some): with them two names that differ only in invalid bytes stay two.
    pub path_bytes: Option<Vec<u8>>,
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

    /// The meta of a file on disk: its path as text, and as bytes where the text is lossy.
    pub fn of_path(path: &Path) -> Self {
        FileMeta {
            path_bytes: path_bytes(path),
            ..FileMeta::new(path.to_string_lossy().into_owned())
        }
    }
}

/// A path's bytes when it is not valid UTF-8, for the `path_bytes` column; `None` otherwise (and
/// off Unix, where paths are not byte strings).
pub fn path_bytes(path: &Path) -> Option<Vec<u8>> {
    #[cfg(unix)]
    if path.to_str().is_none() {
        use std::os::unix::ffi::OsStrExt;
        return Some(path.as_os_str().as_bytes().to_vec());
    }
    let _ = path;
    None
}

/// The path a row names: its `path_bytes` where present (and on Unix), else its `path` text.
pub fn row_path(text: &str, bytes: Option<&[u8]>) -> PathBuf {
    #[cfg(unix)]
    if let Some(bytes) = bytes {
        use std::os::unix::ffi::OsStrExt;
        return PathBuf::from(std::ffi::OsStr::from_bytes(bytes));
    }
    let _ = bytes;
    PathBuf::from(text)
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

/// Column-safe form of a model name (`resnet18-demo` → `resnet18_demo`), so that SQL engines
/// can name its columns without quoting.
pub fn column_stem(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A model as the output sees it: where its columns come from and how its label is decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelColumn {
    pub name: String,
    pub version: String,
    pub threshold: f32,
    pub precision: String,
}

#[cfg(test)]
impl ModelColumn {
    /// A model column for tests: version 1, run at FP32.
    pub(crate) fn for_tests(name: &str, threshold: f32) -> Self {
        ModelColumn {
            name: name.into(),
            version: "1".into(),
            threshold,
            precision: "fp32".into(),
        }
    }
}

impl ModelColumn {
    /// Column-safe form of the model name (`resnet18-demo` → `resnet18_demo`), so that SQL
    /// engines can name the column without quoting.
    pub fn column_stem(&self) -> String {
        column_stem(&self.name)
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

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float32Type;

    #[test]
    fn labels_follow_each_models_threshold_and_the_mean() {
        let table = Table::new(vec![
            ModelColumn::for_tests("a-b", 0.5),
            ModelColumn::for_tests("c", 0.9),
        ]);
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
    fn path_bytes_are_kept_only_where_the_text_is_lossy() {
        let plain = FileMeta::of_path(Path::new("/in/caf\u{e9}.jpg"));
        assert_eq!(plain.path, "/in/caf\u{e9}.jpg");
        assert_eq!(plain.path_bytes, None);
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let raw = Path::new(std::ffi::OsStr::from_bytes(b"/in/caf\xe9.jpg"));
            let meta = FileMeta::of_path(raw);
            assert_eq!(meta.path, "/in/caf\u{fffd}.jpg");
            assert_eq!(meta.path_bytes.as_deref(), Some(&b"/in/caf\xe9.jpg"[..]));
            assert_eq!(row_path(&meta.path, meta.path_bytes.as_deref()), raw);
            let table = Table::new(vec![ModelColumn::for_tests("a", 0.5)]);
            let batch = table
                .to_record_batch(&[
                    Verdict::scored(meta, vec![0.1]),
                    Verdict::scored(plain, vec![0.1]),
                ])
                .unwrap();
            let col = batch.column_by_name(column::PATH_BYTES).unwrap();
            let col = col.as_binary::<i32>();
            assert_eq!(col.value(0), b"/in/caf\xe9.jpg");
            assert!(col.is_null(1));
        }
    }

    #[test]
    fn the_exported_column_names_are_in_the_schema() {
        let m = ModelColumn::for_tests("a-b", 0.5);
        let table = Table::new(vec![m.clone()]);
        let schema = table.schema();
        let named = [
            column::PATH,
            column::PATH_BYTES,
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
