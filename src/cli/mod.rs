//! Command line: parse, validate everything that can be checked before work starts (paths,
//! models, the ONNX Runtime library), run, report. Exit codes: 0 done (rows with an error
//! status are data, not failures), 1 the run failed, 2 bad usage or set-up.

mod models;
mod report;
mod scan;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::device;
use crate::infer::ModelSet;
use crate::manifest::{self, ModelEntry};
use crate::pipeline::PipelineConfig;
use crate::preprocess::distinct_specs;
use crate::runtime::Runtime;
use crate::verdict::ModelColumn;

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
    /// Where inference runs: cpu, cuda (every visible GPU), cuda:0,1, tensorrt, tensorrt:0.
    /// GPUs use the model's FP16 variant when its manifest has one.
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,
    /// Inference sessions per device; all take batches from one queue.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub sessions_per_device: usize,
    /// When the GPU cannot be used: `cpu` warns and scans on the CPU; by default it is an error.
    #[arg(long, value_enum, value_name = "cpu")]
    pub fallback: Option<Fallback>,
    /// TensorRT engine and timing caches (default: ~/.cache/synthscan).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    Cpu,
}

impl ModelOptions {
    /// Applies the device options to a pipeline configuration.
    pub fn configure(&self, config: &mut PipelineConfig) -> Result<()> {
        config.devices = device::parse(&self.device).map_err(usage)?;
        config.sessions_per_device = self.sessions_per_device.max(1);
        config.session.fallback_cpu = self.fallback == Some(Fallback::Cpu);
        if let Some(dir) = &self.cache_dir {
            config.session.gpu.cache_dir = dir.clone();
        }
        config.session.gpu.max_batch = config.batch_size;
        if config.devices.iter().any(|d| d.is_gpu()) {
            // GPU sessions need few CPU threads; the cores are better spent decoding.
            config.session.intra_threads = 1;
        }
        Ok(())
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::Scan(args) => scan::run(args, cli.quiet),
        Command::Watch(args) => watch::run(args, cli.quiet),
        Command::Models(args) => models::run(args),
        Command::Report(args) => report::run(args),
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
    let gpu = device::parse(&opts.device)
        .map_err(usage)?
        .iter()
        .any(|d| d.is_gpu());
    let runtime = Runtime::load(opts.ort_lib.as_deref(), gpu).map_err(usage)?;
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
