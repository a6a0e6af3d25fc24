//! The pipeline's promises, with runners that need no ONNX Runtime: every candidate becomes
//! exactly one row, rows that failed before inference never reach a scorer, a failing or
//! panicking scorer costs its batch's scores and nothing else, and a stop drains what is in
//! flight instead of dropping it.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::{ImageFormat, RgbImage};

use super::{Observer, Pipeline, PipelineConfig, Source};
use crate::model::infer::{InferError, ModelSet};
use crate::model::manifest::{self, ThresholdChoice};
use crate::model::scorer::Scorer;
use crate::sink::{Sink, SinkError};
use crate::source::Candidate;
use crate::verdict::{Status, Verdict};

/// How a test runner behaves on every batch.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Scores each image by its first tensor value, so rows can be told apart.
    Score,
    Fail,
    Panic,
}

struct FakeScorer {
    behaviour: Behaviour,
    /// Images this runner was handed, over all batches.
    seen: Arc<AtomicUsize>,
}

impl Scorer for FakeScorer {
    fn score_batch(&mut self, images: &[Vec<Vec<f32>>]) -> Result<Vec<Vec<f32>>, InferError> {
        self.seen.fetch_add(images.len(), Ordering::SeqCst);
        match self.behaviour {
            Behaviour::Score => Ok(images
                .iter()
                .map(|t| vec![t[0][0].abs().min(1.0)])
                .collect()),
            Behaviour::Fail => Err(InferError::Run {
                model: "fake".into(),
                batch: images.len(),
                reason: "the device went away".into(),
            }),
            Behaviour::Panic => panic!("a session panicked"),
        }
    }

    fn throughput(&mut self, _n: usize) -> Result<f64, InferError> {
        Ok(1.0)
    }

    fn precisions(&self) -> Vec<String> {
        vec!["fp32".into()]
    }
}

/// Keeps every row it is given, and whether it was finished.
#[derive(Clone, Default)]
struct Collected {
    rows: Arc<Mutex<Vec<Verdict>>>,
    finished: Arc<AtomicBool>,
}

impl Sink for Collected {
    fn write(&mut self, rows: &[Verdict]) -> Result<(), SinkError> {
        self.rows.lock().unwrap().extend_from_slice(rows);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Option<std::path::PathBuf>, SinkError> {
        self.finished.store(true, Ordering::SeqCst);
        Ok(None)
    }
}

fn models() -> ModelSet {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-cnn.json");
    let entry = manifest::load(&path).unwrap();
    ModelSet::new(vec![entry], ThresholdChoice::default()).unwrap()
}

fn png(shade: u8) -> bytes::Bytes {
    let mut out = Cursor::new(Vec::new());
    RgbImage::from_pixel(24, 16, image::Rgb([shade, shade, shade]))
        .write_to(&mut out, ImageFormat::Png)
        .unwrap();
    out.into_inner().into()
}

/// `good` decodable images, `garbage` undecodable ones and `defective` ones the source
/// already refused, interleaved.
fn candidates(good: usize, garbage: usize, defective: usize) -> Vec<Candidate> {
    let mut all = Vec::new();
    for i in 0..good.max(garbage).max(defective) {
        if i < good {
            all.push(Candidate::in_memory(
                format!("good{i}.png"),
                0,
                png(i as u8),
            ));
        }
        if i < garbage {
            let bytes = bytes::Bytes::from_static(b"\x89PNG\r\n\x1a\n not really");
            all.push(Candidate::in_memory(format!("garbage{i}.png"), 0, bytes));
        }
        if i < defective {
            all.push(Candidate::defective(
                format!("unreadable{i}.jpg").into(),
                Status::IoError,
                "permission denied",
            ));
        }
    }
    all
}

struct Run {
    rows: Vec<Verdict>,
    seen: usize,
    finished: bool,
    candidates: u64,
}

fn run(
    behaviour: Behaviour,
    workers: usize,
    input: Vec<Candidate>,
    stop_after_rows: Option<u64>,
) -> Run {
    let seen = Arc::new(AtomicUsize::new(0));
    let scorers: Vec<Box<dyn Scorer>> = (0..workers)
        .map(|_| {
            Box::new(FakeScorer {
                behaviour,
                seen: seen.clone(),
            }) as Box<dyn Scorer>
        })
        .collect();
    let mut config = PipelineConfig::for_cores(2);
    config.batch_size = 4;
    config.linger = Duration::from_millis(5);
    let pipeline = Pipeline::with_scorers(models(), scorers, config);

    let stop = Arc::new(AtomicBool::new(false));
    let source: Source = Box::new(move |emit| {
        for c in input {
            if !emit(c) {
                return;
            }
        }
    });
    let observer: Observer = match stop_after_rows {
        Some(n) => {
            let (stop, mut rows) = (stop.clone(), 0);
            Box::new(move |_, _| {
                rows += 1;
                if rows >= n {
                    stop.store(true, Ordering::SeqCst);
                }
            })
        }
        None => Box::new(|_, _| {}),
    };
    let sink = Collected::default();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let summary = runtime
        .block_on(pipeline.run(source, Box::new(sink.clone()), stop, observer))
        .unwrap();
    let rows = sink.rows.lock().unwrap().clone();
    assert_eq!(summary.rows, rows.len() as u64);
    Run {
        rows,
        seen: seen.load(Ordering::SeqCst),
        finished: sink.finished.load(Ordering::SeqCst),
        candidates: summary.candidates,
    }
}

fn count(rows: &[Verdict], status: Status) -> usize {
    rows.iter().filter(|v| v.status == status).count()
}

fn paths(rows: &[Verdict]) -> std::collections::BTreeSet<String> {
    rows.iter().map(|v| v.meta.path.clone()).collect()
}

#[test]
fn every_candidate_is_one_row_and_only_decoded_images_reach_the_scorer() {
    let input = candidates(30, 7, 5);
    let names: std::collections::BTreeSet<String> = input.iter().map(Candidate::display).collect();
    let r = run(Behaviour::Score, 2, input, None);
    assert_eq!(r.rows.len(), 42);
    assert_eq!(paths(&r.rows), names, "each candidate exactly once");
    assert_eq!(count(&r.rows, Status::Ok), 30);
    assert_eq!(count(&r.rows, Status::DecodeError), 7);
    assert_eq!(count(&r.rows, Status::IoError), 5);
    assert_eq!(r.seen, 30, "error rows never go to inference");
    let scored = |v: &Verdict| v.scores.first().copied().flatten().is_some();
    assert!(r.rows.iter().all(|v| (v.status == Status::Ok) == scored(v)));
    assert!(r.finished);
}

#[test]
fn a_failing_scorer_costs_scores_not_rows() {
    let r = run(Behaviour::Fail, 1, candidates(9, 2, 1), None);
    assert_eq!(r.rows.len(), 12);
    assert_eq!(count(&r.rows, Status::InferenceError), 9);
    let v = r
        .rows
        .iter()
        .find(|v| v.status == Status::InferenceError)
        .unwrap();
    assert!(
        v.error.as_deref().unwrap().contains("the device went away"),
        "{v:?}"
    );
}

#[test]
fn a_panicking_scorer_is_contained_to_its_batches() {
    let r = run(Behaviour::Panic, 2, candidates(10, 1, 0), None);
    assert_eq!(r.rows.len(), 11);
    assert_eq!(count(&r.rows, Status::InferenceError), 10);
    assert!(r.finished);
}

#[test]
fn a_stop_drains_what_is_in_flight_and_loses_nothing() {
    // More than the channels between the stages hold, so the stop finds the source still going.
    let r = run(Behaviour::Score, 1, candidates(5000, 0, 0), Some(5));
    assert!(r.candidates < 5000, "the stop ended the source early");
    assert_eq!(
        r.rows.len() as u64,
        r.candidates,
        "every handed-on file has its row"
    );
    assert_eq!(paths(&r.rows).len(), r.rows.len(), "no row twice");
    assert!(r.finished, "the sink is finalized after a stop");
}
