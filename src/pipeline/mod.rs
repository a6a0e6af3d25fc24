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
pub mod contain;
pub mod pause;
pub mod run_metadata;
pub mod summary;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{bounded, Receiver, Sender};

use crate::decode::preprocess::{Prepared, Preprocessor};
use crate::decode::{self, Limits};
use crate::model::device::Device;
use crate::model::infer::{InferError, ModelSet, SessionConfig, Worker};
use crate::model::runtime::Runtime;
use crate::provenance;
use crate::sink::{Sink, SinkError};
use crate::source::{Candidate, Version};
use crate::verdict::{FileMeta, Status, Verdict};
use summary::{Stage, StageClock, Summary};

/// Paths are small; a deep queue lets the walk run ahead of slow decoding.
const CANDIDATE_CAPACITY: usize = 1024;
/// Rows waiting for the sink; each is a few hundred bytes.
const VERDICT_CAPACITY: usize = 1024;
/// The collector hands rows to the sink in groups of this size (or when the input pauses).
const SINK_GROUP: usize = 256;
/// How often an idle collector lets the sink act on time (see [`Sink::tick`]).
const SINK_TICK: Duration = Duration::from_millis(200);

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
    workers: Vec<Worker>,
}

impl Pipeline {
    pub fn new(
        runtime: &Arc<Runtime>,
        mut models: ModelSet,
        config: PipelineConfig,
    ) -> Result<Self, PipelineError> {
        let mut workers = Vec::new();
        for &device in &config.devices {
            let session = SessionConfig {
                device,
                ..config.session.clone()
            };
            for _ in 0..config.sessions_per_device.max(1) {
                workers.push(Worker::new(runtime, &models, &session)?);
            }
        }
        // The precision a model runs at is known once its sessions exist (what --precision
        // picked for the device the session ended up on, the CPU after a fallback).
        if let Some(first) = workers.first() {
            for (column, precision) in models.columns.iter_mut().zip(first.precisions()) {
                column.precision = precision;
            }
        }
        Ok(Pipeline {
            config,
            models,
            workers,
        })
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
        } = self;
        let clock = Arc::new(StageClock::default());
        let discovered = Arc::new(AtomicU64::new(0));
        let superseded = Arc::new(AtomicU64::new(0));
        let (cand_tx, cand_rx) = bounded::<Candidate>(CANDIDATE_CAPACITY);
        let (prep_tx, prep_rx) = bounded::<Prepared>(config.batch_size * 2);
        let (batch_tx, batch_rx) = bounded::<Vec<Prepared>>(workers.len());
        let (verdict_tx, verdict_rx) = bounded::<Verdict>(VERDICT_CAPACITY);

        let source_task = {
            let discovered = discovered.clone();
            let clock = clock.clone();
            tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                let mut emit = |c: Candidate| {
                    if stop.load(Ordering::Relaxed) {
                        return false;
                    }
                    discovered.fetch_add(1, Ordering::Relaxed);
                    cand_tx.send_blocking(c).is_ok()
                };
                source(&mut emit);
                clock.add(Stage::Walk, t.elapsed());
            })
        };

        let specs = models.specs.clone();
        let extent = if config.partial_decode {
            decode::Extent::for_inputs(&specs)
        } else {
            decode::Extent::Full
        };
        let mut tasks = Vec::new();
        for _ in 0..config.decode_threads.max(1) {
            let (cand_rx, prep_tx, verdict_tx) =
                (cand_rx.clone(), prep_tx.clone(), verdict_tx.clone());
            let (specs, clock, superseded) = (specs.clone(), clock.clone(), superseded.clone());
            let decode = DecodeSettings {
                limits: config.limits,
                extent,
                provenance: config.provenance.clone(),
            };
            tasks.push(tokio::task::spawn_blocking(move || {
                let out = DecodeOutput {
                    prepared: &prep_tx,
                    done: &verdict_tx,
                    superseded: &superseded,
                };
                decode_loop(&cand_rx, &out, &specs, &decode, &clock)
            }));
        }
        drop((cand_rx, prep_tx));

        let batcher = tokio::spawn(batch::run(
            prep_rx,
            batch_tx,
            config.batch_size,
            config.linger,
        ));

        for mut worker in workers {
            let (batch_rx, verdict_tx, clock) =
                (batch_rx.clone(), verdict_tx.clone(), clock.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                infer_loop(&mut worker, &batch_rx, &verdict_tx, &clock)
            }));
        }
        drop((batch_rx, verdict_tx));

        let columns = models.columns.clone();
        let collector = {
            let (clock, discovered) = (clock.clone(), discovered.clone());
            tokio::task::spawn_blocking(move || {
                collect(verdict_rx, sink, observer, &clock, &discovered, columns)
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
            discovered.load(Ordering::Relaxed) - superseded.load(Ordering::Relaxed);
        if summary.rows != summary.candidates {
            return Err(PipelineError::Lost {
                candidates: summary.candidates,
                rows: summary.rows,
            });
        }
        summary.wall = started.elapsed();
        summary.stages = clock.snapshot();
        summary.decode_threads = config.decode_threads;
        summary.infer_workers = config.devices.len() * config.sessions_per_device.max(1);
        Ok(summary)
    }
}

/// What the decode stage makes of a candidate: an image for the models, or its final row.
enum Decoded {
    Ready(Prepared),
    Done(Verdict),
    /// The file changed after its source handed it on; the source hands on the new version.
    Superseded,
}

/// Where the decode stage sends what it makes of each candidate.
struct DecodeOutput<'a> {
    prepared: &'a Sender<Prepared>,
    done: &'a Sender<Verdict>,
    /// Candidates dropped as [`Decoded::Superseded`]: they owe no row.
    superseded: &'a AtomicU64,
}

/// How the decode stage decodes: its limits, and how much of a JPEG it must decode.
struct DecodeSettings {
    limits: Limits,
    extent: decode::Extent,
    provenance: Option<Arc<provenance::Reader>>,
}

fn decode_loop(
    input: &Receiver<Candidate>,
    out: &DecodeOutput,
    specs: &[crate::model::manifest::InputSpec],
    decode: &DecodeSettings,
    clock: &StageClock,
) {
    let mut pre = Preprocessor::new(specs);
    while let Ok(candidate) = input.recv_blocking() {
        let sent = match prepare(candidate, decode, &mut pre, specs, clock) {
            Decoded::Ready(p) => out.prepared.send_blocking(p).is_ok(),
            Decoded::Done(v) => out.done.send_blocking(v).is_ok(),
            Decoded::Superseded => {
                out.superseded.fetch_add(1, Ordering::Relaxed);
                true
            }
        };
        if !sent {
            return;
        }
    }
}

fn prepare(
    candidate: Candidate,
    settings: &DecodeSettings,
    pre: &mut Preprocessor,
    specs: &[crate::model::manifest::InputSpec],
    clock: &StageClock,
) -> Decoded {
    let mut meta = FileMeta::of_path(&candidate.path);
    meta.ticket = candidate.content.as_ref().map(|upload| upload.ticket);
    if let Some(defect) = candidate.defect {
        return Decoded::Done(Verdict::failed(meta, defect.status, defect.message));
    }
    // A decoder or the resizer panicking on this file's bytes costs this file's row, not the
    // worker: the row says so, and the next file gets a fresh preprocessor.
    let step = std::cell::Cell::new("decoding");
    let superseded = std::cell::Cell::new(false);
    let outcome = contain::run(|| {
        contain::inject(contain::Site::Decode, [meta.path.as_str()]);
        pause::decode(&meta.path);
        let t = Instant::now();
        let (limits, extent) = (&settings.limits, settings.extent);
        let bytes = match &candidate.content {
            Some(upload) => Ok(upload.bytes.clone()),
            None => decode::read_file(&candidate.path, limits, &mut meta).map(bytes::Bytes::from),
        };
        if let (Ok(bytes), Some(version)) = (&bytes, candidate.version) {
            if !read_as_handed_on(&candidate.path, version, &meta, bytes.len()) {
                superseded.set(true);
                return Err((Status::IoError, String::new()));
            }
        }
        let image = bytes.and_then(|bytes| {
            let image = decode::decode_file_bytes(&bytes, limits, extent, &mut meta);
            // Read whatever the pixels did: a file that does not decode still declares what it
            // declares.
            match &settings.provenance {
                Some(reader) if bytes.len() as u64 <= limits.max_file_bytes => {
                    meta.provenance = Some(reader.read(&bytes));
                }
                _ => {}
            }
            image
        });
        clock.add(Stage::Decode, t.elapsed());
        let image = image.map_err(|e| (e.status(), e.to_string()))?;
        step.set("resizing");
        let t = Instant::now();
        let tensors = pre.prepare(&image);
        clock.add(Stage::Resize, t.elapsed());
        tensors.map_err(|e| (Status::DecodeError, e.to_string()))
    });
    if superseded.get() {
        tracing::info!(
            "{} changed while it was read; its new version is scored instead",
            meta.path
        );
        return Decoded::Superseded;
    }
    match outcome {
        Ok(Ok(tensors)) => Decoded::Ready(Prepared { meta, tensors }),
        Ok(Err((status, message))) => Decoded::Done(Verdict::failed(meta, status, message)),
        Err(panic) => {
            *pre = Preprocessor::new(specs);
            let message = format!("panicked while {}: {panic}", step.get());
            tracing::error!("{}: {message}", meta.path);
            Decoded::Done(Verdict::failed(meta, Status::DecodeError, message))
        }
    }
}

/// Whether the bytes read are the version the source handed on: the look before the read, the
/// number of bytes read and a look after it all agree with that version. Anything else means
/// the file was rewritten in between, and the bytes may even be half of each version.
fn read_as_handed_on(
    path: &std::path::Path,
    version: Version,
    meta: &FileMeta,
    len: usize,
) -> bool {
    let before = meta.size_bytes.map(|size| Version {
        size,
        modified_ms: meta.modified_ms,
    });
    let after = std::fs::metadata(path).ok().and_then(|m| Version::of(&m));
    before == Some(version) && after == Some(version) && len as u64 == version.size
}

fn infer_loop(
    worker: &mut Worker,
    batches: &Receiver<Vec<Prepared>>,
    done: &Sender<Verdict>,
    clock: &StageClock,
) {
    while let Ok(batch) = batches.recv_blocking() {
        let (metas, images): (Vec<FileMeta>, Vec<Vec<Vec<f32>>>) =
            batch.into_iter().map(|p| (p.meta, p.tensors)).unzip();
        let t = Instant::now();
        // A panic in a session costs this batch's scores, not the worker.
        let scores = contain::run(|| {
            contain::inject(contain::Site::Infer, metas.iter().map(|m| m.path.as_str()));
            worker.score_batch(&images)
        })
        .unwrap_or_else(|panic| Err(InferError::Panicked(panic.to_string())));
        clock.add(Stage::Infer, t.elapsed());
        for v in rows(metas, scores) {
            if done.send_blocking(v).is_err() {
                return;
            }
        }
    }
}

/// One row per file of a batch: scored, or with the batch's inference error.
fn rows(metas: Vec<FileMeta>, scores: Result<Vec<Vec<f32>>, InferError>) -> Vec<Verdict> {
    match scores {
        Ok(scores) => metas
            .into_iter()
            .zip(scores)
            .map(|(meta, s)| Verdict::scored(meta, s))
            .collect(),
        Err(e) => {
            tracing::warn!("{e}");
            let msg = e.to_string();
            metas
                .into_iter()
                .map(|meta| Verdict::failed(meta, Status::InferenceError, msg.clone()))
                .collect()
        }
    }
}

fn collect(
    input: Receiver<Verdict>,
    mut sink: Box<dyn Sink>,
    mut observer: Observer,
    clock: &StageClock,
    discovered: &AtomicU64,
    columns: Vec<crate::verdict::ModelColumn>,
) -> Result<Summary, PipelineError> {
    let table = crate::verdict::Table::new(columns);
    let mut summary = Summary::default();
    let mut group = Vec::with_capacity(SINK_GROUP);
    let flush = |group: &mut Vec<Verdict>, sink: &mut Box<dyn Sink>| {
        let t = Instant::now();
        let r = sink.write(group);
        clock.add(Stage::Write, t.elapsed());
        group.clear();
        r
    };
    // The collector runs on a blocking thread of the runtime, so it can wait on the channel with
    // a deadline through the runtime's timer.
    let rt = tokio::runtime::Handle::current();
    loop {
        let v = match rt.block_on(tokio::time::timeout(SINK_TICK, input.recv())) {
            Ok(Ok(v)) => v,
            Ok(Err(_)) => break,
            Err(_) => {
                sink.tick()?;
                continue;
            }
        };
        contain::inject(contain::Site::Collect, [v.meta.path.as_str()]);
        summary.record(&table, &v);
        observer(&v, discovered.load(Ordering::Relaxed));
        group.push(v);
        // Write when the group is full or nothing else is waiting, so rows reach the file
        // promptly when files trickle in.
        if group.len() >= SINK_GROUP || input.is_empty() {
            flush(&mut group, &mut sink)?;
        }
    }
    if !group.is_empty() {
        flush(&mut group, &mut sink)?;
    }
    let t = Instant::now();
    summary.output = sink.finish()?;
    clock.add(Stage::Write, t.elapsed());
    Ok(summary)
}
