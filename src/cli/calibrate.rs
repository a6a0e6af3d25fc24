//! `synthscan calibrate`: fit thresholds for target false-positive rates on the user's own real
//! images (see [`crate::measure::calibration`] for the rule), and write them to a calibration file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;

use super::eval::score_rows;
use super::{
    build_pipeline, calibrated_model, resolve_models, usage, ModelOptions, PipelineOptions,
    RunConfig, ThresholdOptions, WalkArgs,
};
use crate::measure::calibration::{self, Calibration, CalibrationError, DataSummary, FitData};
use crate::measure::labelled::{LabelledSet, Root};
use crate::pipeline::Source;
use crate::sink;
use crate::source::walk;
use crate::verdict::{now_ms, Status};

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Folders (or files) of real images from the source the thresholds are for.
    #[arg(required = true, value_name = "REAL_DIR")]
    pub real: Vec<PathBuf>,
    /// Folders of AI-generated images: the TPR at each threshold is reported and recorded.
    #[arg(long = "fake", value_name = "DIR")]
    pub fake: Vec<PathBuf>,
    /// Target share of real images called AI-generated; repeat for several thresholds. Needs at
    /// least ceil(3 / FPR) real images: 60 for 0.05, 300 for 0.01.
    #[arg(long = "max-fpr", required = true, value_name = "FPR")]
    pub max_fpr: Vec<f64>,
    /// The calibration file to write (JSON).
    #[arg(short, long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelOptions,
    #[command(flatten)]
    pub pipeline: PipelineOptions,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// What calibration keeps of a row.
struct Scored {
    path: String,
    score: Option<f32>,
    format: Option<&'static str>,
}

pub fn run(args: CalibrateArgs, quiet: bool) -> Result<ExitCode> {
    check_args(&args)?;
    let no_thresholds = ThresholdOptions {
        threshold: None,
        max_fpr: None,
        calibration: None,
    };
    let config = RunConfig::resolve(&args.model, &no_thresholds, &args.pipeline)?;
    let entry = resolve_models(&config.models)?.remove(0);

    // Too few real files can be told before any of them is decoded.
    let real_walk = args.walk.options(args.real.clone());
    let mut candidates = 0u64;
    walk::walk(&real_walk, |_| {
        candidates += 1;
        true
    });
    refuse_if_too_few(&args.max_fpr, candidates)?;

    let set = labelled_set(&args);
    let walk_opts = args
        .walk
        .options(set.roots.iter().map(|r| r.path.clone()).collect());
    let source: Source = Box::new(move |emit| walk::walk(&walk_opts, emit));
    sink::check_writable(&args.out).map_err(usage)?;
    let pipeline = build_pipeline(config, quiet)?;
    let precision = pipeline.columns()[0].precision.clone();

    let show_progress = !quiet && !args.no_progress && std::io::stderr().is_terminal();
    let (rows, interrupted) = score_rows(
        pipeline,
        source,
        Box::new(sink::Discard),
        show_progress,
        quiet,
        |v| Scored {
            path: v.meta.path.clone(),
            score: v
                .scores
                .first()
                .copied()
                .flatten()
                .filter(|_| v.status == Status::Ok),
            format: v.meta.format,
        },
    )?;
    if interrupted {
        eprintln!("interrupted: nothing written");
        return Ok(ExitCode::from(130));
    }

    let (real, fake, mut real_data, mut fake_data) = by_class(&rows, &set);
    refuse_if_too_few(&args.max_fpr, real.len() as u64)?;
    real_data.folders = absolute_all(&args.real);
    fake_data.folders = absolute_all(&args.fake);
    let has_fakes = !args.fake.is_empty();
    let points = calibration::fit(&real, has_fakes.then_some(fake.as_slice()), &args.max_fpr)
        .map_err(usage)?;
    let calibration = Calibration {
        schema_version: calibration::SCHEMA_VERSION,
        synthscan_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at_ms: now_ms(),
        model: calibrated_model(&entry, &precision),
        points,
        data: FitData {
            real: real_data,
            fake: has_fakes.then_some(fake_data),
        },
    };
    write_atomically(&args.out, &serde_json::to_vec_pretty(&calibration)?)?;
    print_points(&calibration);
    if !quiet {
        eprintln!("wrote {}", args.out.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Refusals that need nothing read.
fn check_args(args: &CalibrateArgs) -> Result<()> {
    if args.model.models.len() > 1 {
        return Err(usage(
            "calibrate fits one model at a time: name a single --model",
        ));
    }
    for &a in &args.max_fpr {
        if !(a > 0.0 && a < 1.0) {
            return Err(usage(CalibrationError::BadRate(a)));
        }
    }
    for p in args.real.iter().chain(&args.fake) {
        if std::fs::symlink_metadata(p).is_err() {
            return Err(usage(format!("{}: no such file or folder", p.display())));
        }
    }
    Ok(())
}

/// The real folders and the fake ones, as one labelled set.
fn labelled_set(args: &CalibrateArgs) -> LabelledSet {
    LabelledSet {
        roots: args
            .real
            .iter()
            .map(|p| (p, false))
            .chain(args.fake.iter().map(|p| (p, true)))
            .map(|(p, fake)| Root {
                path: p.clone(),
                fake,
                subset: String::new(),
                listed: false,
            })
            .collect(),
    }
}

/// The scores of each class, and what each class's data was.
fn by_class(rows: &[Scored], set: &LabelledSet) -> (Vec<f32>, Vec<f32>, DataSummary, DataSummary) {
    let matcher = set.matcher();
    let (mut real, mut fake) = (Vec::new(), Vec::new());
    let (mut real_data, mut fake_data) = (DataSummary::default(), DataSummary::default());
    for row in rows {
        let is_fake = matcher
            .find(std::path::Path::new(&row.path))
            .is_some_and(|r| r.fake);
        let (scores, data) = if is_fake {
            (&mut fake, &mut fake_data)
        } else {
            (&mut real, &mut real_data)
        };
        match row.score {
            Some(s) => {
                scores.push(s);
                data.images += 1;
                *data
                    .formats
                    .entry(row.format.unwrap_or("unknown").to_string())
                    .or_insert(0) += 1;
            }
            None => data.errors += 1,
        }
    }
    (real, fake, real_data, fake_data)
}

fn refuse_if_too_few(max_fprs: &[f64], real: u64) -> Result<()> {
    for &a in max_fprs {
        let needed = calibration::required_real(a);
        if real < needed {
            return Err(usage(CalibrationError::TooFew {
                max_fpr: a,
                needed,
                have: real,
            }));
        }
    }
    Ok(())
}

fn absolute_all(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| {
            p.canonicalize()
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        })
        .collect()
}

fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let (pending, mut file) = sink::PendingFile::create(path)?;
    std::io::Write::write_all(&mut file, bytes)
        .with_context(|| format!("writing {}", pending.tmp.display()))?;
    let file = file
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", pending.tmp.display()))?;
    pending.commit(file)?;
    Ok(())
}

fn print_points(c: &Calibration) {
    let m = &c.model;
    let d = &c.data;
    let fakes = d
        .fake
        .as_ref()
        .map_or(String::new(), |f| format!(", {} fake", f.images));
    println!(
        "{} {} ({}): {} real images{fakes}",
        m.name, m.version, m.precision, d.real.images
    );
    let formats: Vec<String> = d
        .real
        .formats
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    println!("real images by format: {}", formats.join(", "));
    println!(
        "{:>8}  {:>9}  {:<28} TPR [95% CI]",
        "max_fpr", "threshold", "FPR reached [95% CI]"
    );
    for p in &c.points {
        let rate = |p: &crate::measure::metrics::Proportion| match (p.rate, p.ci95) {
            (Some(r), Some([lo, hi])) => format!("{r:.3} [{lo:.3}, {hi:.3}]"),
            _ => "-".into(),
        };
        let fpr = format!("{} ({}/{})", rate(&p.fpr), p.fpr.k, p.fpr.n);
        let tpr = p.tpr.as_ref().map_or("-".to_string(), rate);
        println!(
            "{:>8}  {:>9.4}  {:<28} {}",
            p.max_fpr, p.threshold, fpr, tpr
        );
    }
}
