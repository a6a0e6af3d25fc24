//! Reading verdict datasets back: finding a dataset's Parquet files, reading the columns a
//! reader wants, and checking their types, with errors that name the file and the column.
//! `report`, `eval --verdicts` and the watch ledger all read through here.

use std::path::{Path, PathBuf};

use arrow::array::{
    Array, BinaryArray, BooleanArray, Float32Array, RecordBatch, StringArray,
    TimestampMillisecondArray, UInt32Array, UInt64Array, UInt8Array,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}: no such file or folder")]
    Missing(PathBuf),
    #[error("{0}: no Parquet files in it")]
    Empty(PathBuf),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path} as Parquet: {reason}")]
    Parquet { path: PathBuf, reason: String },
    #[error("{path} is not a verdict file: it has no '{column}' column")]
    NoColumn { path: PathBuf, column: String },
    #[error("{path} is not a verdict file: column '{column}' is not {expected}")]
    Type {
        path: PathBuf,
        column: String,
        expected: &'static str,
    },
}

/// The Parquet files of a dataset: the file itself, or every `.parquet` file under the folder,
/// sorted (names starting with `.` or `_` are writers' temporary files and are skipped, as
/// DuckDB, pyarrow and polars skip them).
pub fn dataset_files(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(ReadError::Missing(path.to_path_buf()));
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(path)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || !e.file_name().to_string_lossy().starts_with(['.', '_'])
        })
        .flatten()
        .filter(|e| e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "parquet"))
        .map(|e| e.into_path())
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ReadError::Empty(path.to_path_buf()));
    }
    Ok(files)
}

/// The record batches of one verdict file: every column, or only those of `columns` that the
/// file has (a reader then asks for each as required or optional).
pub fn read_batches(
    path: &Path,
    columns: Option<&[&str]>,
) -> Result<impl Iterator<Item = Result<Batch, ReadError>>, ReadError> {
    let parquet = |e: &dyn std::fmt::Display| ReadError::Parquet {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet(&e))?;
    if let Some(wanted) = columns {
        let schema = builder.parquet_schema();
        let leaves: Vec<usize> = (0..schema.num_columns())
            .filter(|&i| wanted.contains(&schema.column(i).name()))
            .collect();
        let mask = ProjectionMask::leaves(schema, leaves);
        builder = builder.with_projection(mask);
    }
    let reader = builder.build().map_err(|e| parquet(&e))?;
    let path = path.to_path_buf();
    Ok(reader.map(move |batch| {
        batch
            .map(|batch| Batch {
                path: path.clone(),
                batch,
            })
            .map_err(|e| ReadError::Parquet {
                path: path.clone(),
                reason: e.to_string(),
            })
    }))
}

/// One batch of a verdict file, with typed access to its columns by name.
pub struct Batch {
    path: PathBuf,
    batch: RecordBatch,
}

impl Batch {
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn record_batch(&self) -> &RecordBatch {
        &self.batch
    }

    /// The column, when the file has it; of another type, it is an error.
    fn optional<T: Array + 'static>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<Option<&T>, ReadError> {
        let Some(column) = self.batch.column_by_name(name) else {
            return Ok(None);
        };
        column
            .as_any()
            .downcast_ref::<T>()
            .map(Some)
            .ok_or_else(|| ReadError::Type {
                path: self.path.clone(),
                column: name.to_string(),
                expected,
            })
    }

    fn required<T: Array + 'static>(
        &self,
        name: &str,
        expected: &'static str,
    ) -> Result<&T, ReadError> {
        self.optional(name, expected)?
            .ok_or_else(|| ReadError::NoColumn {
                path: self.path.clone(),
                column: name.to_string(),
            })
    }

    pub fn text(&self, name: &str) -> Result<&StringArray, ReadError> {
        self.required(name, "text")
    }

    pub fn text_opt(&self, name: &str) -> Result<Option<&StringArray>, ReadError> {
        self.optional(name, "text")
    }

    pub fn u64(&self, name: &str) -> Result<&UInt64Array, ReadError> {
        self.required(name, "an unsigned 64-bit integer")
    }

    pub fn u32(&self, name: &str) -> Result<&UInt32Array, ReadError> {
        self.required(name, "an unsigned 32-bit integer")
    }

    pub fn u8(&self, name: &str) -> Result<&UInt8Array, ReadError> {
        self.required(name, "an unsigned 8-bit integer")
    }

    pub fn f32(&self, name: &str) -> Result<&Float32Array, ReadError> {
        self.required(name, "a 32-bit float")
    }

    pub fn time(&self, name: &str) -> Result<&TimestampMillisecondArray, ReadError> {
        self.required(name, "a timestamp in milliseconds")
    }

    pub fn bool_opt(&self, name: &str) -> Result<Option<&BooleanArray>, ReadError> {
        self.optional(name, "a boolean")
    }

    pub fn bytes_opt(&self, name: &str) -> Result<Option<&BinaryArray>, ReadError> {
        self.optional(name, "binary")
    }

    /// The names of the columns that start with `prefix`, with the prefix cut off.
    pub fn names_after(&self, prefix: &str) -> Vec<String> {
        self.batch
            .schema()
            .fields()
            .iter()
            .filter_map(|f| f.name().strip_prefix(prefix).map(str::to_string))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{column, FileMeta, ModelColumn, Table, Verdict};
    use parquet::arrow::ArrowWriter;

    #[test]
    fn columns_are_read_by_name_and_type_with_the_file_named_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table::new(vec![ModelColumn::for_tests("m", 0.5)]);
        let out = dir.path().join("v.parquet");
        let rows = [Verdict::scored(FileMeta::new("a.jpg".into()), vec![0.9])];
        let file = std::fs::File::create(&out).unwrap();
        let mut writer = ArrowWriter::try_new(file, table.schema(), None).unwrap();
        writer
            .write(&table.to_record_batch(&rows).unwrap())
            .unwrap();
        writer.close().unwrap();

        assert_eq!(dataset_files(dir.path()).unwrap(), vec![out.clone()]);
        let wanted = [column::PATH, column::SIZE_BYTES];
        let batch = read_batches(&out, Some(&wanted))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(batch.text(column::PATH).unwrap().value(0), "a.jpg");
        assert!(batch.u64(column::SIZE_BYTES).unwrap().is_null(0));
        // Not read, so absent: required is an error naming file and column, optional is None.
        let err = batch.text(column::STATUS).unwrap_err().to_string();
        assert!(
            err.contains("v.parquet") && err.contains("'status'"),
            "{err}"
        );
        assert!(batch.text_opt(column::STATUS).unwrap().is_none());
        let err = batch.u64(column::PATH).unwrap_err().to_string();
        assert!(err.contains("is not an unsigned 64-bit integer"), "{err}");

        let all = read_batches(&out, None).unwrap().next().unwrap().unwrap();
        assert_eq!(all.names_after(column::SCORE_PREFIX), ["m"]);
        assert!(matches!(
            dataset_files(&dir.path().join("nope")),
            Err(ReadError::Missing(_))
        ));
    }
}
