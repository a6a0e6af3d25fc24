//! `synthscan eval`: score labelled images with the same pipeline as `scan` (or read the rows of
//! an earlier scan) and print how well the models tell the classes apart.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use arrow::array::Array;
use clap::Args;

use super::scan::progress_bar;
use super::{
    build_pipeline, resolve_models, run_until_done, usage, ModelChoice, ModelOptions,
    PipelineOptions, RunConfig, ThresholdOptions, WalkArgs,
};
use crate::measure::evaluate::{self, ModelInfo, Point, Row};
use crate::measure::labelled::{self, LabelledSet};
use crate::model::manifest::{Manifest, ThresholdChoice};
use crate::pipeline::run_metadata::{self, ModelRecord};
use crate::pipeline::{Observer, Pipeline, Source};
use crate::report::{self, Breakdown, Sample};
use crate::sink::{self, Format, Sink};
use crate::source::walk;
use crate::verdict::{column, column_stem, reader, Label, ModelColumn, Verdict};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Labelled images: a folder holding real/ and fake/ (or 0_real/ and 1_fake/), a folder of
    /// such folders at any depth (each one a subset, e.g. one per generator), or a labels CSV
    /// (file_name,label[,generator]; label 0/1 or real/fake; paths relative to the CSV).
    #[arg(value_name = "PATH", required_unless_present = "verdicts")]
    pub paths: Vec<PathBuf>,
    /// Evaluate an existing verdict dataset (a Parquet file or a folder of parts) against
    /// --labels, without scoring anything again.
    #[arg(
        long,
        value_name = "DATASET",
        requires = "labels",
        conflicts_with = "paths"
    )]
    pub verdicts: Option<PathBuf>,
    /// The labels CSV for --verdicts.
    #[arg(long, value_name = "CSV", requires = "verdicts")]
    pub labels: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    #[command(flatten)]
    pub thresholds: ThresholdOptions,
    #[command(flatten)]
    pub pipeline: PipelineOptions,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Also keep the scored rows, as Parquet (the same file `scan --out` writes).
    #[arg(short, long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the figures as one self-contained HTML page: score histograms, ROC and
    /// precision-recall curves with the operating points, the fake rate by format, JPEG quality,
    /// image size and folder.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

pub fn run(args: EvalArgs, quiet: bool) -> Result<ExitCode> {
    let config = RunConfig::resolve(&args.model, &args.thresholds, &args.pipeline)?;
    let (evaluation, breakdown, interrupted) = match (&args.verdicts, &args.labels) {
        (Some(dataset), Some(labels)) => {
            let evaluation = from_verdicts(dataset, labels, &config.models)?;
            // The dataset's own rows carry format, size and folder; only the page shows them.
            let breakdown = match &args.html {
                Some(_) => Some(report::summarize(dataset).map_err(usage)?.breakdown),
                None => None,
            };
            (evaluation, breakdown, false)
        }
        _ => {
            let (evaluation, breakdown, interrupted) = score(&args, config, quiet)?;
            (evaluation, Some(breakdown), interrupted)
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluation)?);
    } else {
        print!("{evaluation}");
    }
    if let Some(path) = &args.html {
        let page = report::html::eval_page(&evaluation, breakdown.as_ref())?;
        std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if interrupted {
        eprintln!("interrupted: the figures cover the files scored before the stop");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// Scores the labelled set with the pipeline, exactly as `scan` would, and evaluates the rows;
/// also breaks the scanner's labels down by format, size and folder.
fn score(
    args: &EvalArgs,
    config: RunConfig,
    quiet: bool,
) -> Result<(evaluate::Evaluation, Breakdown, bool)> {
    let set = LabelledSet::discover(&args.paths).map_err(usage)?;
    if let Some(out) = &args.out {
        sink::check_writable(out).map_err(usage)?;
    }
    let walk_opts = args
        .walk
        .options(set.roots.iter().map(|r| r.path.clone()).collect());
    let source: Source = Box::new(move |emit| walk::walk(&walk_opts, emit));
    let calibration_points = calibration_points(&config.models);
    let pipeline = build_pipeline(config, quiet)?;
    let models: Vec<ModelInfo> = pipeline
        .manifests()
        .zip(pipeline.columns())
        .zip(pipeline.threshold_sources())
        .map(|((m, c), s)| model_info(m, c, &s.to_string(), &calibration_points))
        .collect();
    let table = pipeline.table().clone();
    let labels = table.clone();
    let breakdown = Arc::new(Mutex::new(Breakdown::default()));
    let sink: Box<dyn Sink> = match &args.out {
        Some(path) => sink::create(Format::Parquet, path, table)?,
        None => Box::new(sink::Discard),
    };

    let show_progress = !quiet && !args.no_progress && std::io::stderr().is_terminal();
    let kept = breakdown.clone();
    let (rows, interrupted) = score_rows(pipeline, source, sink, show_progress, quiet, move |v| {
        if let Some((label, _)) = labels.final_label(v) {
            let m = &v.meta;
            kept.lock().expect("no panics while held").add(&Sample {
                path: &m.path,
                format: m.format,
                jpeg_quality: m.jpeg_quality,
                width: m.width,
                height: m.height,
                fake: label == Label::Fake,
            });
        }
        Row {
            path: v.meta.path.clone(),
            status: v.status.as_str().to_string(),
            scores: v.scores.clone(),
        }
    })?;
    let mut breakdown = std::mem::take(&mut *breakdown.lock().expect("no panics while held"));
    breakdown.finish();
    Ok((
        evaluate::evaluate(&rows, &set, &models),
        breakdown,
        interrupted,
    ))
}

/// Runs the pipeline to its end with the progress bar, keeping `keep(row)` of every row, and
/// prints the run's summary. Returns the kept values and whether the run was interrupted.
pub(super) fn score_rows<T: Send + 'static>(
    pipeline: Pipeline,
    source: Source,
    sink: Box<dyn Sink>,
    show_progress: bool,
    quiet: bool,
    keep: impl Fn(&Verdict) -> T + Send + 'static,
) -> Result<(Vec<T>, bool)> {
    let rows = Arc::new(Mutex::new(Vec::new()));
    let bar = progress_bar(show_progress);
    let observer: Observer = {
        let (rows, bar) = (rows.clone(), bar.clone());
        Box::new(move |v, discovered| {
            bar.set_length(discovered);
            bar.inc(1);
            rows.lock().expect("no panics while held").push(keep(v));
        })
    };
    let stop = Arc::new(AtomicBool::new(false));
    let summary = run_until_done(pipeline, source, sink, stop.clone(), observer)?;
    bar.finish_and_clear();
    if !quiet {
        eprintln!("{summary}");
    }
    let rows = std::mem::take(&mut *rows.lock().expect("no panics while held"));
    Ok((rows, stop.load(Ordering::Relaxed)))
}

/// The calibration's points, for the model it was made for.
fn calibration_points(choice: &ModelChoice) -> Option<(String, Vec<Point>)> {
    let (_, c) = choice.calibration.as_ref()?;
    let points = c
        .points
        .iter()
        .map(|p| Point {
            name: format!("calibration max_fpr {}", p.max_fpr),
            threshold: p.threshold,
        })
        .collect();
    Some((c.model.name.clone(), points))
}

fn model_info(
    manifest: &Manifest,
    column: &ModelColumn,
    source: &str,
    calibration: &Option<(String, Vec<Point>)>,
) -> ModelInfo {
    let mut points: Vec<Point> = manifest
        .operating_points
        .iter()
        .map(|p| Point {
            name: format!("manifest max_fpr {}", p.max_fpr),
            threshold: p.threshold,
        })
        .collect();
    if let Some((_, cal)) = calibration.as_ref().filter(|(m, _)| *m == manifest.name) {
        points.extend(cal.iter().cloned());
    }
    ModelInfo {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        precision: column.precision.clone(),
        threshold: column.threshold,
        threshold_source: source.to_string(),
        points,
    }
}

/// A relative path made absolute against the current folder, without `.` parts, so that rows
/// written from the current folder match labels however either names them.
fn absolute(path: &Path) -> PathBuf {
    let path = match std::env::current_dir() {
        Ok(cwd) if path.is_relative() => cwd.join(path),
        _ => path.to_path_buf(),
    };
    labelled::normalize(&path)
}

/// Evaluates the rows of an earlier scan against a labels CSV. The models are the dataset's
/// (its `models` column), their manifests found as `--model` would find them, so that the
/// threshold options and operating points mean what they mean for a scan.
fn from_verdicts(
    dataset: &Path,
    labels: &Path,
    choice: &ModelChoice,
) -> Result<evaluate::Evaluation> {
    let roots = labelled::read_csv(labels).map_err(usage)?;
    let set = LabelledSet {
        roots: roots
            .into_iter()
            .map(|mut r| {
                r.path = absolute(&r.path);
                r
            })
            .collect(),
    };
    let files = reader::dataset_files(dataset).map_err(usage)?;
    let scored = read_scored(dataset, &files)?;
    let (rows, dataset_models, precision) = (scored.rows, scored.models, scored.precision);
    let Some(dataset_models) = dataset_models else {
        return Err(usage(format!("{}: no rows", dataset.display())));
    };
    // The models are the dataset's; --model only says where their manifests are.
    let refs = if choice.refs == [crate::model::manifest::DEFAULT_MODEL] {
        dataset_models.iter().map(|(n, _)| n.clone()).collect()
    } else {
        choice.refs.clone()
    };
    let lookup = ModelChoice {
        refs,
        ..choice.clone()
    };
    let entries = resolve_models(&lookup)?;
    for ((name, version), entry) in dataset_models.iter().zip(&entries) {
        let m = &entry.manifest;
        if *name != m.name || *version != m.version {
            return Err(usage(format!(
                "{} was scored by {name} {version}, but the manifest found is {} {}: pass the matching one with --model",
                dataset.display(),
                m.name,
                m.version
            )));
        }
    }
    if entries.len() != dataset_models.len() {
        return Err(usage(format!(
            "{} was scored by {}: name the same models with --model",
            dataset.display(),
            models_text(&dataset_models)
        )));
    }
    let thresholds: ThresholdChoice = lookup.thresholds_for(&entries)?;
    let recorded = recorded_precisions(&files[0]);
    let calibration_points = calibration_points(choice);
    let mut models = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let (threshold, source) = thresholds.pick(&entry.manifest).map_err(usage)?;
        let column = ModelColumn {
            name: entry.manifest.name.clone(),
            version: entry.manifest.version.clone(),
            threshold,
            precision: recorded
                .get(i)
                .cloned()
                .unwrap_or_else(|| precision.clone()),
        };
        models.push(model_info(
            &entry.manifest,
            &column,
            &source.to_string(),
            &calibration_points,
        ));
    }
    Ok(evaluate::evaluate(&rows, &set, &models))
}

/// What `eval --verdicts` takes from a dataset: the rows, the models that scored them (name and
/// version, as the `models` column records them) and their precision.
struct Scored {
    rows: Vec<Row>,
    models: Option<Vec<(String, String)>>,
    precision: String,
}

fn read_scored(dataset: &Path, files: &[PathBuf]) -> Result<Scored> {
    let mut scored = Scored {
        rows: Vec::new(),
        models: None,
        precision: String::new(),
    };
    for file in files {
        for batch in reader::read_batches(file, None).map_err(usage)? {
            let batch = batch.map_err(usage)?;
            let (path, status, models) = (
                batch.text(column::PATH).map_err(usage)?,
                batch.text(column::STATUS).map_err(usage)?,
                batch.text(column::MODELS).map_err(usage)?,
            );
            if batch.num_rows() == 0 {
                continue;
            }
            let named = parse_models(models.value(0));
            match &scored.models {
                None => scored.models = Some(named.clone()),
                Some(m) if *m != named => {
                    return Err(usage(format!(
                        "{}: the dataset mixes rows of different models ({} and {})",
                        dataset.display(),
                        models_text(m),
                        models_text(&named)
                    )))
                }
                Some(_) => {}
            }
            if scored.precision.is_empty() {
                let precision = batch.text(column::PRECISION).map_err(usage)?;
                scored.precision = precision.value(0).to_string();
            }
            let score_columns = named
                .iter()
                .map(|(name, _)| {
                    let stem = format!("{}{}", column::SCORE_PREFIX, column_stem(name));
                    batch.f32(&stem).map_err(usage)
                })
                .collect::<Result<Vec<_>>>()?;
            for i in 0..batch.num_rows() {
                scored.rows.push(Row {
                    path: absolute(Path::new(path.value(i))).display().to_string(),
                    status: status.value(i).to_string(),
                    scores: score_columns
                        .iter()
                        .map(|c| c.is_valid(i).then(|| c.value(i)))
                        .collect(),
                });
            }
        }
    }
    Ok(scored)
}

/// Each model's precision as the file's metadata records it (empty for older files).
fn recorded_precisions(file: &Path) -> Vec<String> {
    run_metadata::read(file)
        .ok()
        .and_then(|kv| {
            let models = kv.get(run_metadata::MODELS)?;
            serde_json::from_str::<Vec<ModelRecord>>(models).ok()
        })
        .map(|records| records.into_iter().map(|r| r.precision).collect())
        .unwrap_or_default()
}

/// `name@version,name@version` as the `models` column writes it.
fn parse_models(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|m| match m.rsplit_once('@') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => (m.to_string(), String::new()),
        })
        .collect()
}

fn models_text(models: &[(String, String)]) -> String {
    models
        .iter()
        .map(|(n, v)| format!("{n} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
