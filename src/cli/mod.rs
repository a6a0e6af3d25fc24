//! Command line: parse, validate everything that can be checked before work starts (paths,
//! models, the ONNX Runtime library), run, report. Exit codes: 0 done (rows with an error
//! status are data, not failures), 1 the run failed, 2 bad usage or set-up.

mod calibrate;
mod eval;
mod models;
mod provenance;
mod report;
mod scan;
mod serve;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::measure::calibration::{CalibratedModel, Calibration, CalibrationError};
use crate::model::device;
use crate::model::infer::ModelSet;
use crate::model::manifest::{self, Calibrated, ModelEntry, ThresholdChoice};
use crate::model::precision::Precision;
use crate::model::runtime::Runtime;
use crate::pipeline::summary::Summary;
use crate::pipeline::{Observer, Pipeline, PipelineConfig, Source};
use crate::sink::Sink;
use crate::source::walk::WalkOptions;

#[derive(Debug, Parser)]
#[command(
    name = "synthscan",
    version,
    about = "Tell real photos from AI-generated images, file by file"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More logging (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress bar and no summary; errors only.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
// Parsed once per process; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Scan files and folders; write one verdict row per candidate file.
    Scan(scan::ScanArgs),
    /// Follow folders: score every new or changed image once it is complete, into rolling Parquet
    /// parts; exactly one row per file version across restarts.
    Watch(watch::WatchArgs),
    /// List the models in the models folder.
    Models(models::ModelsArgs),
    /// Summarize a verdict dataset: counts, fake rate per model, format and JPEG quality.
    Report(report::ReportArgs),
    /// Serve the upload page and the JSON API: score uploaded images (or zips of images),
    /// compare models, download the results as CSV or Parquet.
    Serve(serve::ServeArgs),
    /// Score labelled images (real/ + fake/ folders, per-generator subfolders, a labels CSV, or
    /// an existing verdict dataset) and print ROC-AUC, AP, accuracy, TPR and FPR.
    Eval(eval::EvalArgs),
    /// Fit thresholds on your own real images for target false-positive rates, into a
    /// calibration file that scan, watch, serve and eval take with --calibration.
    Calibrate(calibrate::CalibrateArgs),
}

#[derive(Debug, Args)]
pub struct ModelOptions {
    /// Model to run: a name from the models folder, or a .onnx/.json path. Repeat to run several
    /// models on the same decoded images; each gets its own score column.
    #[arg(short, long = "model", value_name = "NAME|FILE")]
    pub models: Vec<String>,
    /// Where models are looked up by name (default: ./models, then beside the binary).
    #[arg(long, env = "SYNTHSCAN_MODELS", value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// The ONNX Runtime library (default: found automatically; see scripts/install-ort).
    #[arg(long, env = "ORT_DYLIB_PATH", value_name = "FILE")]
    pub ort_lib: Option<PathBuf>,
    /// Where inference runs: cpu, cuda (every visible GPU), cuda:0,1, tensorrt, tensorrt:0.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Which variant of each model runs. auto: FP16 on GPUs, INT8 on CPUs with VNNI, each when
    /// the manifest lists it, else FP32. The `precision` column records what ran.
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: Precision,
    /// Inference sessions per device; all take batches from one queue.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub sessions_per_device: usize,
    /// When the GPU cannot be used: `cpu` warns and scans on the CPU; by default it is an error.
    #[arg(long, value_enum, value_name = "cpu")]
    pub fallback: Option<Fallback>,
    /// TensorRT engine and timing caches (default: ~/.cache/synthscan).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub provenance: provenance::ProvenanceOptions,
}

/// Where the decision threshold comes from; shared by every subcommand that labels files.
#[derive(Debug, Args)]
pub struct ThresholdOptions {
    /// Decision threshold on the probability of AI-generated, for every model (default: each
    /// model's own, from its manifest: for models with operating points, the one that calls
    /// 5% of held-out real photos fake). Overrides --calibration and --max-fpr.
    #[arg(long, value_name = "P")]
    pub threshold: Option<f32>,
    /// Pick each model's threshold by the share of real photos it may call AI-generated: with
    /// --calibration, among the calibration file's points; otherwise as measured on held-out
    /// real photos when the model was made (0.01, 0.05 or 0.10).
    #[arg(long, value_name = "FPR")]
    pub max_fpr: Option<f32>,
    /// A calibration file from `synthscan calibrate`: its 5% point (or its only point, or the
    /// one --max-fpr names) sets the threshold of the model it was made for. A file made for
    /// another model or model version is refused.
    #[arg(long, value_name = "FILE")]
    pub calibration: Option<PathBuf>,
}

/// How the pipeline runs; shared by `scan` and `watch` (`serve` sets its own).
#[derive(Debug, Args)]
pub struct PipelineOptions {
    /// Images per inference batch, or `auto` to pick the fastest by measuring at start.
    #[arg(short, long, default_value = "16", value_parser = parse_batch)]
    pub batch_size: BatchSize,
    /// ONNX Runtime threads per session (default: all cores; 1 on GPUs).
    #[arg(short = 'j', long)]
    pub threads: Option<usize>,
    /// Decode threads (default: all cores).
    #[arg(long)]
    pub decode_threads: Option<usize>,
    /// Refuse images with more pixels than this before decoding them.
    #[arg(long, default_value_t = crate::decode::Limits::default().max_pixels)]
    pub max_pixels: u64,
    /// Refuse files larger than this many MiB before reading them.
    #[arg(long, default_value_t = 256)]
    pub max_file_mb: u64,
    /// Decode every JPEG whole, at full size. By default only what the model reads is decoded:
    /// for resize models a large JPEG at 1/4 or 1/8 scale in the DCT domain, keeping both sides
    /// at least three times the model's input (twice as fast on camera photos, scores within
    /// 0.02 of a full decode); for crop models only the crop's window, pixel for pixel the same
    /// as a full decode.
    #[arg(long)]
    pub full_decode: bool,
}

/// Which files a walk picks; shared by `scan` and `watch`.
#[derive(Debug, Args)]
pub struct WalkArgs {
    /// Image file extensions to pick up without sniffing their content (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "EXT,...")]
    pub ext: Option<Vec<String>>,
    /// Follow symbolic links to folders while walking.
    #[arg(short = 'L', long)]
    pub follow_symlinks: bool,
}

impl WalkArgs {
    pub fn options(&self, roots: Vec<PathBuf>) -> WalkOptions {
        let mut walk = WalkOptions::new(roots);
        walk.follow_symlinks = self.follow_symlinks;
        if let Some(ext) = &self.ext {
            walk.extensions = ext
                .iter()
                .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
                .collect();
        }
        walk
    }
}

/// The largest batch `--batch-size auto` tries.
const AUTO_BATCH_LIMIT: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchSize {
    Fixed(usize),
    Auto,
}

fn parse_batch(s: &str) -> Result<BatchSize, String> {
    match s {
        "auto" => Ok(BatchSize::Auto),
        n => match n.parse::<usize>() {
            Ok(n) if n > 0 => Ok(BatchSize::Fixed(n)),
            _ => Err(format!(
                "'{s}' is not a batch size: a whole number from 1, or auto"
            )),
        },
    }
}

/// A run's settings, resolved once from the command line before any work: which models, and
/// the pipeline's configuration with its devices parsed, its limits in bytes and its thread
/// counts. Nothing reads the options after this; walk options are resolved apart
/// ([`WalkArgs`]), since `serve` has none.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub models: ModelChoice,
    pub pipeline: PipelineConfig,
    /// `--batch-size auto`: measure at start, up to `pipeline.batch_size`.
    pub tune_batch: bool,
}

/// The models a run loads, and from where.
#[derive(Debug, Clone)]
pub struct ModelChoice {
    /// Names or paths, in column order.
    pub refs: Vec<String>,
    pub dirs: Vec<PathBuf>,
    pub ort_lib: Option<PathBuf>,
    pub thresholds: ThresholdChoice,
    /// `--calibration`: applied once the models are known (see [`ModelChoice::thresholds_for`]).
    pub calibration: Option<(PathBuf, Calibration)>,
}

impl ModelChoice {
    /// The threshold choice for these models, with the calibration's point when a calibration
    /// file was given; refuses one made for a model this run does not load.
    pub fn thresholds_for(&self, entries: &[ModelEntry]) -> Result<ThresholdChoice> {
        let mut choice = self.thresholds.clone();
        let Some((file, calibration)) = &self.calibration else {
            return Ok(choice);
        };
        let made_for = &calibration.model;
        let Some(entry) = entries.iter().find(|e| e.manifest.name == made_for.name) else {
            let this_run: Vec<String> = entries
                .iter()
                .map(|e| format!("{} {}", e.manifest.name, e.manifest.version))
                .collect();
            return Err(usage(CalibrationError::OtherModel {
                file: file.clone(),
                made_for: format!("{} {}", made_for.name, made_for.version),
                this_run: this_run.join(", "),
            }));
        };
        calibration.check(file, &entry.manifest).map_err(usage)?;
        let point = calibration
            .pick(file, choice.max_fpr.map(f64::from))
            .map_err(usage)?;
        choice.calibrated = Some(Calibrated {
            model: made_for.name.clone(),
            threshold: point.threshold,
            max_fpr: point.max_fpr,
            file: file.display().to_string(),
        });
        Ok(choice)
    }
}

impl ThresholdOptions {
    /// Checks the threshold options and reads the calibration file.
    pub fn resolve(&self) -> Result<(ThresholdChoice, Option<(PathBuf, Calibration)>)> {
        if let Some(t) = self.threshold {
            if !(0.0..=1.0).contains(&t) {
                return Err(usage(format!("--threshold {t} is not between 0 and 1")));
            }
        }
        let calibration = match &self.calibration {
            Some(path) => Some((path.clone(), Calibration::load(path).map_err(usage)?)),
            None => None,
        };
        let choice = ThresholdChoice {
            threshold: self.threshold,
            max_fpr: self.max_fpr,
            calibrated: None,
        };
        Ok((choice, calibration))
    }
}

impl RunConfig {
    pub fn resolve(
        model: &ModelOptions,
        thresholds: &ThresholdOptions,
        opts: &PipelineOptions,
    ) -> Result<Self> {
        let (thresholds, calibration) = thresholds.resolve()?;
        let models = ModelChoice {
            refs: if model.models.is_empty() {
                vec![manifest::DEFAULT_MODEL.to_string()]
            } else {
                model.models.clone()
            },
            dirs: models_dirs(&model.models_dir),
            ort_lib: model.ort_lib.clone(),
            thresholds,
            calibration,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut config = PipelineConfig::for_cores(cores);
        config.batch_size = match opts.batch_size {
            BatchSize::Fixed(n) => n,
            BatchSize::Auto => AUTO_BATCH_LIMIT,
        };
        if let Some(t) = opts.decode_threads {
            config.decode_threads = t.max(1);
        }
        config.limits.max_pixels = opts.max_pixels;
        config.limits.max_file_bytes = opts.max_file_mb.saturating_mul(1024 * 1024);
        config.partial_decode = !opts.full_decode;
        config.devices = device::parse(&model.device).map_err(usage)?;
        config.sessions_per_device = model.sessions_per_device.max(1);
        config.session.fallback_cpu = model.fallback == Some(Fallback::Cpu);
        config.session.precision = model.precision;
        config.provenance = model.provenance.reader()?;
        if let Some(dir) = &model.cache_dir {
            config.session.gpu.cache_dir = dir.clone();
        }
        config.session.gpu.max_batch = config.batch_size;
        if config.devices.iter().any(|d| d.is_gpu()) {
            // GPU sessions need few CPU threads; the cores are better spent decoding.
            config.session.intra_threads = 1;
            config.session.io_binding = true;
        }
        if let Some(t) = opts.threads {
            config.session.intra_threads = t.max(1);
        }
        Ok(RunConfig {
            models,
            pipeline: config,
            tune_batch: opts.batch_size == BatchSize::Auto,
        })
    }
}

/// Loads the models and ONNX Runtime, creates every session and, for `--batch-size auto`,
/// measures the batch size: everything that can fail before the first file is read.
pub fn build_pipeline(config: RunConfig, quiet: bool) -> Result<Pipeline> {
    let gpu = config.pipeline.devices.iter().any(|d| d.is_gpu());
    let (runtime, models) = load_models(&config.models, gpu)?;
    let mut pipeline = Pipeline::new(&runtime, models, config.pipeline).map_err(usage)?;
    if config.tune_batch {
        let chosen = pipeline.tune_batch_size(AUTO_BATCH_LIMIT);
        if !quiet {
            eprintln!("batch size: {chosen} (measured)");
        }
    }
    Ok(pipeline)
}

/// Runs a pipeline to its end on a small tokio runtime, with the signal handling both
/// subcommands share: the first SIGINT/SIGTERM sets `stop` (the source stops, everything in
/// flight drains, the output is finalized); a second exits at once.
pub fn run_until_done(
    pipeline: Pipeline,
    source: Source,
    sink: Box<dyn Sink>,
    stop: Arc<AtomicBool>,
    observer: Observer,
) -> Result<Summary> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    Ok(rt.block_on(async {
        tokio::spawn(stop_on_signal(stop.clone()));
        pipeline.run(source, sink, stop, observer).await
    })?)
}

pub(crate) async fn stop_on_signal(stop: Arc<AtomicBool>) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        #[cfg(unix)]
        let signalled = async {
            match term.as_mut() {
                Some(t) => {
                    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = t.recv() => {} }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        #[cfg(not(unix))]
        let signalled = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        signalled.await;
        if stop.swap(true, Ordering::Relaxed) {
            eprintln!("aborted");
            std::process::exit(130);
        }
        eprintln!("stopping: finishing the files in flight (press Ctrl-C again to abort)");
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    Cpu,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Scan(args) => scan::run(args, cli.quiet),
        Command::Watch(args) => watch::run(args, cli.quiet),
        Command::Models(args) => models::run(args),
        Command::Report(args) => report::run(args),
        Command::Serve(args) => serve::run(args, cli.quiet),
        Command::Eval(args) => eval::run(args, cli.quiet),
        Command::Calibrate(args) => calibrate::run(args, cli.quiet),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::from(e.downcast_ref::<UsageError>().map_or(1, |_| 2))
        }
    }
}

/// The error and its causes, as `{:#}` writes them, less a cause that the error before it
/// already ends with: most errors here name their cause in their own message.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.ends_with(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// A problem the user can fix before any work starts: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

pub fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info,ort=warn",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn models_dirs(explicit: &Option<PathBuf>) -> Vec<PathBuf> {
    match explicit {
        Some(d) => vec![d.clone()],
        None => manifest::default_models_dirs(),
    }
}

/// Resolves the models, loads ONNX Runtime (with its GPU libraries when `gpu`) and prepares
/// the column set: everything a run needs that can fail before a single file is read.
pub fn load_models(choice: &ModelChoice, gpu: bool) -> Result<(Arc<Runtime>, ModelSet)> {
    let entries = resolve_models(choice)?;
    let thresholds = choice.thresholds_for(&entries)?;
    let runtime = Runtime::load(choice.ort_lib.as_deref(), gpu).map_err(usage)?;
    let models = ModelSet::new(entries, thresholds).map_err(usage)?;
    Ok((runtime, models))
}

/// The manifests of the models a run names, each once.
pub fn resolve_models(choice: &ModelChoice) -> Result<Vec<ModelEntry>> {
    let entries: Vec<ModelEntry> = choice
        .refs
        .iter()
        .map(|r| manifest::resolve(r, &choice.dirs).map_err(usage))
        .collect::<Result<_>>()?;
    let mut names: Vec<&str> = entries.iter().map(|e| e.manifest.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(usage("the same model is named twice"));
    }
    Ok(entries)
}

/// The calibration file's record of a model that ran at `precision`.
pub fn calibrated_model(entry: &ModelEntry, precision: &str) -> CalibratedModel {
    CalibratedModel::of(&entry.manifest, precision)
}
