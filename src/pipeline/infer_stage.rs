//! The inference stage: each worker thread takes whole batches, scores them with its own
//! [`Scorer`], and turns every file of the batch into its row, scored or with the batch's error.

use std::time::Instant;

use async_channel::{Receiver, Sender};

use super::contain;
use super::summary::{Stage, StageClock};
use super::test_hooks;
use crate::decode::preprocess::Prepared;
use crate::model::infer::InferError;
use crate::model::scorer::Scorer;
use crate::verdict::{FileMeta, Status, Verdict};

pub fn infer_loop(
    worker: &mut dyn Scorer,
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
            test_hooks::inject(
                test_hooks::Site::Infer,
                metas.iter().map(|m| m.path.as_str()),
            );
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
