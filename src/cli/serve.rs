//! `synthscan serve`: the upload page and JSON API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use super::{
    build_pipeline, stop_on_signal, usage, BatchSize, ModelOptions, PipelineOptions, RunConfig,
    ThresholdOptions,
};
use crate::serve::upload::UploadLimits;
use crate::serve::{self, ServeConfig};

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. The default takes connections from this machine only; use
    /// 0.0.0.0:8080 to open it to the network.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR:PORT")]
    pub bind: SocketAddr,
    #[command(flatten)]
    pub model: ModelOptions,
    #[command(flatten)]
    pub thresholds: ThresholdOptions,
    /// Largest request body, in MiB (413 above it).
    #[arg(long, default_value_t = 50, value_name = "MIB")]
    pub max_upload_mb: u64,
    /// Most files in one request, zip entries included (413 above it).
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub max_files: usize,
    /// Most bytes the zip archives of one request may expand to, in MiB (413 above it).
    #[arg(long, default_value_t = 200, value_name = "MIB")]
    pub max_unzipped_mb: u64,
    /// Refuse images with more pixels than this before decoding them (decompression bombs).
    #[arg(long, default_value_t = 50_000_000)]
    pub max_pixels: u64,
    /// Requests read and scored at once; more wait their turn. Bounds memory together with the
    /// size limits.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_concurrent: usize,
    /// Seconds a request waits for one of those slots before it is answered 429 Too Many
    /// Requests, with a Retry-After header.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub max_wait: f64,
    /// Seconds a client may take to send its request headers, and may pause while sending a
    /// body, before it is answered 408 Request Timeout and its slot is freed. Also how long an
    /// idle keep-alive connection stays open.
    #[arg(long, default_value_t = 15.0, value_name = "SECS")]
    pub read_timeout: f64,
    /// Connections held open at once (default: 8 × --max-concurrent); one more is answered 503
    /// and closed at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Also serve requests whose Host header names NAME (a name, any port; or NAME:PORT),
    /// e.g. the machine's name on the network or a proxy's; `*` allows any Host. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub allow_host: Vec<String>,
    /// Also serve requests sent by pages of ORIGIN (as browsers send it: https://tools.example
    /// or http://host:port). Repeatable.
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// Decode every JPEG at full size (see `scan --help`).
    #[arg(long)]
    pub full_decode: bool,
    /// Also keep every uploaded file in this folder, under generated names.
    #[arg(long, value_name = "DIR")]
    pub keep: Option<PathBuf>,
    /// Images per inference batch.
    #[arg(short, long, default_value_t = 16)]
    pub batch_size: usize,
    /// ONNX Runtime threads per session (default: all cores; 1 on GPUs).
    #[arg(short = 'j', long)]
    pub threads: Option<usize>,
    /// How many of the latest scored batches stay downloadable.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub keep_batches: usize,
    /// How long a scored batch stays downloadable.
    #[arg(long, default_value_t = 60, value_name = "MINUTES")]
    pub keep_minutes: u64,
}

pub fn run(args: ServeArgs, quiet: bool) -> Result<ExitCode> {
    let pipeline_opts = PipelineOptions {
        batch_size: BatchSize::Fixed(args.batch_size.max(1)),
        threads: args.threads,
        decode_threads: None,
        max_pixels: args.max_pixels,
        max_file_mb: args.max_upload_mb,
        full_decode: args.full_decode,
    };
    // Everything is resolved before the models load, so a bad option fails fast.
    let run_config = RunConfig::resolve(&args.model, &args.thresholds, &pipeline_opts)?;
    let config = ServeConfig {
        bind: args.bind,
        limits: UploadLimits {
            max_body_bytes: args.max_upload_mb.saturating_mul(MIB),
            max_files: args.max_files.max(1),
            max_unzipped_bytes: args.max_unzipped_mb.saturating_mul(MIB),
        },
        upload_slots: args.max_concurrent,
        slot_wait: Duration::try_from_secs_f64(args.max_wait)
            .map_err(|_| usage(format!("--max-wait {} is not a duration", args.max_wait)))?,
        keep: args.keep,
        max_batches: args.keep_batches,
        batch_ttl: Duration::from_secs(args.keep_minutes.saturating_mul(60)),
        read_timeout: Duration::try_from_secs_f64(args.read_timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                usage(format!(
                    "--read-timeout {} is not a positive duration",
                    args.read_timeout
                ))
            })?,
        max_connections: args
            .max_connections
            .unwrap_or(args.max_concurrent.max(1).saturating_mul(8))
            .max(1),
        allow_hosts: args.allow_host,
        allow_origins: args.allow_origin,
    };
    let pipeline = build_pipeline(run_config, quiet)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        tokio::spawn(stop_on_signal(stop.clone()));
        let on_listen = |addr: SocketAddr| {
            // Always printed, even with --quiet: scripts read the port from it.
            eprintln!("synthscan serve: listening on http://{addr}/");
        };
        serve::serve(pipeline, config, on_listen, stopped(stop)).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves once the first SIGINT/SIGTERM has set `stop`: the server then stops accepting and
/// lets the requests in flight finish.
async fn stopped(stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
