//! What a verdict file says about the run that wrote it: the scanner's version, the command
//! line, each model's identity and precision, and the threshold with where it came from. Kept
//! as Parquet key-value metadata, so a file found months later still tells which model and
//! threshold its labels mean (docs/verdict-metadata.md lists the keys).

use std::collections::BTreeMap;
use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use serde::{Deserialize, Serialize};

use crate::model::infer::ModelSet;
use crate::model::manifest::{Manifest, ThresholdSource};
use crate::verdict::{ModelColumn, Table};

pub const VERSION: &str = "synthscan.version";
pub const COMMAND: &str = "synthscan.command";
pub const MODELS: &str = "synthscan.models";
pub const THRESHOLD: &str = "synthscan.threshold";
pub const THRESHOLD_SOURCE: &str = "synthscan.threshold_source";
/// Every key this module writes starts with this.
pub const PREFIX: &str = "synthscan.";

/// One model of the run, as `synthscan.models` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub name: String,
    pub version: String,
    /// Of the ONNX file that ran (the variant for `precision`).
    pub sha256: String,
    pub precision: String,
    pub threshold: f32,
    /// `--threshold`, `calibration` or `manifest`.
    pub threshold_source: String,
    /// The calibration file, when it set the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    /// The rate the threshold was chosen for, when one was (calibration or `--max-fpr`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_fpr: Option<f64>,
}

impl ModelRecord {
    pub fn new(manifest: &Manifest, column: &ModelColumn, source: &ThresholdSource) -> Self {
        let sha256 = if column.precision == "fp32" {
            manifest.sha256.clone()
        } else {
            manifest
                .variants
                .iter()
                .find(|v| v.precision == column.precision)
                .map_or_else(|| manifest.sha256.clone(), |v| v.sha256.clone())
        };
        let (calibration, max_fpr) = match source {
            ThresholdSource::Calibration { file, max_fpr } => (Some(file.clone()), Some(*max_fpr)),
            ThresholdSource::OperatingPoint { max_fpr } => (None, Some(f64::from(*max_fpr))),
            ThresholdSource::Flag | ThresholdSource::Manifest => (None, None),
        };
        ModelRecord {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            sha256,
            precision: column.precision.clone(),
            threshold: column.threshold,
            threshold_source: source.kind().to_string(),
            calibration,
            max_fpr,
        }
    }
}

/// The key-value pairs for a run's verdict files. `threshold` is the combined one that the final
/// `label` is decided at (the mean of the models' thresholds).
pub fn key_values(models: &[ModelRecord], threshold: f32) -> Vec<(String, String)> {
    let command: Vec<String> = std::env::args().collect();
    let mut sources: Vec<&str> = Vec::new();
    for m in models {
        if !sources.contains(&m.threshold_source.as_str()) {
            sources.push(&m.threshold_source);
        }
    }
    vec![
        (VERSION.into(), env!("CARGO_PKG_VERSION").into()),
        (
            COMMAND.into(),
            serde_json::to_string(&command).expect("strings serialize"),
        ),
        (
            MODELS.into(),
            serde_json::to_string(models).expect("records serialize"),
        ),
        (THRESHOLD.into(), threshold.to_string()),
        (THRESHOLD_SOURCE.into(), sources.join(",")),
    ]
}

/// The verdict table of a run of these models, carrying the metadata that describes the run.
pub fn table(models: &ModelSet) -> Table {
    let table = Table::new(models.columns.clone());
    let records: Vec<ModelRecord> = models
        .entries
        .iter()
        .zip(&models.columns)
        .zip(&models.threshold_sources)
        .map(|((e, c), s)| ModelRecord::new(&e.manifest, c, s))
        .collect();
    let metadata = key_values(&records, table.combined_threshold());
    table.with_metadata(metadata)
}

/// The synthscan keys of a Parquet file's footer; empty for files written before them.
pub fn read(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = SerializedFileReader::new(file).map_err(|e| e.to_string())?;
    Ok(reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key.starts_with(PREFIX))
        .filter_map(|kv| kv.value.clone().map(|v| (kv.key.clone(), v)))
        .collect())
}
