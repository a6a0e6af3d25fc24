//! Command line: parse, validate everything that can be checked before work starts (paths,
//! models, the ONNX Runtime library), run, report. Exit codes: 0 done (rows with an error
//! status are data, not failures), 1 the run failed, 2 bad usage or set-up.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::infer::ModelSet;
use crate::manifest::{self, ModelEntry};
use crate::pipeline::{Observer, Pipeline, PipelineConfig, Source};
use crate::preprocess::distinct_specs;
use crate::runtime::Runtime;
use crate::sink::{self, Format};
use crate::source::walk::{self, WalkOptions};
use crate::verdict::{ModelColumn, Table};

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
    Scan(ScanArgs),
    /// List the models in the models folder.
    Models(ModelsArgs),
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
    /// Decision threshold on the probability of AI-generated, for every model (default: each
    /// model's own, from its manifest).
    #[arg(long, value_name = "P")]
    pub threshold: Option<f32>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and folders to scan (folders recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    /// Output file.
    #[arg(short, long, default_value = "verdicts.parquet")]
    pub out: PathBuf,
    /// Output format (default: from the --out extension, else parquet).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Images per inference batch.
    #[arg(short, long, default_value_t = 16)]
    pub batch_size: usize,
    /// ONNX Runtime threads per session (default: all cores).
    #[arg(short = 'j', long)]
    pub threads: Option<usize>,
    /// Decode threads (default: all cores).
    #[arg(long)]
    pub decode_threads: Option<usize>,
    /// Image file extensions to pick up without sniffing their content (comma separated).
    #[arg(long, value_delimiter = ',', value_name = "EXT,...")]
    pub ext: Option<Vec<String>>,
    /// Follow symbolic links to folders while walking.
    #[arg(short = 'L', long)]
    pub follow_symlinks: bool,
    /// Refuse images with more pixels than this before decoding them.
    #[arg(long, default_value_t = crate::decode::Limits::default().max_pixels)]
    pub max_pixels: u64,
    /// Refuse files larger than this many MiB before reading them.
    #[arg(long, default_value_t = 256)]
    pub max_file_mb: u64,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[arg(long, env = "SYNTHSCAN_MODELS", value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Scan(args) => scan(args, cli.quiet),
        Command::Models(args) => list_models(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(e.downcast_ref::<UsageError>().map_or(1, |_| 2))
        }
    }
}

/// A problem the user can fix before any work starts: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn usage(e: impl std::fmt::Display) -> anyhow::Error {
    UsageError(e.to_string()).into()
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn models_dirs(explicit: &Option<PathBuf>) -> Vec<PathBuf> {
    match explicit {
        Some(d) => vec![d.clone()],
        None => manifest::default_models_dirs(),
    }
}

/// Resolves the models, loads ONNX Runtime and prepares the column set: everything a run needs
/// that can fail before a single file is read.
pub fn load_models(opts: &ModelOptions) -> Result<(Arc<Runtime>, ModelSet)> {
    if let Some(t) = opts.threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(usage(format!("--threshold {t} is not between 0 and 1")));
        }
    }
    let refs = if opts.models.is_empty() {
        vec![manifest::DEFAULT_MODEL.to_string()]
    } else {
        opts.models.clone()
    };
    let dirs = models_dirs(&opts.models_dir);
    let entries: Vec<ModelEntry> = refs
        .iter()
        .map(|r| manifest::resolve(r, &dirs).map_err(usage))
        .collect::<Result<_>>()?;
    let mut names: Vec<&str> = entries.iter().map(|e| e.manifest.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err(usage("the same model is named twice"));
    }
    let runtime = Runtime::load(opts.ort_lib.as_deref()).map_err(usage)?;
    let (_, spec_index) = distinct_specs(entries.iter().map(|e| &e.manifest.input));
    let columns = entries
        .iter()
        .map(|e| ModelColumn {
            name: e.manifest.name.clone(),
            version: e.manifest.version.clone(),
            threshold: opts.threshold.unwrap_or(e.manifest.threshold),
            precision: "fp32".into(),
        })
        .collect();
    Ok((
        runtime,
        ModelSet {
            entries,
            spec_index,
            columns,
        },
    ))
}

fn scan(args: ScanArgs, quiet: bool) -> Result<ExitCode> {
    for p in &args.paths {
        if std::fs::symlink_metadata(p).is_err() {
            return Err(usage(format!("{}: no such file or folder", p.display())));
        }
    }
    if args.batch_size == 0 {
        return Err(usage("--batch-size must be at least 1"));
    }
    let format = args
        .format
        .or_else(|| Format::from_path(&args.out))
        .unwrap_or(Format::Parquet);
    let (runtime, models) = load_models(&args.model)?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut config = PipelineConfig::for_cores(cores);
    config.batch_size = args.batch_size;
    if let Some(t) = args.threads {
        config.session.intra_threads = t.max(1);
    }
    if let Some(t) = args.decode_threads {
        config.decode_threads = t.max(1);
    }
    config.limits.max_pixels = args.max_pixels;
    config.limits.max_file_bytes = args.max_file_mb.saturating_mul(1024 * 1024);

    let mut walk_opts = WalkOptions::new(args.paths.clone());
    walk_opts.follow_symlinks = args.follow_symlinks;
    if let Some(ext) = &args.ext {
        walk_opts.extensions = ext
            .iter()
            .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
            .collect();
    }
    let source: Source = Box::new(move |emit| walk::walk(&walk_opts, emit));

    let table = Table::new(models.columns.clone());
    let pipeline = Pipeline::new(&runtime, models, config).context("loading the models")?;
    let sink = sink::create(format, &args.out, table)?;

    let show_progress = !quiet && !args.no_progress && std::io::stderr().is_terminal();
    let bar = progress_bar(show_progress);
    let observer: Observer = {
        let bar = bar.clone();
        Box::new(move |_, discovered| {
            bar.set_length(discovered);
            bar.inc(1);
        })
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let summary = rt.block_on(async {
        tokio::spawn(stop_on_signal(stop.clone()));
        pipeline.run(source, sink, stop.clone(), observer).await
    })?;
    bar.finish_and_clear();

    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !quiet {
        eprintln!("{summary}");
    }
    if stop.load(Ordering::Relaxed) {
        eprintln!("interrupted: the output holds the files scanned before the stop");
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

/// First Ctrl-C (or SIGTERM): stop taking files and drain. Second: exit at once.
async fn stop_on_signal(stop: Arc<AtomicBool>) {
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

fn progress_bar(visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files {per_sec} ETA {eta}",
        )
        .expect("static template"),
    );
    bar
}

fn list_models(args: ModelsArgs) -> Result<ExitCode> {
    let dirs = models_dirs(&args.models_dir);
    let Some(dir) = dirs.iter().find(|d| d.is_dir()) else {
        bail!("no models folder found (looked in {dirs:?})");
    };
    println!(
        "{:<20} {:<10} {:<22} {:>5} {:>9}  variants",
        "name", "version", "architecture", "size", "threshold"
    );
    for entry in manifest::list(dir) {
        match entry {
            Ok(e) => {
                let m = &e.manifest;
                let variants: Vec<&str> = m.variants.iter().map(|v| v.precision.as_str()).collect();
                println!(
                    "{:<20} {:<10} {:<22} {:>5} {:>9.3}  fp32 {}",
                    m.name,
                    m.version,
                    m.architecture,
                    m.input.width,
                    m.threshold,
                    variants.join(" ")
                );
            }
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    Ok(ExitCode::SUCCESS)
}
