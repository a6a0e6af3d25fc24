//! `synthscan scan`: walk paths, score every image, write one verdict file.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{
    build_pipeline, run_until_done, usage, ModelOptions, PipelineOptions, RunConfig,
    ThresholdOptions, WalkArgs,
};
use crate::pipeline::{Observer, Source};
use crate::sink::{self, Format};
use crate::source::walk::{self, Shard};

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and folders to scan (folders recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    #[command(flatten)]
    pub thresholds: ThresholdOptions,
    #[command(flatten)]
    pub pipeline: PipelineOptions,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Output file; with --shard, the folder that receives `part-i-of-N.<ext>`.
    #[arg(short, long, default_value = "verdicts.parquet")]
    pub out: PathBuf,
    /// Scan only shard i of N (0-based), chosen by a hash of each file's path relative to the
    /// scanned folder, so N machines given the same folder split it without overlap.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<Shard>,
    /// Output format (default: from the --out extension, else parquet).
    #[arg(long, value_parser = format_parser())]
    pub format: Option<Format>,
    /// No progress bar even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Also write the run summary as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
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
    // Found now rather than when the first rows are written, after the whole scan.
    sink::check_writable(&out).map_err(usage)?;
    let config = RunConfig::resolve(&args.model, &args.thresholds, &args.pipeline)?;
    let mut walk_opts = args.walk.options(args.paths.clone());
    walk_opts.shard = args.shard;
    let source: Source = Box::new(move |emit| walk::walk(&walk_opts, emit));
    let pipeline = build_pipeline(config, quiet)?;
    let table = pipeline.table().clone();
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

    let stop = Arc::new(AtomicBool::new(false));
    let summary = run_until_done(pipeline, source, sink, stop.clone(), observer)?;
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

/// `--format`: the sink's format names, listed in the help.
fn format_parser() -> impl clap::builder::TypedValueParser<Value = Format> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Format::ALL.map(Format::name))
        .map(|name| Format::from_name(&name).expect("one of the listed names"))
}

pub(super) fn progress_bar(visible: bool) -> ProgressBar {
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
