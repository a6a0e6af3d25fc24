//! Inference: one ONNX Runtime session per model per worker, scoring whole batches.
//!
//! A worker owns its sessions (no shared lock around `Session::run`) and runs on its own OS
//! thread, never on the async runtime. Every model sees the same decoded batch, so several models
//! cost one decode.

use std::sync::Arc;

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::{IoBinding, Session};
use ort::value::{Tensor, TensorRef};

use crate::model::device::{Device, GpuOptions};
use crate::model::manifest::distinct_specs;
use crate::model::manifest::{
    InputSpec, ManifestError, ModelEntry, OutputKind, ThresholdChoice, ThresholdSource,
};
use crate::model::precision::{self, Host, Precision};
use crate::model::runtime::Runtime;
use crate::verdict::ModelColumn;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("cannot create an ONNX Runtime session for model '{model}': {reason}")]
    Session { model: String, reason: String },
    #[error("model '{model}' failed on a batch of {batch}: {reason}")]
    Run {
        model: String,
        batch: usize,
        reason: String,
    },
    #[error("inference panicked on this file's batch: {0}")]
    Panicked(String),
}

/// How sessions are made.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// ONNX Runtime intra-op threads per session.
    pub intra_threads: usize,
    pub device: Device,
    /// Which variant of each model to load (see [`crate::model::precision`]).
    pub precision: Precision,
    pub gpu: GpuOptions,
    /// When a GPU provider cannot be used: warn and run on the CPU instead of failing.
    pub fallback_cpu: bool,
    /// Stage inputs in ONNX Runtime-allocated host memory bound to the session (pinned memory on
    /// GPUs), see [`Staging`]. On by default for GPUs; on the CPU it only exercises the same
    /// code.
    pub io_binding: bool,
}

impl SessionConfig {
    pub fn cpu(intra_threads: usize) -> Self {
        SessionConfig {
            intra_threads,
            device: Device::Cpu,
            precision: Precision::Auto,
            gpu: GpuOptions::default(),
            fallback_cpu: false,
            io_binding: false,
        }
    }
}

/// One model ready to score batches.
pub struct ModelSession {
    name: String,
    session: Session,
    input_name: String,
    output_name: String,
    kind: OutputKind,
    fake_index: usize,
    classes: usize,
    /// Which of the prepared tensors this model reads.
    spec_index: usize,
    /// The variant that was loaded (`fp32`, `fp16`, `int8`) and where it runs.
    pub precision: String,
    pub device: Device,
    height: usize,
    width: usize,
    staging: Option<Staging>,
}

/// I/O binding for a session: each batch is copied once into page-locked host memory that
/// ONNX Runtime allocated (so its copy to the GPU is a DMA transfer that needs no staging copy
/// of its own), and the output is bound to host memory, so it comes back in one copy per batch.
struct Staging {
    allocator: Allocator,
    binding: IoBinding,
    output: String,
    /// Where outputs go: ordinary host memory.
    host: MemoryInfo<'static>,
    /// The bound input tensor and the batch size it was made for; remade when the size changes
    /// (the last batch of a run, a batch cut short by the linger timeout).
    input: Option<(usize, Tensor<f32>)>,
}

impl Staging {
    fn new(session: &mut Session, device: Device, output: &str) -> ort::Result<Self> {
        let host = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::Default,
        )?;
        let input_memory = match device {
            Device::Cpu => host.clone(),
            Device::Cuda(id) | Device::TensorRt(id) => MemoryInfo::new(
                AllocationDevice::CUDA_PINNED,
                id,
                AllocatorType::Device,
                MemoryType::CPUInput,
            )?,
        };
        Ok(Staging {
            allocator: Allocator::new(session, input_memory)?,
            binding: session.create_binding()?,
            output: output.to_string(),
            host,
            input: None,
        })
    }

    /// Binds a batch of `n` images (`shape`) as the input, and an output of the matching shape.
    fn bind(&mut self, input_name: &str, shape: [usize; 4], data: &[f32]) -> ort::Result<()> {
        let n = shape[0];
        if self.input.as_ref().is_none_or(|(size, _)| *size != n) {
            self.input = Some((n, Tensor::<f32>::new(&self.allocator, shape)?));
            // A bound output keeps the shape of the run that allocated it: rebind it for the
            // new batch size.
            self.binding.clear_outputs();
            self.binding
                .bind_output_to_device(&self.output, &self.host)?;
        }
        let (_, tensor) = self.input.as_mut().expect("made above");
        tensor.extract_tensor_mut().1.copy_from_slice(data);
        self.binding.bind_input(input_name, tensor)
    }
}

impl ModelSession {
    pub fn new(
        runtime: &Runtime,
        entry: &ModelEntry,
        spec_index: usize,
        config: &SessionConfig,
    ) -> Result<Self, InferError> {
        let m = &entry.manifest;
        let session_err = |reason: String| InferError::Session {
            model: m.name.clone(),
            reason,
        };
        let mut device = config.device;
        let (mut session, precision) = match open(runtime, entry, device, config) {
            Ok(opened) => opened,
            Err(Failure::Provider(reason)) if config.fallback_cpu => {
                tracing::warn!(
                    "{}; scanning on the CPU (--fallback cpu)",
                    crate::model::device::explain_failure(device, &runtime.library, &reason)
                );
                device = Device::Cpu;
                open(runtime, entry, device, config).map_err(|f| session_err(f.to_string()))?
            }
            Err(Failure::Provider(reason)) => {
                return Err(session_err(crate::model::device::explain_failure(
                    device,
                    &runtime.library,
                    &reason,
                )))
            }
            Err(Failure::Manifest(e)) => return Err(e.into()),
            Err(f) => return Err(session_err(f.to_string())),
        };
        let has = |names: Vec<&str>, wanted: &str| names.contains(&wanted);
        let inputs: Vec<&str> = session.inputs().iter().map(|o| o.name()).collect();
        if !has(inputs.clone(), &m.input.name) {
            return Err(session_err(format!(
                "the manifest names input '{}', the model has {inputs:?}",
                m.input.name
            )));
        }
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if !has(outputs.clone(), &m.output.name) {
            return Err(session_err(format!(
                "the manifest names output '{}', the model has {outputs:?}",
                m.output.name
            )));
        }
        let staging = if config.io_binding {
            Staging::new(&mut session, device, &m.output.name)
                .inspect_err(|e| {
                    tracing::warn!("{}: no I/O binding ({e}); copying batches per run", m.name)
                })
                .ok()
        } else {
            None
        };
        Ok(ModelSession {
            staging,
            name: m.name.clone(),
            input_name: m.input.name.clone(),
            output_name: m.output.name.clone(),
            kind: m.output.kind,
            fake_index: m.fake_index,
            classes: m.labels.len(),
            spec_index,
            height: m.input.height as usize,
            width: m.input.width as usize,
            precision: precision.to_string(),
            device,
            session,
        })
    }

    /// Probability of AI-generated for each of the `n` images in `input` (NCHW, contiguous).
    pub fn score(&mut self, n: usize, input: &[f32]) -> Result<Vec<f32>, InferError> {
        let run_err = |reason: String| InferError::Run {
            model: self.name.clone(),
            batch: n,
            reason,
        };
        let shape = [n, 3, self.height, self.width];
        let outputs = match &mut self.staging {
            Some(staging) => {
                staging
                    .bind(&self.input_name, shape, input)
                    .map_err(|e| run_err(e.to_string()))?;
                self.session.run_binding(&staging.binding)
            }
            None => {
                let tensor = TensorRef::from_array_view((shape, input))
                    .map_err(|e| run_err(e.to_string()))?;
                self.session
                    .run(ort::inputs![self.input_name.as_str() => tensor])
            }
        }
        .map_err(|e| run_err(e.to_string()))?;
        let (out_shape, values) = outputs[self.output_name.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| run_err(e.to_string()))?;
        if values.len() != n * self.classes {
            return Err(run_err(format!(
                "output shape {out_shape:?}, expected [{n}, {}]",
                self.classes
            )));
        }
        Ok(values
            .chunks_exact(self.classes)
            .map(|row| match self.kind {
                OutputKind::Logits => softmax_at(row, self.fake_index),
                OutputKind::Probabilities => row[self.fake_index],
            })
            .collect())
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The execution provider could not be registered: the device is unusable.
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Other(String),
}

/// Opens the variant of a model that `--precision` picks for the device.
fn open(
    runtime: &Runtime,
    entry: &ModelEntry,
    device: Device,
    config: &SessionConfig,
) -> Result<(Session, &'static str), Failure> {
    let listed: Vec<&str> = entry
        .manifest
        .variants
        .iter()
        .map(|v| v.precision.as_str())
        .collect();
    let precision = precision::choose(config.precision, device, &listed, Host::detect())
        .map_err(|e| Failure::Other(e.to_string()))?;
    let (path, bytes) = entry.read_verified(precision)?;
    // Full graph optimization crashed ONNX Runtime's CPU provider at session creation on an
    // FP16 ViT; extended optimization loads it at no measurable cost.
    let level = if precision == precision::FP16 {
        GraphOptimizationLevel::Level2
    } else {
        GraphOptimizationLevel::All
    };
    let other = |e: String| Failure::Other(format!("{e} ({})", path.display()));
    let text = |e: ort::Error<SessionBuilder>| e.to_string();
    let mut builder = Session::builder(&runtime.env)
        .map_err(|e| other(e.to_string()))?
        .with_optimization_level(level)
        .map_err(|e| other(text(e)))?
        .with_intra_threads(config.intra_threads.max(1))
        .map_err(|e| other(text(e)))?
        .with_inter_threads(1)
        .map_err(|e| other(text(e)))?
        // Spinning threads would steal the cores the decode pool needs between batches.
        .with_intra_op_spinning(false)
        .map_err(|e| other(text(e)))?;
    if device.is_gpu() {
        crate::model::device::preload_gpu_libraries(&runtime.library);
        let input = &entry.manifest.input;
        let eps = crate::model::device::providers(
            device,
            &config.gpu,
            &input.name,
            (input.height, input.width),
        );
        builder = builder
            .with_execution_providers(eps)
            .map_err(|e| Failure::Provider(text(e)))?;
    }
    // On a GPU, a provider that registered can still fail to load its libraries here.
    let session = builder.commit_from_memory(&bytes).map_err(|e| {
        if device.is_gpu() {
            Failure::Provider(e.to_string())
        } else {
            other(e.to_string())
        }
    })?;
    Ok((session, precision))
}

fn softmax_at(row: &[f32], index: usize) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
    (row[index] - max).exp() / sum
}

/// What a set of models needs from the rest of the pipeline.
#[derive(Debug, Clone)]
pub struct ModelSet {
    pub entries: Vec<ModelEntry>,
    /// The distinct input specs: one tensor per file for each.
    pub specs: Vec<InputSpec>,
    /// For each entry, the index of its input spec among the distinct ones.
    pub spec_index: Vec<usize>,
    pub columns: Vec<ModelColumn>,
    /// Where each column's threshold came from, in column order.
    pub threshold_sources: Vec<ThresholdSource>,
}

impl ModelSet {
    /// The models in column order, each with the threshold `thresholds` picks for it. The
    /// distinct input specs are worked out here, once, for the decode stage and the sessions
    /// alike.
    pub fn new(
        entries: Vec<ModelEntry>,
        thresholds: ThresholdChoice,
    ) -> Result<Self, ManifestError> {
        let (specs, spec_index) = distinct_specs(entries.iter().map(|e| &e.manifest.input));
        let mut columns = Vec::new();
        let mut threshold_sources = Vec::new();
        for e in &entries {
            let (threshold, source) = thresholds.pick(&e.manifest)?;
            columns.push(ModelColumn {
                name: e.manifest.name.clone(),
                version: e.manifest.version.clone(),
                threshold,
                precision: "fp32".into(),
            });
            threshold_sources.push(source);
        }
        Ok(ModelSet {
            entries,
            specs,
            spec_index,
            columns,
            threshold_sources,
        })
    }
}

/// Scores batches with every model; owned by one inference thread.
pub struct Worker {
    sessions: Vec<ModelSession>,
    /// Reused batch buffers, one per input spec, so steady state allocates nothing per batch.
    buffers: Vec<Vec<f32>>,
}

impl Worker {
    pub fn new(
        runtime: &Arc<Runtime>,
        models: &ModelSet,
        config: &SessionConfig,
    ) -> Result<Self, InferError> {
        let sessions = models
            .entries
            .iter()
            .zip(&models.spec_index)
            .map(|(entry, &spec)| ModelSession::new(runtime, entry, spec, config))
            .collect::<Result<Vec<_>, _>>()?;
        let specs = models.spec_index.iter().max().map_or(0, |m| m + 1);
        Ok(Worker {
            sessions,
            buffers: vec![Vec::new(); specs],
        })
    }

    /// Images per second through every model at batch size `n`, on synthetic input (one
    /// warm-up run, then the best of two: the first runs of a size pay for allocations).
    pub fn throughput(&mut self, n: usize) -> Result<f64, InferError> {
        let mut best = f64::INFINITY;
        for round in 0..3 {
            let started = std::time::Instant::now();
            for session in &mut self.sessions {
                let input = vec![0f32; n * 3 * session.height * session.width];
                session.score(n, &input)?;
            }
            if round > 0 {
                best = best.min(started.elapsed().as_secs_f64());
            }
        }
        Ok(n as f64 / best.max(1e-9))
    }

    /// The precision each model actually runs at, in model order.
    pub fn precisions(&self) -> Vec<String> {
        self.sessions.iter().map(|s| s.precision.clone()).collect()
    }

    /// Every model's probability of AI-generated for each image of a batch, as
    /// `scores[image][model]`. Each image is given as its tensors, one per distinct input spec.
    /// The worker knows nothing of files: the pipeline pairs the scores with their rows.
    /// An image cut into several crops is several inputs; its score is their mean.
    pub fn score_batch(&mut self, images: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<f32>>, InferError> {
        let n = images.len();
        for (spec, buf) in self.buffers.iter_mut().enumerate() {
            buf.clear();
            for tensors in images {
                buf.extend_from_slice(&tensors[spec]);
            }
        }
        let mut per_model: Vec<Vec<f32>> = Vec::with_capacity(self.sessions.len());
        for session in &mut self.sessions {
            let input = &self.buffers[session.spec_index];
            let per_input = 3 * session.height * session.width;
            let scores = session.score(input.len() / per_input, input)?;
            per_model.push(mean_per_image(
                &scores,
                images
                    .iter()
                    .map(|t| t[session.spec_index].len() / per_input),
            ));
        }
        Ok((0..n)
            .map(|i| per_model.iter().map(|s| s[i]).collect())
            .collect())
    }
}

/// Per-input scores folded back to one per image, given each image's number of inputs.
fn mean_per_image(scores: &[f32], counts: impl Iterator<Item = usize>) -> Vec<f32> {
    let mut at = 0;
    counts
        .map(|n| {
            let mean = scores[at..at + n].iter().sum::<f32>() / n as f32;
            at += n;
            mean
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_of_one_image_are_averaged() {
        let scores = [0.2, 0.4, 0.9, 0.1, 0.3, 0.5, 0.7];
        let got = mean_per_image(&scores, [2, 1, 4].into_iter());
        assert_eq!(got.len(), 3);
        assert!((got[0] - 0.3).abs() < 1e-6 && (got[1] - 0.9).abs() < 1e-6);
        assert!((got[2] - 0.4).abs() < 1e-6);
    }

    #[test]
    fn softmax_is_a_probability() {
        let p = softmax_at(&[0.0, 0.0], 1);
        assert!((p - 0.5).abs() < 1e-6);
        let p = softmax_at(&[1000.0, -1000.0], 1);
        assert!(p.is_finite() && p < 1e-6);
    }
}
