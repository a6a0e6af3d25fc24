//! Model files and their manifests (`models/NAME.json`, see docs/model-manifest.md).
//!
//! A model is named on the command line as a name (looked up in the models folder), a manifest
//! path, or an ONNX path (its manifest is the `.json` beside it). The ONNX file's sha256 is
//! checked against the manifest before anything loads it, so a truncated download or a Git LFS
//! pointer is caught with a clear message instead of an obscure ONNX Runtime error.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SCHEMA_VERSION: u32 = 1;
pub const DEFAULT_MODEL: &str = "efficientnet-lite0-gen";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("model '{name}' not found: looked for {looked}. List the models folder or pass a path to a .onnx or .json file")]
    NotFound { name: String, looked: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid model manifest: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
    #[error("--max-fpr {max_fpr}: model {name} has no operating point for it (measured: {known}); use --threshold instead")]
    NoOperatingPoint {
        name: String,
        max_fpr: f32,
        known: String,
    },
    #[error("{path} does not match its manifest: sha256 is {actual}, the manifest says {expected}. The file is damaged or is a placeholder (e.g. a Git LFS pointer); fetch it again")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub file: String,
    pub sha256: String,
    #[serde(default)]
    pub variants: Vec<Variant>,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub labels: Vec<String>,
    pub fake_index: usize,
    /// The default threshold; for models with operating points, the 5% false-positive one.
    pub threshold: f32,
    /// Thresholds measured on held-out real images, for `--max-fpr`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operating_points: Vec<OperatingPoint>,
    #[serde(default)]
    pub training: serde_json::Value,
    #[serde(default)]
    pub card: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub precision: String,
    pub file: String,
    pub sha256: String,
}

/// A threshold with the share of real images it calls fake, measured when the model was made.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub max_fpr: f32,
    pub threshold: f32,
}

/// How pixels become the model's input tensor. Two models with equal specs share one tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub layout: String,
    pub color: String,
    pub height: u32,
    pub width: u32,
    pub resize: String,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    /// Present for native-resolution models: no resize, crops of `height` x `width` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<CropSpec>,
}

#[cfg(test)]
impl InputSpec {
    /// A square RGB input with ImageNet normalization; with `tiles`, a native-resolution crop.
    pub(crate) fn for_tests(size: u32, tiles: Option<u32>) -> InputSpec {
        InputSpec {
            name: "input".into(),
            layout: "NCHW".into(),
            color: "RGB".into(),
            height: size,
            width: size,
            resize: "bilinear_antialias".into(),
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            crop: tiles.map(|tiles| CropSpec {
                tiles,
                aggregate: "mean".into(),
                small: "upscale_short_side".into(),
            }),
        }
    }
}

/// Native-resolution input: `tiles` x `tiles` crops spread evenly over the image (one tile is
/// the centre crop), their fake probabilities averaged. An image smaller than the crop is
/// first scaled up (bilinear, keeping its aspect ratio) until its shorter side fills it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropSpec {
    #[serde(default = "one")]
    pub tiles: u32,
    #[serde(default = "mean")]
    pub aggregate: String,
    #[serde(default = "upscale_short_side")]
    pub small: String,
}

fn one() -> u32 {
    1
}
fn mean() -> String {
    "mean".into()
}
fn upscale_short_side() -> String {
    "upscale_short_side".into()
}

impl InputSpec {
    /// Model inputs made from one image: one for a resize, `tiles`² for crops.
    pub fn inputs_per_image(&self) -> usize {
        self.crop
            .as_ref()
            .map_or(1, |c| (c.tiles * c.tiles) as usize)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    pub kind: OutputKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Logits,
    Probabilities,
}

impl Manifest {
    fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let invalid = |problem: String| ManifestError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        if self.schema_version != SCHEMA_VERSION {
            return Err(invalid(format!(
                "schema_version {} is not supported (this scanner reads {SCHEMA_VERSION})",
                self.schema_version
            )));
        }
        if self.fake_index >= self.labels.len() {
            return Err(invalid(format!(
                "fake_index {} is outside labels {:?}",
                self.fake_index, self.labels
            )));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(invalid(format!(
                "threshold {} is not a probability",
                self.threshold
            )));
        }
        let i = &self.input;
        if i.layout != "NCHW" || i.color != "RGB" {
            return Err(invalid(format!(
                "input layout {}/{} is not supported (NCHW/RGB)",
                i.layout, i.color
            )));
        }
        if i.resize != "bilinear_antialias" {
            return Err(invalid(format!(
                "input resize '{}' is not supported (bilinear_antialias)",
                i.resize
            )));
        }
        if i.height == 0 || i.width == 0 || i.std.contains(&0.0) {
            return Err(invalid("input size and std must be non-zero".into()));
        }
        if let Some(c) = &i.crop {
            if c.tiles == 0
                || c.tiles > 8
                || c.aggregate != "mean"
                || c.small != "upscale_short_side"
            {
                return Err(invalid(format!(
                    "input crop {c:?} is not supported (tiles 1-8, aggregate mean, small upscale_short_side)"
                )));
            }
        }
        for p in &self.operating_points {
            if !(0.0..=1.0).contains(&p.max_fpr) || !(0.0..=1.0).contains(&p.threshold) {
                return Err(invalid(format!(
                    "operating point {p:?} is not a pair of probabilities"
                )));
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// The threshold of the operating point for `max_fpr` (matched to the manifest's points,
    /// which are few and stated to two decimals).
    pub fn threshold_at(&self, max_fpr: f32) -> Option<f32> {
        self.operating_points
            .iter()
            .find(|p| (p.max_fpr - max_fpr).abs() < 1e-6)
            .map(|p| p.threshold)
    }
}

/// How each model's threshold is chosen: `threshold` for every model, else the calibrated
/// threshold for the model a calibration file was made for, else each model's operating point
/// for `max_fpr`, else each model's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ThresholdChoice {
    pub threshold: Option<f32>,
    pub max_fpr: Option<f32>,
    pub calibrated: Option<Calibrated>,
}

/// A threshold fitted on the user's own real images (`synthscan calibrate`), for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct Calibrated {
    pub model: String,
    pub threshold: f32,
    pub max_fpr: f64,
    /// The calibration file, as named on the command line.
    pub file: String,
}

/// Where a model's threshold came from, as recorded with the run.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdSource {
    /// `--threshold`.
    Flag,
    /// A calibration file's point.
    Calibration { file: String, max_fpr: f64 },
    /// The manifest's operating point for `--max-fpr`.
    OperatingPoint { max_fpr: f32 },
    /// The manifest's default threshold.
    Manifest,
}

impl ThresholdSource {
    /// The kind alone: `--threshold`, `calibration` or `manifest`.
    pub fn kind(&self) -> &'static str {
        match self {
            ThresholdSource::Flag => "--threshold",
            ThresholdSource::Calibration { .. } => "calibration",
            ThresholdSource::OperatingPoint { .. } | ThresholdSource::Manifest => "manifest",
        }
    }
}

impl std::fmt::Display for ThresholdSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThresholdSource::Flag => f.write_str("--threshold"),
            ThresholdSource::Calibration { file, max_fpr } => {
                write!(f, "calibration {file}, max_fpr {max_fpr}")
            }
            ThresholdSource::OperatingPoint { max_fpr } => write!(f, "manifest, max_fpr {max_fpr}"),
            ThresholdSource::Manifest => f.write_str("manifest"),
        }
    }
}

impl ThresholdChoice {
    pub fn for_model(&self, manifest: &Manifest) -> Result<f32, ManifestError> {
        self.pick(manifest).map(|(t, _)| t)
    }

    /// The threshold for a model and where it came from.
    pub fn pick(&self, manifest: &Manifest) -> Result<(f32, ThresholdSource), ManifestError> {
        if let Some(t) = self.threshold {
            return Ok((t, ThresholdSource::Flag));
        }
        if let Some(c) = self
            .calibrated
            .as_ref()
            .filter(|c| c.model == manifest.name)
        {
            let source = ThresholdSource::Calibration {
                file: c.file.clone(),
                max_fpr: c.max_fpr,
            };
            return Ok((c.threshold, source));
        }
        let Some(max_fpr) = self.max_fpr else {
            return Ok((manifest.threshold, ThresholdSource::Manifest));
        };
        let t = manifest
            .threshold_at(max_fpr)
            .ok_or_else(|| ManifestError::NoOperatingPoint {
                name: manifest.name.clone(),
                max_fpr,
                known: if manifest.operating_points.is_empty() {
                    "none".into()
                } else {
                    let known: Vec<String> = manifest
                        .operating_points
                        .iter()
                        .map(|p| p.max_fpr.to_string())
                        .collect();
                    known.join(", ")
                },
            })?;
        Ok((t, ThresholdSource::OperatingPoint { max_fpr }))
    }
}

/// A manifest with the folder it came from; the ONNX files are relative to it.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub manifest: Manifest,
    pub dir: PathBuf,
}

impl ModelEntry {
    /// The ONNX file for a precision: `fp32` is the main file, others come from `variants`.
    pub fn file_for(&self, precision: &str) -> Option<(PathBuf, &str)> {
        if precision == "fp32" {
            return Some((self.dir.join(&self.manifest.file), &self.manifest.sha256));
        }
        self.manifest
            .variants
            .iter()
            .find(|v| v.precision == precision)
            .map(|v| (self.dir.join(&v.file), v.sha256.as_str()))
    }

    /// Reads the ONNX bytes of a precision and checks them against the manifest's sha256.
    pub fn read_verified(&self, precision: &str) -> Result<(PathBuf, Vec<u8>), ManifestError> {
        let (path, expected) = self
            .file_for(precision)
            .ok_or_else(|| ManifestError::Invalid {
                path: self.dir.join(&self.manifest.file),
                problem: format!("no {precision} variant in the manifest"),
            })?;
        let bytes = std::fs::read(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(ManifestError::Checksum {
                path,
                expected: expected.to_string(),
                actual,
            });
        }
        Ok((path, bytes))
    }
}

/// Where to look for models by name: `--models-dir`/`SYNTHSCAN_MODELS`, else `./models`, else
/// the repository's `models/` when running from a cargo build, else `models/` beside the binary.
pub fn default_models_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("models")];
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        dirs.push(exe_dir.join("models"));
        dirs.push(exe_dir.join("../share/synthscan/models"));
        // target/{debug,release}/synthscan → repository root
        dirs.push(exe_dir.join("../../models"));
    }
    dirs
}

/// Resolves a `--model` argument to a manifest.
pub fn resolve(reference: &str, dirs: &[PathBuf]) -> Result<ModelEntry, ManifestError> {
    let as_path = Path::new(reference);
    let manifest_path = match as_path.extension().and_then(|e| e.to_str()) {
        Some("json") => Some(as_path.to_path_buf()),
        Some("onnx") => Some(manifest_beside(as_path)),
        _ => None,
    };
    if let Some(path) = manifest_path {
        return load(&path);
    }
    let mut looked = Vec::new();
    for dir in dirs {
        let path = dir.join(format!("{reference}.json"));
        if path.is_file() {
            return load(&path);
        }
        looked.push(path.display().to_string());
    }
    Err(ManifestError::NotFound {
        name: reference.to_string(),
        looked: looked.join(", "),
    })
}

/// `models/x.onnx`, `models/x.fp16.onnx` and `models/x.int8.onnx` all belong to `models/x.json`.
fn manifest_beside(onnx: &Path) -> PathBuf {
    let name = onnx
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".onnx")
        .unwrap_or(&name)
        .trim_end_matches(".fp16")
        .trim_end_matches(".int8")
        .to_string();
    onnx.with_file_name(format!("{stem}.json"))
}

pub fn load(path: &Path) -> Result<ModelEntry, ManifestError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|source| ManifestError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    manifest.validate(path)?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(ModelEntry { manifest, dir })
}

/// Lists the manifests in a folder, sorted by name.
pub fn list(dir: &Path) -> Vec<Result<ModelEntry, ManifestError>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    paths.iter().map(|p| load(p)).collect()
}

/// The distinct input specs of a set of models, and for each model the index of its spec.
pub fn distinct_specs<'a>(
    specs: impl IntoIterator<Item = &'a InputSpec>,
) -> (Vec<InputSpec>, Vec<usize>) {
    let mut distinct: Vec<InputSpec> = Vec::new();
    let mut index = Vec::new();
    for spec in specs {
        // The input name differs between otherwise identical models and does not change pixels.
        let same = |d: &InputSpec| {
            (d.height, d.width, d.scale, d.mean, d.std, &d.crop)
                == (
                    spec.height,
                    spec.width,
                    spec.scale,
                    spec.mean,
                    spec.std,
                    &spec.crop,
                )
        };
        match distinct.iter().position(same) {
            Some(i) => index.push(i),
            None => {
                index.push(distinct.len());
                distinct.push(spec.clone());
            }
        }
    }
    (distinct, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_specs_share_one_tensor() {
        let mut other = InputSpec::for_tests(224, None);
        other.name = "pixel_values".into();
        let (distinct, index) = distinct_specs([
            &InputSpec::for_tests(224, None),
            &InputSpec::for_tests(256, None),
            &other,
        ]);
        assert_eq!(distinct.len(), 2);
        assert_eq!(index, vec![0, 1, 0]);
    }

    pub(crate) fn sample_manifest(file: &str, sha256: &str) -> serde_json::Value {
        serde_json::json!({
            "schema_version": 1,
            "name": "tiny",
            "version": "0.1.0",
            "architecture": "test",
            "file": file,
            "sha256": sha256,
            "input": {"name": "input", "layout": "NCHW", "color": "RGB", "height": 8, "width": 8,
                      "resize": "bilinear_antialias", "scale": 0.00392156862745098,
                      "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
            "output": {"name": "logits", "kind": "logits"},
            "labels": ["real", "fake"],
            "fake_index": 1,
            "threshold": 0.5
        })
    }

    #[test]
    fn resolves_by_name_path_and_onnx_and_checks_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let onnx = dir.path().join("tiny.onnx");
        std::fs::write(&onnx, b"model bytes").unwrap();
        let sha = hex::encode(Sha256::digest(b"model bytes"));
        let manifest = dir.path().join("tiny.json");
        std::fs::write(&manifest, sample_manifest("tiny.onnx", &sha).to_string()).unwrap();

        let by_name = resolve("tiny", &[dir.path().to_path_buf()]).unwrap();
        assert_eq!(by_name.manifest.name, "tiny");
        let by_onnx = resolve(onnx.to_str().unwrap(), &[]).unwrap();
        assert_eq!(by_onnx.manifest, by_name.manifest);
        let (_, bytes) = by_name.read_verified("fp32").unwrap();
        assert_eq!(bytes, b"model bytes");

        std::fs::write(&onnx, b"tampered").unwrap();
        let err = by_name.read_verified("fp32").unwrap_err();
        assert!(matches!(err, ManifestError::Checksum { .. }), "{err}");
        assert!(resolve("tiny", &[]).is_err());
    }

    #[test]
    fn reads_crop_mode_and_operating_points() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crop.json");
        let mut m = sample_manifest("x.onnx", "00");
        m["input"]["crop"] = serde_json::json!({"tiles": 2});
        m["operating_points"] = serde_json::json!([
            {"max_fpr": 0.01, "threshold": 0.9}, {"max_fpr": 0.05, "threshold": 0.7}
        ]);
        std::fs::write(&path, m.to_string()).unwrap();
        let entry = load(&path).unwrap();
        let crop = entry.manifest.input.crop.as_ref().unwrap();
        assert_eq!((crop.tiles, crop.aggregate.as_str()), (2, "mean"));
        assert_eq!(entry.manifest.input.inputs_per_image(), 4);
        assert_eq!(entry.manifest.threshold_at(0.05), Some(0.7));
        assert_eq!(entry.manifest.threshold_at(0.10), None);
        let pick = |threshold, max_fpr| {
            ThresholdChoice {
                threshold,
                max_fpr,
                calibrated: None,
            }
            .for_model(&entry.manifest)
        };
        assert_eq!(pick(None, None).unwrap(), 0.5);
        assert_eq!(pick(None, Some(0.01)).unwrap(), 0.9);
        assert_eq!(pick(Some(0.3), Some(0.01)).unwrap(), 0.3);
        let err = pick(None, Some(0.10)).unwrap_err().to_string();
        assert!(err.contains("0.01, 0.05"), "{err}");

        m["input"]["crop"] = serde_json::json!({"tiles": 0});
        std::fs::write(&path, m.to_string()).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("crop"), "{err}");
    }

    #[test]
    fn rejects_inconsistent_manifests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.json");
        let mut m = sample_manifest("x.onnx", "00");
        m["fake_index"] = 2.into();
        std::fs::write(&path, m.to_string()).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("fake_index"), "{err}");
    }

    #[test]
    fn variant_files_share_the_manifest() {
        assert_eq!(
            manifest_beside(Path::new("m/a-b.fp16.onnx")),
            Path::new("m/a-b.json")
        );
        assert_eq!(
            manifest_beside(Path::new("m/a-b.int8.onnx")),
            Path::new("m/a-b.json")
        );
    }
}
