//! What the pipeline asks of a model runner, and nothing more: score a batch, say how fast a
//! batch size runs, say which precision each model runs at. ONNX Runtime's [`Worker`] is the
//! runner the scanner uses; the pipeline's own tests use runners that need no ONNX Runtime, so
//! its promises (one row per candidate, drain on stop, error rows skip inference) are tested on
//! any machine.

use super::infer::{InferError, Worker};

/// Scores batches with every model of a set; one per inference thread, which owns it.
pub trait Scorer: Send {
    /// Every model's probability of AI-generated for each image, as `scores[image][model]`.
    /// Each image comes as its tensors, one per distinct input spec of the model set.
    fn score_batch(&mut self, images: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<f32>>, InferError>;

    /// Images per second through every model at batch size `n`.
    fn throughput(&mut self, n: usize) -> Result<f64, InferError>;

    /// The precision each model actually runs at, in model order.
    fn precisions(&self) -> Vec<String>;
}

impl Scorer for Worker {
    fn score_batch(&mut self, images: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<f32>>, InferError> {
        Worker::score_batch(self, images)
    }

    fn throughput(&mut self, n: usize) -> Result<f64, InferError> {
        Worker::throughput(self, n)
    }

    fn precisions(&self) -> Vec<String> {
        Worker::precisions(self)
    }
}
