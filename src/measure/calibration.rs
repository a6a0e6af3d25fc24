//! Site calibration: thresholds fitted on the user's own real images, kept in a JSON file that
//! names the model it was fitted for.
//!
//! For a target false-positive rate `a` on `n` real images, the threshold is the lowest one at
//! which at most `floor(a * n)` of them score at or above it: the smallest float above the
//! `(floor(a * n) + 1)`-th highest real score. Fitting refuses fewer than `ceil(3 / a)` real
//! images (60 for 5%, 300 for 1%): with fewer, even a threshold that calls none of them fake
//! leaves the 95% upper bound on the true rate above `a` (the rule of three: after 0 events in
//! `n` trials that bound is about `3 / n`), so the rate asked for could not be told apart from
//! a higher one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::measure::metrics::Proportion;
use crate::model::manifest::Manifest;

pub const SCHEMA_VERSION: u32 = 1;
/// The point a calibration file applies when no `--max-fpr` picks one.
pub const DEFAULT_MAX_FPR: f64 = 0.05;

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("--max-fpr {max_fpr}: at least {needed} real images are needed to calibrate a {pct}% false-positive rate (ceil(3 / max_fpr)), and there are {have}: with fewer, the rate reached cannot be told apart from a higher one", pct = percent(*max_fpr))]
    TooFew {
        max_fpr: f64,
        needed: u64,
        have: u64,
    },
    #[error("--max-fpr {0} is not a rate strictly between 0 and 1")]
    BadRate(f64),
    #[error("cannot read calibration {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{file} was calibrated for model {made_for}, but this run uses {this_run}: calibrate again for this model")]
    OtherModel {
        file: PathBuf,
        made_for: String,
        this_run: String,
    },
    #[error("{file} has no point for --max-fpr {max_fpr} (it has: {known})")]
    NoPoint {
        file: PathBuf,
        max_fpr: f64,
        known: String,
    },
}

/// A rate as a percentage without binary noise (0.07 → 7, not 7.000000000000001).
fn percent(rate: f64) -> f64 {
    (rate * 1e8).round() / 1e6
}

/// The calibration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub schema_version: u32,
    pub synthscan_version: String,
    /// When it was fitted, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    pub model: CalibratedModel,
    pub points: Vec<Point>,
    pub data: FitData,
}

/// The model the thresholds belong to; scores of another model or version mean something else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibratedModel {
    pub name: String,
    pub version: String,
    /// Of the model's .onnx file (the FP32 one, as its manifest names it).
    pub sha256: String,
    /// The variant that scored the calibration images.
    pub precision: String,
}

impl CalibratedModel {
    pub fn of(manifest: &Manifest, precision: &str) -> Self {
        CalibratedModel {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            sha256: manifest.sha256.clone(),
            precision: precision.to_string(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {} (sha256 {})",
            self.name,
            self.version,
            short(&self.sha256)
        )
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub max_fpr: f64,
    /// A file is fake when its score is at or above this.
    pub threshold: f32,
    /// The rate reached on the real images: how many of them score at or above the threshold.
    pub fpr: Proportion,
    /// The share of the fakes (when given) at or above the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpr: Option<Proportion>,
}

/// What the thresholds were fitted on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FitData {
    pub real: DataSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fake: Option<DataSummary>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    /// The folders as given, made absolute.
    pub folders: Vec<String>,
    /// Images scored.
    pub images: u64,
    /// Files that could not be scored (not counted in `images`).
    pub errors: u64,
    /// Scored images by format.
    pub formats: BTreeMap<String, u64>,
}

/// How many real images a target rate needs: `ceil(3 / max_fpr)`.
pub fn required_real(max_fpr: f64) -> u64 {
    // The epsilon keeps 3 / 0.05 at 60 despite 0.05 having no exact binary form.
    (3.0 / max_fpr - 1e-9).ceil() as u64
}

/// Fits one point per rate, on the real scores; with fake scores, the TPR at each.
pub fn fit(
    real: &[f32],
    fake: Option<&[f32]>,
    max_fprs: &[f64],
) -> Result<Vec<Point>, CalibrationError> {
    let mut desc = real.to_vec();
    desc.sort_by(|a, b| b.total_cmp(a));
    let n = desc.len() as u64;
    let mut points = Vec::new();
    for &a in max_fprs {
        if !(a > 0.0 && a < 1.0) {
            return Err(CalibrationError::BadRate(a));
        }
        let needed = required_real(a);
        if n < needed {
            return Err(CalibrationError::TooFew {
                max_fpr: a,
                needed,
                have: n,
            });
        }
        // How many real images may score at or above the threshold.
        let allowed = ((a * n as f64) + 1e-9).floor() as usize;
        let threshold = desc[allowed].next_up();
        let hits = |scores: &[f32]| scores.iter().filter(|&&s| s >= threshold).count() as u64;
        points.push(Point {
            max_fpr: a,
            threshold,
            fpr: Proportion::new(hits(real), n),
            tpr: fake.map(|f| Proportion::new(hits(f), f.len() as u64)),
        });
    }
    Ok(points)
}

impl Calibration {
    pub fn load(path: &Path) -> Result<Self, CalibrationError> {
        let err = |reason: String| CalibrationError::Read {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let c: Calibration = serde_json::from_str(&text).map_err(|e| err(e.to_string()))?;
        if c.schema_version != SCHEMA_VERSION {
            return Err(err(format!(
                "schema_version {} is not supported (this scanner reads {SCHEMA_VERSION})",
                c.schema_version
            )));
        }
        Ok(c)
    }

    /// Refuses a calibration made for another model, another version, or other weights.
    pub fn check(&self, file: &Path, manifest: &Manifest) -> Result<(), CalibrationError> {
        let m = &self.model;
        if m.name == manifest.name
            && m.version == manifest.version
            && m.sha256.eq_ignore_ascii_case(&manifest.sha256)
        {
            return Ok(());
        }
        Err(CalibrationError::OtherModel {
            file: file.to_path_buf(),
            made_for: m.describe(),
            this_run: CalibratedModel::of(manifest, "").describe(),
        })
    }

    /// The point `max_fpr` asks for; without it, the 5% point, or the only point there is.
    pub fn pick(&self, file: &Path, max_fpr: Option<f64>) -> Result<&Point, CalibrationError> {
        let find = |a: f64| self.points.iter().find(|p| (p.max_fpr - a).abs() < 1e-6);
        let found = match max_fpr {
            Some(a) => find(a),
            None => find(DEFAULT_MAX_FPR).or(match self.points.as_slice() {
                [only] => Some(only),
                _ => None,
            }),
        };
        found.ok_or_else(|| CalibrationError::NoPoint {
            file: file.to_path_buf(),
            max_fpr: max_fpr.unwrap_or(DEFAULT_MAX_FPR),
            known: self
                .points
                .iter()
                .map(|p| p.max_fpr.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_of_three_sets_the_minimum() {
        assert_eq!(required_real(0.05), 60);
        assert_eq!(required_real(0.01), 300);
        assert_eq!(required_real(0.10), 30);
        assert_eq!(required_real(0.2), 15);
    }

    #[test]
    fn picks_the_lowest_threshold_that_keeps_the_rate() {
        // 20 reals scored 0.01..0.20; at 15%, 3 may be at or above: the threshold is just
        // above the fourth highest, 0.17.
        let real: Vec<f32> = (1..=20).map(|i| i as f32 / 100.0).collect();
        let p = &fit(&real, Some(&[0.5, 0.185, 0.1]), &[0.15]).unwrap()[0];
        assert_eq!(p.threshold, 0.17f32.next_up());
        assert_eq!((p.fpr.k, p.fpr.n), (3, 20));
        assert_eq!(p.tpr.unwrap().k, 2);
        let e = fit(&real, None, &[0.05]).unwrap_err().to_string();
        assert!(
            e.contains("at least 60 real images") && e.contains("there are 20"),
            "{e}"
        );
    }
}
