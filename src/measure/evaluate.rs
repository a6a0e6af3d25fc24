//! Scoring a detector against labels: verdict rows plus a [`LabelledSet`] become, per model and
//! per subset, the class counts, ROC-AUC, average precision, and accuracy, TPR and FPR at the
//! run's threshold and at every operating point the model (or a calibration) names.
//!
//! Rows that are not `ok` (undecodable, unreadable) have no score: they are counted per subset
//! and reported, never scored as either class.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::measure::labelled::LabelledSet;
use crate::measure::metrics::{self, AtThreshold, Curve, Histogram};

/// What evaluation needs of a verdict row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub path: String,
    pub status: String,
    /// One per model, in [`ModelInfo`] order.
    pub scores: Vec<Option<f32>>,
}

/// A named threshold to report figures at.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// E.g. `threshold (manifest)`, `manifest max_fpr 0.01`, `calibration max_fpr 0.05`.
    pub name: String,
    pub threshold: f32,
}

/// A model as evaluation sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    pub precision: String,
    /// The run's threshold and where it came from (`--threshold`, `calibration`, `manifest`).
    pub threshold: f32,
    pub threshold_source: String,
    /// The operating points to report besides the threshold.
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub models: Vec<ModelEvaluation>,
    /// Rows by status, over the whole set.
    pub by_status: BTreeMap<String, u64>,
    /// Rows that no label covers (verdicts outside the labels CSV).
    pub unlabelled: u64,
    /// Labelled files that have no row (labels CSV entries missing from a verdict dataset).
    pub missing: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelEvaluation {
    #[serde(flatten)]
    pub model: ModelInfo,
    /// `all` first, then each subset by name (when the set has subsets).
    pub subsets: Vec<SubsetEvaluation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubsetEvaluation {
    pub subset: String,
    pub n_real: u64,
    pub n_fake: u64,
    /// Rows of this subset without a score (error statuses), not counted above.
    pub errors: u64,
    pub roc_auc: Option<f64>,
    pub average_precision: Option<f64>,
    pub at: Vec<PointEvaluation>,
    /// What the charts of `eval --html` draw; left out of the JSON, which carries figures.
    #[serde(skip)]
    pub curves: Curves,
}

/// The score distributions and curves of one subset.
#[derive(Debug, Clone, Default)]
pub struct Curves {
    pub real: Histogram,
    pub fake: Histogram,
    /// (FPR, TPR).
    pub roc: Curve,
    /// (recall, precision).
    pub pr: Curve,
}

#[derive(Debug, Clone, Serialize)]
pub struct PointEvaluation {
    pub point: String,
    #[serde(flatten)]
    pub figures: AtThreshold,
}

pub const ALL: &str = "all";

#[derive(Default)]
struct Scores {
    real: Vec<f32>,
    fake: Vec<f32>,
    errors: u64,
}

/// Matches rows to labels and computes every figure.
pub fn evaluate(rows: &[Row], set: &LabelledSet, models: &[ModelInfo]) -> Evaluation {
    let matcher = set.matcher();
    let mut by_status = BTreeMap::new();
    let mut unlabelled = 0;
    // Per model: subset → scores; `all` is filled alongside.
    let mut groups: Vec<BTreeMap<String, Scores>> =
        models.iter().map(|_| BTreeMap::new()).collect();
    let mut covered = std::collections::HashSet::new();
    for row in rows {
        *by_status.entry(row.status.clone()).or_insert(0) += 1;
        let Some(root) = matcher.find(std::path::Path::new(&row.path)) else {
            unlabelled += 1;
            continue;
        };
        covered.insert(crate::measure::labelled::normalize(std::path::Path::new(
            &row.path,
        )));
        for (m, subsets) in groups.iter_mut().enumerate() {
            let score = row
                .scores
                .get(m)
                .copied()
                .flatten()
                .filter(|_| row.status == "ok");
            let mut keys = vec![ALL.to_string()];
            if set.has_subsets() {
                keys.push(root.subset.clone());
            }
            for key in keys {
                let g = subsets.entry(key).or_default();
                match (score, root.fake) {
                    (Some(s), true) => g.fake.push(s),
                    (Some(s), false) => g.real.push(s),
                    (None, _) => g.errors += 1,
                }
            }
        }
    }
    // Only a CSV names files one by one; a folder has no expected count.
    let missing = set
        .roots
        .iter()
        .filter(|r| r.listed)
        .filter(|r| !covered.contains(&crate::measure::labelled::normalize(&r.path)))
        .count() as u64;

    let models = models
        .iter()
        .zip(groups)
        .map(|(info, mut subsets)| {
            let mut order: Vec<String> = vec![ALL.to_string()];
            order.extend(subsets.keys().filter(|k| *k != ALL).cloned());
            let subsets = order
                .into_iter()
                .map(|name| {
                    let g = subsets.remove(&name).unwrap_or_default();
                    subset_figures(name, &g, info)
                })
                .collect();
            ModelEvaluation {
                model: info.clone(),
                subsets,
            }
        })
        .collect();
    Evaluation {
        models,
        by_status,
        unlabelled,
        missing,
    }
}

fn subset_figures(subset: String, g: &Scores, info: &ModelInfo) -> SubsetEvaluation {
    let mut at = vec![PointEvaluation {
        point: format!("threshold ({})", info.threshold_source),
        figures: metrics::at_threshold(&g.real, &g.fake, info.threshold),
    }];
    at.extend(info.points.iter().map(|p| PointEvaluation {
        point: p.name.clone(),
        figures: metrics::at_threshold(&g.real, &g.fake, p.threshold),
    }));
    SubsetEvaluation {
        subset,
        n_real: g.real.len() as u64,
        n_fake: g.fake.len() as u64,
        errors: g.errors,
        roc_auc: metrics::roc_auc(&g.real, &g.fake),
        average_precision: metrics::average_precision(&g.real, &g.fake),
        at,
        curves: Curves {
            real: Histogram::of(&g.real),
            fake: Histogram::of(&g.fake),
            roc: metrics::roc_curve(&g.real, &g.fake),
            pr: metrics::pr_curve(&g.real, &g.fake),
        },
    }
}

fn opt3(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn rate(p: &metrics::Proportion) -> String {
    match (p.rate, p.ci95) {
        (Some(r), Some([lo, hi])) => format!("{r:.3} [{lo:.3}, {hi:.3}]"),
        _ => "-".into(),
    }
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, m) in self.models.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            let info = &m.model;
            writeln!(
                f,
                "{} {} ({}); threshold {:.4} ({})",
                info.name, info.version, info.precision, info.threshold, info.threshold_source
            )?;
            let sw = m
                .subsets
                .iter()
                .map(|s| s.subset.len())
                .chain(["subset".len()])
                .max()
                .unwrap_or_default();
            writeln!(
                f,
                "{:<sw$}  {:>6} {:>6} {:>6}  {:>7} {:>6}",
                "subset", "real", "fake", "errors", "ROC-AUC", "AP"
            )?;
            for s in &m.subsets {
                writeln!(
                    f,
                    "{:<sw$}  {:>6} {:>6} {:>6}  {:>7} {:>6}",
                    s.subset,
                    s.n_real,
                    s.n_fake,
                    s.errors,
                    opt3(s.roc_auc),
                    opt3(s.average_precision)
                )?;
            }
            writeln!(f)?;
            let pw = m
                .subsets
                .first()
                .map(|s| s.at.iter().map(|p| p.point.len()).max().unwrap_or(0))
                .unwrap_or(0)
                .max("at".len());
            writeln!(
                f,
                "{:<sw$}  {:<pw$}  {:>9}  {:<22} {:<22} FPR [95% CI]",
                "subset", "at", "threshold", "accuracy [95% CI]", "TPR [95% CI]"
            )?;
            for s in &m.subsets {
                for p in &s.at {
                    let t = &p.figures;
                    writeln!(
                        f,
                        "{:<sw$}  {:<pw$}  {:>9.4}  {:<22} {:<22} {}",
                        s.subset,
                        p.point,
                        t.threshold,
                        rate(&t.accuracy),
                        rate(&t.tpr),
                        rate(&t.fpr)
                    )?;
                }
            }
        }
        let errors: Vec<String> = self
            .by_status
            .iter()
            .filter(|(s, _)| s.as_str() != "ok")
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        if !errors.is_empty() {
            writeln!(f, "\nnot scored: {}", errors.join(", "))?;
        }
        if self.unlabelled > 0 {
            writeln!(f, "rows without a label (ignored): {}", self.unlabelled)?;
        }
        if self.missing > 0 {
            writeln!(f, "labelled files without a row: {}", self.missing)?;
        }
        Ok(())
    }
}
