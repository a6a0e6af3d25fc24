//! `synthscan watch`: score every image already in the folders, then every new or changed one
//! once it is complete, into a folder of rolling Parquet parts; exactly one row per file identity
//! across crashes and restarts, because the set of files done is rebuilt from the finalized parts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use super::{
    build_pipeline, run_until_done, usage, ModelOptions, PipelineOptions, RunConfig,
    ThresholdOptions, WalkArgs,
};
use crate::pipeline::{Observer, Source};
use crate::sink::rolling::{RollPolicy, RollingSink};
use crate::source::watch::resume::{resume, Resumed};
use crate::source::watch::{self, WatchOptions};
use crate::verdict::{now_ms, Status};

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Folders to watch (recursively).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelOptions,
    #[command(flatten)]
    pub thresholds: ThresholdOptions,
    #[command(flatten)]
    pub pipeline: PipelineOptions,
    #[command(flatten)]
    pub walk: WalkArgs,
    /// Output folder of Parquet parts (part-<unix ms>-<seq>.parquet).
    #[arg(short, long, value_name = "OUTDIR")]
    pub out: PathBuf,
    /// Finalize the open part once it holds this many rows.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub roll_rows: usize,
    /// Finalize the open part once it has been open this many seconds, so rows become visible
    /// to readers within this delay.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub roll_secs: f64,
    /// Seconds a file's size and modification time must stay unchanged before it is scored,
    /// where no close-after-write event says it is complete.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub settle: f64,
    /// Poll for changes instead of using file notifications (network file systems).
    #[arg(long)]
    pub poll: bool,
    /// Seconds between polls, when polling.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub poll_interval: f64,
    /// Seconds between throughput and latency log lines (at -v).
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub stats_interval: f64,
}

fn seconds(name: &str, v: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(v).map_err(|_| usage(format!("--{name} {v} is not a duration")))
}

pub fn run(args: WatchArgs, quiet: bool) -> Result<ExitCode> {
    let mut roots = Vec::new();
    for d in &args.dirs {
        if !d.is_dir() {
            return Err(usage(format!("{}: no such folder", d.display())));
        }
        // Rows name files by absolute path, so that a restart from another working directory
        // recognizes them.
        roots.push(
            d.canonicalize()
                .with_context(|| format!("resolving {}", d.display()))?,
        );
    }
    let config = RunConfig::resolve(&args.model, &args.thresholds, &args.pipeline)?;
    if args.roll_rows == 0 {
        return Err(usage("--roll-rows must be at least 1"));
    }
    let policy = RollPolicy {
        max_rows: args.roll_rows,
        max_age: seconds("roll-secs", args.roll_secs)?,
    };
    let settle = seconds("settle", args.settle)?;
    let poll_interval = seconds("poll-interval", args.poll_interval)?;
    let stats_interval = seconds("stats-interval", args.stats_interval)?;

    let resumed =
        resume(&args.out).map_err(|e| if e.is_refusal() { usage(e) } else { e.into() })?;
    if resumed.stale > 0 {
        tracing::info!(
            "removed {} unfinished part(s) left by an earlier run",
            resumed.stale
        );
    }
    tracing::info!(
        "{} file version(s) already scored in {} part(s) of {}",
        resumed.ledger.len(),
        resumed.parts,
        resumed.out.display()
    );
    let Resumed {
        out,
        lock: _lock,
        ledger: scored,
        ..
    } = resumed;

    let pipeline = build_pipeline(config, quiet)?;
    let walk = args.walk.options(roots);
    let opts = WatchOptions {
        walk,
        settle,
        poll: args.poll,
        poll_interval,
        exclude: vec![out.clone()],
    };

    let stop = Arc::new(AtomicBool::new(false));
    let source: Source = {
        let stop = stop.clone();
        Box::new(move |emit| {
            let mut on_initial = |s: watch::InitialScan| {
                tracing::info!(
                    found = s.found,
                    queued = s.queued,
                    already_scored = s.already_scored,
                    waiting = s.waiting,
                    "existing files queued"
                );
            };
            watch::watch(&opts, scored, &stop, &mut on_initial, emit);
        })
    };

    let table = pipeline.table().clone();
    let sink = Box::new(RollingSink::create(&out, table, policy)?);
    let observer = stats_observer(stats_interval);

    let summary = run_until_done(pipeline, source, sink, stop, observer)?;
    if !quiet {
        eprintln!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs files/s and the delay from a file's last modification to its row, every `every`.
fn stats_observer(every: Duration) -> Observer {
    let mut since = Instant::now();
    let mut latencies: Vec<i64> = Vec::new();
    let mut errors = 0u64;
    Box::new(move |v, _| {
        if let Some(m) = v.meta.modified_ms {
            latencies.push((now_ms() - m).max(0));
        }
        errors += u64::from(v.status != Status::Ok);
        let elapsed = since.elapsed();
        if elapsed < every {
            return;
        }
        latencies.sort_unstable();
        let pct = |q: f64| {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                .copied()
                .unwrap_or(0)
        };
        tracing::info!(
            files = latencies.len(),
            errors,
            files_per_s = format!("{:.1}", latencies.len() as f64 / elapsed.as_secs_f64()),
            latency_p50_ms = pct(0.5),
            latency_p99_ms = pct(0.99),
            "throughput (latency: modification to row, before the part is finalized)"
        );
        latencies.clear();
        errors = 0;
        since = Instant::now();
    })
}
