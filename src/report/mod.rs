//! Summarizing any verdict dataset: one file, or a folder of parts (sharded scans, watch output).
//!
//! Besides counts, it breaks the fake rate down by file format, JPEG quality, image size and
//! folder, because those are where detectors are most often biased: a model that calls every
//! heavily compressed JPEG "real" shows it here before it misleads anyone.
//!
//! [`html`] turns a summary (or an evaluation) into one self-contained page of charts.

pub mod charts;
pub mod html;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use arrow::array::{
    Array, BooleanArray, Float32Array, StringArray, TimestampMillisecondArray, UInt32Array,
    UInt8Array,
};
use serde::Serialize;

use crate::measure::metrics::Histogram;
use crate::pipeline::run_metadata::{self, ModelRecord};
use crate::verdict::reader::{self, Batch, ReadError};
use crate::verdict::{column, Label};

/// Fake and total counts for one group of rows.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Rate {
    pub scored: u64,
    pub fake: u64,
}

impl Rate {
    fn add(&mut self, fake: bool) {
        self.scored += 1;
        self.fake += u64::from(fake);
    }

    pub fn fraction(&self) -> f64 {
        self.fake as f64 / (self.scored.max(1)) as f64
    }
}

/// Rows with one kind of provenance, and how many of them declare AI generation.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Declared {
    pub rows: u64,
    pub ai: u64,
}

/// What one labelled row contributes to a [`Breakdown`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub path: &'a str,
    pub format: Option<&'a str>,
    pub jpeg_quality: Option<u8>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub fake: bool,
}

/// The fake rate of the labelled rows by the properties detectors are biased by.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Breakdown {
    pub by_format: BTreeMap<String, Rate>,
    pub by_jpeg_quality: BTreeMap<String, Rate>,
    /// By the longer side of the image, in pixels.
    pub by_size: BTreeMap<String, Rate>,
    /// By the first folder below the folder that all rows share (`.` for files directly in it).
    pub by_folder: BTreeMap<String, Rate>,
    /// By each row's parent folder, until [`Breakdown::finish`] folds them into `by_folder`:
    /// the shared folder is known only once every row is in.
    #[serde(skip)]
    parents: BTreeMap<PathBuf, Rate>,
}

impl Breakdown {
    pub fn add(&mut self, s: &Sample) {
        let entry = |map: &mut BTreeMap<String, Rate>, key: &str| {
            map.entry(key.to_string()).or_default().add(s.fake)
        };
        entry(&mut self.by_format, s.format.unwrap_or("unknown"));
        if let Some(q) = s.jpeg_quality {
            let band = match q {
                0..=69 => "q < 70",
                70..=89 => "q 70-89",
                _ => "q >= 90",
            };
            entry(&mut self.by_jpeg_quality, band);
        }
        if let (Some(w), Some(h)) = (s.width, s.height) {
            let band = match w.max(h) {
                0..=511 => "< 512 px",
                512..=1023 => "512-1023 px",
                1024..=2047 => "1024-2047 px",
                _ => ">= 2048 px",
            };
            entry(&mut self.by_size, band);
        }
        let parent = Path::new(s.path).parent().unwrap_or(Path::new(""));
        self.parents
            .entry(parent.to_path_buf())
            .or_default()
            .add(s.fake);
    }

    /// Folds the rows' parent folders into `by_folder`.
    pub fn finish(&mut self) {
        let parents = std::mem::take(&mut self.parents);
        let Some(first) = parents.keys().next() else {
            return;
        };
        let mut shared: Vec<Component> = first.components().collect();
        for p in parents.keys() {
            let same = shared
                .iter()
                .zip(p.components())
                .take_while(|(a, b)| *a == b)
                .count();
            shared.truncate(same);
        }
        for (parent, rate) in &parents {
            let top = parent.components().nth(shared.len()).map_or_else(
                || ".".to_string(),
                |c| c.as_os_str().to_string_lossy().into(),
            );
            let entry = self.by_folder.entry(top).or_default();
            entry.scored += rate.scored;
            entry.fake += rate.fake;
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub files: Vec<PathBuf>,
    pub rows: u64,
    pub distinct_paths: u64,
    pub by_status: BTreeMap<String, u64>,
    /// Per model (the part of `label_<model>` after the prefix).
    pub models: BTreeMap<String, Rate>,
    pub combined: Rate,
    /// Per model, the scores of its scored rows.
    pub score_histograms: BTreeMap<String, Histogram>,
    #[serde(flatten)]
    pub breakdown: Breakdown,
    /// Rows per provenance kind (`none`: read, nothing declared; `not read`: the file could
    /// not be read or provenance was off). Empty for datasets written before the column.
    pub by_provenance: BTreeMap<String, Declared>,
    /// First and last `scanned_at`, milliseconds.
    pub span_ms: Option<(i64, i64)>,
    /// What the run that wrote the first file recorded about itself (see
    /// [`crate::pipeline::run_metadata`]); empty for files written before the scanner recorded it.
    pub metadata: BTreeMap<String, String>,
    /// Files whose recorded run differs from `metadata`'s (parts of different runs).
    pub metadata_differs: u64,
}

/// Reads a dataset (one verdict file, or a folder of parts) and summarizes it.
pub fn summarize(path: &Path) -> Result<Report, ReadError> {
    let mut report = Report::default();
    let mut paths = BTreeSet::new();
    for file in reader::dataset_files(path)? {
        for batch in reader::read_batches(&file, None)? {
            add_batch(&mut report, &mut paths, &batch?)?;
        }
        let metadata = run_metadata::read(&file).map_err(|reason| ReadError::Parquet {
            path: file.clone(),
            reason,
        })?;
        if report.metadata.is_empty() {
            report.metadata = metadata;
        } else if metadata != report.metadata {
            report.metadata_differs += 1;
        }
        report.files.push(file);
    }
    report.distinct_paths = paths.len() as u64;
    report.breakdown.finish();
    Ok(report)
}

/// The columns a summary reads from one batch.
struct Columns<'a> {
    path: &'a StringArray,
    status: &'a StringArray,
    label: &'a StringArray,
    format: &'a StringArray,
    quality: &'a UInt8Array,
    width: &'a UInt32Array,
    height: &'a UInt32Array,
    scanned: &'a TimestampMillisecondArray,
    /// Absent from datasets written before provenance was read.
    provenance: Option<(&'a StringArray, &'a BooleanArray)>,
    /// Per model (the part of the column name after the prefix): its labels and its scores.
    models: Vec<(String, &'a StringArray, Option<&'a Float32Array>)>,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a Batch) -> Result<Self, ReadError> {
        let models = batch
            .names_after(column::LABEL_PREFIX)
            .into_iter()
            .map(|m| {
                let labels = batch.text(&format!("{}{m}", column::LABEL_PREFIX))?;
                let scores = batch.f32(&format!("{}{m}", column::SCORE_PREFIX)).ok();
                Ok((m, labels, scores))
            })
            .collect::<Result<_, ReadError>>()?;
        let provenance = match (
            batch.text_opt(column::PROVENANCE)?,
            batch.bool_opt(column::PROVENANCE_AI)?,
        ) {
            (Some(kind), Some(ai)) => Some((kind, ai)),
            _ => None,
        };
        Ok(Columns {
            path: batch.text(column::PATH)?,
            status: batch.text(column::STATUS)?,
            label: batch.text(column::LABEL)?,
            format: batch.text(column::FORMAT)?,
            quality: batch.u8(column::JPEG_QUALITY)?,
            width: batch.u32(column::WIDTH)?,
            height: batch.u32(column::HEIGHT)?,
            scanned: batch.time(column::SCANNED_AT)?,
            provenance,
            models,
        })
    }
}

fn add_batch(
    report: &mut Report,
    paths: &mut BTreeSet<String>,
    batch: &Batch,
) -> Result<(), ReadError> {
    let c = Columns::of(batch)?;
    for i in 0..batch.num_rows() {
        add_row(report, paths, &c, i);
    }
    Ok(())
}

fn add_row(report: &mut Report, paths: &mut BTreeSet<String>, c: &Columns, i: usize) {
    report.rows += 1;
    paths.insert(c.path.value(i).to_string());
    *report
        .by_status
        .entry(c.status.value(i).to_string())
        .or_default() += 1;
    let t = c.scanned.value(i);
    report.span_ms = Some(match report.span_ms {
        Some((a, b)) => (a.min(t), b.max(t)),
        None => (t, t),
    });
    if let Some((kind, ai)) = c.provenance {
        let key = match (kind.is_valid(i), ai.is_valid(i)) {
            (true, _) => kind.value(i),
            (false, true) => "none",
            (false, false) => "not read",
        };
        let entry = report.by_provenance.entry(key.to_string()).or_default();
        entry.rows += 1;
        entry.ai += u64::from(ai.is_valid(i) && ai.value(i));
    }
    for (model, labels, scores) in &c.models {
        if labels.is_valid(i) {
            report
                .models
                .entry(model.clone())
                .or_default()
                .add(Label::parse(labels.value(i)) == Some(Label::Fake));
        }
        if let Some(scores) = scores.filter(|s| s.is_valid(i)) {
            report
                .score_histograms
                .entry(model.clone())
                .or_default()
                .add(scores.value(i));
        }
    }
    if !c.label.is_valid(i) {
        return;
    }
    let fake = Label::parse(c.label.value(i)) == Some(Label::Fake);
    report.combined.add(fake);
    let valid = |a: &dyn Array| a.is_valid(i);
    report.breakdown.add(&Sample {
        path: c.path.value(i),
        format: valid(c.format).then(|| c.format.value(i)),
        jpeg_quality: valid(c.quality).then(|| c.quality.value(i)),
        width: valid(c.width).then(|| c.width.value(i)),
        height: valid(c.height).then(|| c.height.value(i)),
        fake,
    });
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pct = |r: &Rate| format!("{:5.1}% fake of {}", 100.0 * r.fraction(), r.scored);
        writeln!(
            f,
            "{} rows in {} file(s), {} distinct paths",
            self.rows,
            self.files.len(),
            self.distinct_paths
        )?;
        if self.distinct_paths < self.rows {
            writeln!(
                f,
                "note: {} rows repeat a path (a file rescanned after it changed, or overlapping scans)",
                self.rows - self.distinct_paths
            )?;
        }
        self.fmt_metadata(f)?;
        let statuses: Vec<String> = self
            .by_status
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        writeln!(f, "status: {}", statuses.join(", "))?;
        writeln!(f, "combined verdict: {}", pct(&self.combined))?;
        for (model, rate) in &self.models {
            writeln!(f, "  model {model}: {}", pct(rate))?;
        }
        for (name, group) in [
            ("format", &self.breakdown.by_format),
            ("JPEG quality", &self.breakdown.by_jpeg_quality),
            ("image size", &self.breakdown.by_size),
            ("folder", &self.breakdown.by_folder),
        ] {
            if !group.is_empty() {
                writeln!(f, "by {name}:")?;
                for (k, rate) in group {
                    writeln!(f, "  {k:<10} {}", pct(rate))?;
                }
            }
        }
        if !self.by_provenance.is_empty() {
            writeln!(f, "by provenance:")?;
            for (kind, d) in &self.by_provenance {
                writeln!(f, "  {kind:<13} {:>6} rows, {} declare AI", d.rows, d.ai)?;
            }
        }
        if let Some((a, b)) = self.span_ms {
            let secs = (b - a) as f64 / 1000.0;
            if secs > 0.0 {
                write!(
                    f,
                    "scanned over {secs:.1}s ({:.1} rows/s)",
                    self.rows as f64 / secs
                )?;
            }
        }
        Ok(())
    }
}

impl Report {
    /// The run that wrote the dataset: version, command line, models and threshold.
    fn fmt_metadata(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kv = &self.metadata;
        if kv.is_empty() {
            return writeln!(
                f,
                "written by: not recorded (a file from before synthscan recorded its runs)"
            );
        }
        let get = |k: &str| kv.get(k).map_or("?", String::as_str);
        let command = kv
            .get(run_metadata::COMMAND)
            .and_then(|c| serde_json::from_str::<Vec<String>>(c).ok())
            .map_or_else(|| get(run_metadata::COMMAND).to_string(), |c| c.join(" "));
        writeln!(
            f,
            "written by synthscan {}: {command}",
            get(run_metadata::VERSION)
        )?;
        let models: Vec<ModelRecord> = kv
            .get(run_metadata::MODELS)
            .and_then(|m| serde_json::from_str(m).ok())
            .unwrap_or_default();
        for m in &models {
            let mut source = m.threshold_source.clone();
            if let Some(file) = &m.calibration {
                source = format!("{source} {file}");
            }
            if let Some(a) = m.max_fpr {
                source = format!("{source}, max_fpr {a}");
            }
            writeln!(
                f,
                "  model {} {} ({}, sha256 {}): threshold {:.4} ({source})",
                m.name,
                m.version,
                m.precision,
                m.sha256.get(..12).unwrap_or(&m.sha256),
                m.threshold
            )?;
        }
        if models.len() > 1 {
            writeln!(
                f,
                "  combined threshold {} ({})",
                get(run_metadata::THRESHOLD),
                get(run_metadata::THRESHOLD_SOURCE)
            )?;
        }
        if self.metadata_differs > 0 {
            writeln!(
                f,
                "note: {} file(s) were written by a run with other settings",
                self.metadata_differs
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{self, Format};
    use crate::verdict::{FileMeta, ModelColumn, Status, Table, Verdict};

    fn write_part(path: &Path, rows: &[Verdict]) {
        let table = Table::new(vec![ModelColumn::for_tests("m", 0.5)]);
        let mut sink = sink::create(Format::Parquet, path, table).unwrap();
        sink.write(rows).unwrap();
        sink.finish().unwrap();
    }

    fn scored(path: &str, format: &'static str, q: Option<u8>, score: f32) -> Verdict {
        let mut meta = FileMeta::new(path.into());
        meta.format = Some(format);
        meta.jpeg_quality = q;
        Verdict::scored(meta, vec![score])
    }

    #[test]
    fn summarizes_a_folder_of_parts_and_skips_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        write_part(
            &dir.path().join("part-0-of-2.parquet"),
            &[
                scored("a.jpg", "jpeg", Some(95), 0.9),
                scored("b.jpg", "jpeg", Some(60), 0.1),
            ],
        );
        write_part(
            &dir.path().join("part-1-of-2.parquet"),
            &[
                scored("c.png", "png", None, 0.7),
                Verdict::failed(FileMeta::new("d.jpg".into()), Status::DecodeError, "bad"),
            ],
        );
        std::fs::write(dir.path().join(".part-2.parquet.partial"), b"half").unwrap();
        std::fs::write(dir.path().join("_tmp.parquet"), b"half").unwrap();

        let r = summarize(dir.path()).unwrap();
        assert_eq!(r.files.len(), 2);
        assert_eq!((r.rows, r.distinct_paths), (4, 4));
        assert_eq!(r.by_status["ok"], 3);
        assert_eq!(r.by_status["decode_error"], 1);
        assert_eq!((r.combined.scored, r.combined.fake), (3, 2));
        assert_eq!(r.models["m"].fake, 2);
        let b = &r.breakdown;
        assert_eq!(b.by_format["jpeg"].scored, 2);
        assert_eq!(b.by_format["png"].fake, 1);
        assert_eq!(b.by_jpeg_quality["q >= 90"].fake, 1);
        assert_eq!(b.by_jpeg_quality["q < 70"].fake, 0);
        assert_eq!(r.score_histograms["m"].total(), 3);
        assert_eq!(r.score_histograms["m"].counts[18], 1, "0.9 in [0.90, 0.95)");
        assert!(r.to_string().contains("66.7% fake of 3"), "{r}");
    }

    #[test]
    fn counts_rows_by_provenance_and_declared_labels_count_as_fake() {
        use crate::provenance::{Declaration, Kind, Provenance};
        let declared = |kind, ai| Provenance {
            declaration: Some(Declaration {
                kind,
                generator: None,
                ai,
            }),
            ..Provenance::default()
        };
        let mut comfy = scored("a.png", "png", None, 0.1);
        comfy.meta.provenance = Some(declared(Kind::ComfyUi, true));
        let mut camera = scored("b.jpg", "jpeg", Some(90), 0.2);
        camera.meta.provenance = Some(declared(Kind::C2pa, false));
        let mut plain = scored("c.jpg", "jpeg", Some(90), 0.2);
        plain.meta.provenance = Some(Provenance::default());
        let unread = Verdict::failed(FileMeta::new("d.jpg".into()), Status::IoError, "gone");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.parquet");
        write_part(&path, &[comfy, camera, plain, unread]);

        let r = summarize(&path).unwrap();
        let counts: Vec<(&str, u64, u64)> = r
            .by_provenance
            .iter()
            .map(|(k, d)| (k.as_str(), d.rows, d.ai))
            .collect();
        assert_eq!(
            counts,
            vec![
                ("c2pa", 1, 0),
                ("comfyui", 1, 1),
                ("none", 1, 0),
                ("not read", 1, 0)
            ]
        );
        // The ComfyUI file scored 0.1 but declares itself generated.
        assert_eq!((r.combined.scored, r.combined.fake), (3, 1));
        assert!(r.to_string().contains("by provenance:"), "{r}");
    }

    #[test]
    fn breakdown_bands_sizes_and_folds_folders_below_the_shared_one() {
        let mut b = Breakdown::default();
        for (path, side, fake) in [
            ("/data/set/real/a.jpg", 300, false),
            ("/data/set/real/x/b.jpg", 800, true),
            ("/data/set/fake/c.png", 4000, true),
            ("/data/set/d.png", 1024, false),
        ] {
            b.add(&Sample {
                path,
                format: Some("png"),
                jpeg_quality: None,
                width: Some(10),
                height: Some(side),
                fake,
            });
        }
        b.finish();
        let rates = |m: &BTreeMap<String, Rate>| -> Vec<(String, u64, u64)> {
            m.iter()
                .map(|(k, r)| (k.clone(), r.scored, r.fake))
                .collect()
        };
        let row = |k: &str, n, f| (k.to_string(), n, f);
        assert_eq!(
            rates(&b.by_folder),
            vec![row(".", 1, 0), row("fake", 1, 1), row("real", 2, 1)]
        );
        assert_eq!(
            rates(&b.by_size),
            vec![
                row("1024-2047 px", 1, 0),
                row("512-1023 px", 1, 1),
                row("< 512 px", 1, 0),
                row(">= 2048 px", 1, 1)
            ]
        );
        assert!(b.by_jpeg_quality.is_empty());
    }

    #[test]
    fn a_missing_or_empty_dataset_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(summarize(dir.path()), Err(ReadError::Empty(_))));
        assert!(matches!(
            summarize(&dir.path().join("nope")),
            Err(ReadError::Missing(_))
        ));
    }
}
