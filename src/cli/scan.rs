//! `synthscan scan`: walk paths, score every image, write one verdict file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{load_models, usage, ModelOptions};
use crate::pipeline::{Observer, Pipeline, PipelineConfig, Source};
use crate::sink::{self, Format};
use crate::source::walk::{self, Shard, WalkOptions};
use crate::verdict::Table;

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and folders to scan (folders recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    /// Output file; with --shard, the folder that receives `part-i-of-N.<ext>`.
    #[arg(short, long, default_value = "verdicts.parquet")]
    pub out: PathBuf,
    /// Scan only shard i of N (0-based), chosen by a hash of each file's path relative to the
    /// scanned folder, so N machines given the same folder split it without overlap.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<Shard>,
    /// Output format (default: from the --out extension, else parquet).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Images per inference batch, or `auto` to pick the fastest by measuring at start.
    #[arg(short, long, default_value = "16", value_parser = parse_batch)]
    pub batch_size: BatchSize,
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

pub fn run(args: ScanArgs, quiet: bool) -> Result<ExitCode> {
    for p in &args.paths {
        if std::fs::symlink_metadata(p).is_err() {
            return Err(usage(format!("{}: no such file or folder", p.display())));
        }
    }
    let format = args
        .format
        .or_else(|| Format::from_path(&args.out).filter(|_| args.shard.is_none()))
        .unwrap_or(Format::Parquet);
    let out = match args.shard {
        Some(s) => args.out.join(format!(
            "part-{}-of-{}.{}",
            s.index,
            s.count,
            format.extension()
        )),
        None => args.out.clone(),
    };
    let (runtime, models) = load_models(&args.model)?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut config = PipelineConfig::for_cores(cores);
    config.batch_size = match args.batch_size {
        BatchSize::Fixed(n) => n,
        BatchSize::Auto => AUTO_BATCH_LIMIT,
    };
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
    walk_opts.shard = args.shard;
    if let Some(ext) = &args.ext {
        walk_opts.extensions = ext
            .iter()
            .map(|e| e.trim_start_matches('.').to_ascii_lowercase())
            .collect();
    }
    let source: Source = Box::new(move |emit| walk::walk(&walk_opts, emit));

    args.model.configure(&mut config)?;
    let mut pipeline = Pipeline::new(&runtime, models, config).map_err(usage)?;
    if args.batch_size == BatchSize::Auto {
        let chosen = pipeline.tune_batch_size(AUTO_BATCH_LIMIT);
        if !quiet {
            eprintln!("batch size: {chosen} (measured)");
        }
    }
    let table = Table::new(pipeline.columns().to_vec());
    let sink = sink::create(format, &out, table)?;

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
