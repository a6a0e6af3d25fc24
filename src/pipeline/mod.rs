//! Wiring the stages, top to bottom as the data flows:
//!
//! ```text
//! source ─Candidate─▶ decode pool ─Prepared─▶ batcher ─Vec<Prepared>─▶ inference ─Verdict─▶ collector → sink
//!                        └──────────── error verdicts ──────────────────────────────────────▲
//! ```
//!
//! Stages talk over bounded channels, so memory is bounded by the capacities below, not by the
//! corpus. CPU-heavy stages run on blocking threads. Shutdown drains: when the source stops (its
//! input ends, or `stop` is set), each stage finishes what it holds and closes its output, and
//! the collector finalizes the file. Every candidate ends as exactly one verdict row, except a
//! file its source will hand on again because it changed while being read (see
//! [`Candidate::version`]).

pub mod batch;
pub mod collect;
pub mod contain;
pub mod decode_stage;
pub mod infer_stage;
pub mod run_metadata;
pub mod summary;
pub mod test_hooks;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{bounded, Receiver, Sender};

use collect::collect;
use decode_stage::{decode_loop, DecodeOutput, DecodeSettings};
use infer_stage::infer_loop;
use tokio::task::JoinHandle;

use crate::decode::preprocess::Prepared;
use crate::decode::{self, Limits};
use crate::model::device::Device;
use crate::model::infer::{InferError, ModelSet, SessionConfig, Worker};
use crate::model::manifest::InputSpec;
use crate::model::runtime::Runtime;
use crate::model::scorer::Scorer;
use crate::provenance;
use crate::sink::{Sink, SinkError};
use crate::source::Candidate;
use crate::verdict::{Table, Verdict};
use summary::{Stage, StageClock, Summary};

/// Paths are small; a deep queue lets the walk run ahead of slow decoding.
const CANDIDATE_CAPACITY: usize = 1024;
/// Rows waiting for the sink; each is a few hundred bytes.
const VERDICT_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Infer(#[from] InferError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("a pipeline stage failed: {0}")]
    Join(String),
    /// The invariant broke: some file left without its row. Never expected; loud if it happens.
    #[error("{candidates} files were found but {rows} rows were written: rows were lost")]
    Lost { candidates: u64, rows: u64 },
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub decode_threads: usize,
    /// One inference worker per device and session slot; all take batches from one channel,
    /// so a faster device simply takes more.
    pub devices: Vec<Device>,
    pub sessions_per_device: usize,
    pub batch_size: usize,
    pub linger: Duration,
    pub limits: Limits,
    /// Decode only what the models read of a JPEG: large ones at 1/4 or 1/8 scale for resize
    /// models, the crop's window for crop models (see [`decode::Extent`]).
    pub partial_decode: bool,
    pub session: SessionConfig,
    /// Reads what each file declares about its making (C2PA, IPTC, generator metadata) from
    /// the bytes the decode stage holds; `None` leaves the provenance columns null.
    pub provenance: Option<Arc<provenance::Reader>>,
}

impl PipelineConfig {
    /// Decode and inference share the cores: both get all of them, since they rarely peak at
    /// the same moment and ONNX Runtime's threads do not spin while idle.
    pub fn for_cores(cores: usize) -> Self {
        PipelineConfig {
            decode_threads: cores.max(1),
            devices: vec![Device::Cpu],
            sessions_per_device: 1,
            batch_size: 16,
            linger: Duration::from_millis(50),
            limits: Limits::default(),
            partial_decode: true,
            session: SessionConfig::cpu(cores.max(1)),
            provenance: None,
        }
    }
}

/// Emits candidates until done or until it returns false, on a blocking thread.
pub type Source = Box<dyn FnOnce(&mut dyn FnMut(Candidate) -> bool) + Send>;

/// Sees every row as the collector takes it (progress display, live counters).
pub type Observer = Box<dyn FnMut(&Verdict, u64) + Send>;

/// Sessions are created up front, so a model that cannot load fails before any file is read.
pub struct Pipeline {
    config: PipelineConfig,
    models: ModelSet,
    workers: Vec<Box<dyn Scorer>>,
    /// The output columns and the run's description, built once the precisions are known and
    /// handed to every sink, so that no caller rebuilds them.
    table: Table,
}

impl Pipeline {
    pub fn new(
        runtime: &Arc<Runtime>,
        models: ModelSet,
        config: PipelineConfig,
    ) -> Result<Self, PipelineError> {
        let mut workers: Vec<Box<dyn Scorer>> = Vec::new();
        for &device in &config.devices {
            let session = SessionConfig {
                device,
                ..config.session.clone()
            };
            for _ in 0..config.sessions_per_device.max(1) {
                workers.push(Box::new(Worker::new(runtime, &models, &session)?));
            }
        }
        Ok(Self::with_scorers(models, workers, config))
    }

    /// A pipeline over scorers made elsewhere (at least one); [`Pipeline::new`] makes ONNX
    /// Runtime workers, the pipeline's tests make runners that need none.
    pub fn with_scorers(
        mut models: ModelSet,
        workers: Vec<Box<dyn Scorer>>,
        config: PipelineConfig,
    ) -> Self {
        // The precision a model runs at is known once its sessions exist (what --precision
        // picked for the device the session ended up on, the CPU after a fallback).
        if let Some(first) = workers.first() {
            for (column, precision) in models.columns.iter_mut().zip(first.precisions()) {
                column.precision = precision;
            }
        }
        let table = run_metadata::table(&models);
        Pipeline {
            config,
            models,
            workers,
            table,
        }
    }

    /// Picks the batch size by measurement: doubles it from 1 while throughput still grows by
    /// at least 5% and the device accepts it (a GPU out of memory ends the search), up to
    /// `max`. Returns the chosen size, which the run then uses.
    pub fn tune_batch_size(&mut self, max: usize) -> usize {
        let Some(worker) = self.workers.first_mut() else {
            return self.config.batch_size;
        };
        let (mut best, mut best_rate) = (1, 0.0);
        let mut n = 1;
        while n <= max.max(1) {
            match worker.throughput(n) {
                Ok(rate) if rate >= best_rate * 1.05 => {
                    tracing::info!("batch {n}: {rate:.1} images/s");
                    (best, best_rate) = (n, rate);
                }
                Ok(rate) => {
                    tracing::info!("batch {n}: {rate:.1} images/s, no longer faster");
                    break;
                }
                Err(e) => {
                    tracing::info!("batch {n} does not run ({e}); keeping {best}");
                    break;
                }
            }
            n *= 2;
        }
        self.config.batch_size = best;
        best
    }

    /// The models' manifests, in column order.
    pub fn manifests(&self) -> impl Iterator<Item = &crate::model::manifest::Manifest> {
        self.models.entries.iter().map(|e| &e.manifest)
    }

    /// Where each model's threshold came from, in column order.
    pub fn threshold_sources(&self) -> &[crate::model::manifest::ThresholdSource] {
        &self.models.threshold_sources
    }

    /// The output columns, with each model's precision as loaded.
    pub fn columns(&self) -> &[crate::verdict::ModelColumn] {
        &self.models.columns
    }

    /// The verdict table every sink of this run writes: the columns and the run's metadata.
    pub fn table(&self) -> &Table {
        &self.table
    }

    pub async fn run(
        self,
        source: Source,
        sink: Box<dyn Sink>,
        stop: Arc<AtomicBool>,
        observer: Observer,
    ) -> Result<Summary, PipelineError> {
        let started = Instant::now();
        let Pipeline {
            config,
            models,
            workers,
            table,
        } = self;
        let counts = Counts::default();
        let infer_workers = workers.len();
        let (cand_tx, cand_rx) = bounded::<Candidate>(CANDIDATE_CAPACITY);
        let (prep_tx, prep_rx) = bounded::<Prepared>(config.batch_size * 2);
        let (batch_tx, batch_rx) = bounded::<Vec<Prepared>>(infer_workers);
        let (verdict_tx, verdict_rx) = bounded::<Verdict>(VERDICT_CAPACITY);

        let source_task = spawn_source(source, cand_tx, stop, &counts);
        let mut tasks = spawn_decoders(
            &config,
            &models.specs,
            cand_rx,
            prep_tx,
            &verdict_tx,
            &counts,
        );
        let batcher = tokio::spawn(batch::run(
            prep_rx,
            batch_tx,
            config.batch_size,
            config.linger,
        ));
        tasks.extend(spawn_scorers(workers, batch_rx, verdict_tx, &counts));
        let collector = {
            let counts = counts.clone();
            tokio::task::spawn_blocking(move || {
                collect(
                    verdict_rx,
                    sink,
                    observer,
                    &counts.clock,
                    &counts.discovered,
                    table,
                )
            })
        };

        // The collector ends last when all goes well (its input closes once every stage before
        // it is done), and first when it fails: then the run fails at once, and the stages
        // before it wind down as their sends fail, instead of the run waiting on a source that
        // may never end by itself (serve's).
        let join = |e: tokio::task::JoinError| PipelineError::Join(e.to_string());
        let mut summary = collector.await.map_err(join)??;
        source_task.await.map_err(join)?;
        batcher.await.map_err(join)?;
        for t in tasks {
            t.await.map_err(join)?;
        }
        summary.candidates =
            counts.discovered.load(Ordering::Relaxed) - counts.superseded.load(Ordering::Relaxed);
        if summary.rows != summary.candidates {
            return Err(PipelineError::Lost {
                candidates: summary.candidates,
                rows: summary.rows,
            });
        }
        summary.wall = started.elapsed();
        summary.stages = counts.clock.snapshot();
        summary.decode_threads = config.decode_threads;
        summary.infer_workers = infer_workers;
        Ok(summary)
    }
}

/// What the stages count together: busy time per stage, candidates handed on, and candidates
/// dropped because their file changed (they owe no row).
#[derive(Clone, Default)]
struct Counts {
    clock: Arc<StageClock>,
    discovered: Arc<AtomicU64>,
    superseded: Arc<AtomicU64>,
}

/// The source on a blocking thread, counting what it hands on and ending when `stop` is set.
fn spawn_source(
    source: Source,
    candidates: Sender<Candidate>,
    stop: Arc<AtomicBool>,
    counts: &Counts,
) -> JoinHandle<()> {
    let counts = counts.clone();
    tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let mut emit = |c: Candidate| {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            counts.discovered.fetch_add(1, Ordering::Relaxed);
            candidates.send_blocking(c).is_ok()
        };
        source(&mut emit);
        counts.clock.add(Stage::Walk, t.elapsed());
    })
}

/// `decode_threads` decoders sharing the candidates; images go on to the batcher, final rows
/// straight to the collector.
fn spawn_decoders(
    config: &PipelineConfig,
    specs: &[InputSpec],
    candidates: Receiver<Candidate>,
    prepared: Sender<Prepared>,
    done: &Sender<Verdict>,
    counts: &Counts,
) -> Vec<JoinHandle<()>> {
    let extent = if config.partial_decode {
        decode::Extent::for_inputs(specs)
    } else {
        decode::Extent::Full
    };
    (0..config.decode_threads.max(1))
        .map(|_| {
            let (candidates, prepared, done) = (candidates.clone(), prepared.clone(), done.clone());
            let (specs, counts) = (specs.to_vec(), counts.clone());
            let settings = DecodeSettings {
                limits: config.limits,
                extent,
                provenance: config.provenance.clone(),
            };
            tokio::task::spawn_blocking(move || {
                let out = DecodeOutput {
                    prepared: &prepared,
                    done: &done,
                    superseded: &counts.superseded,
                };
                decode_loop(&candidates, &out, &specs, &settings, &counts.clock)
            })
        })
        .collect()
}

/// One thread per scorer, all taking batches from one channel, so a faster device takes more.
fn spawn_scorers(
    scorers: Vec<Box<dyn Scorer>>,
    batches: Receiver<Vec<Prepared>>,
    done: Sender<Verdict>,
    counts: &Counts,
) -> Vec<JoinHandle<()>> {
    scorers
        .into_iter()
        .map(|mut scorer| {
            let (batches, done, clock) = (batches.clone(), done.clone(), counts.clock.clone());
            tokio::task::spawn_blocking(move || {
                infer_loop(scorer.as_mut(), &batches, &done, &clock)
            })
        })
        .collect()
}
