//! Run summary and per-stage busy time: what the user reads at the end of a scan, and what the
//! benchmark reads to tell which stage limits throughput.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::verdict::{Label, Status, Table, Verdict};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Walk,
    Decode,
    Resize,
    Infer,
    Write,
}

impl Stage {
    const ALL: [Stage; 5] = [
        Stage::Walk,
        Stage::Decode,
        Stage::Resize,
        Stage::Infer,
        Stage::Write,
    ];
}

/// Busy nanoseconds per stage, summed over the stage's threads.
#[derive(Debug, Default)]
pub struct StageClock([AtomicU64; 5]);

impl StageClock {
    pub fn add(&self, stage: Stage, d: Duration) {
        self.0[stage as usize].fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> BTreeMap<Stage, Duration> {
        Stage::ALL
            .iter()
            .map(|&s| {
                (
                    s,
                    Duration::from_nanos(self.0[s as usize].load(Ordering::Relaxed)),
                )
            })
            .collect()
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    /// Files the source handed on.
    pub candidates: u64,
    /// Rows written; equals `candidates` when the run completed.
    pub rows: u64,
    pub by_status: BTreeMap<Status, u64>,
    pub fake: u64,
    pub real: u64,
    #[serde(serialize_with = "secs")]
    pub wall: Duration,
    /// Busy time per stage, summed over its threads (decode includes reading the file).
    #[serde(serialize_with = "secs_map")]
    pub stages: BTreeMap<Stage, Duration>,
    pub decode_threads: usize,
    pub infer_workers: usize,
    pub output: Option<PathBuf>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn secs_map<S: serde::Serializer>(m: &BTreeMap<Stage, Duration>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(m.len()))?;
    for (k, v) in m {
        map.serialize_entry(k, &v.as_secs_f64())?;
    }
    map.end()
}

impl Summary {
    pub fn record(&mut self, table: &Table, v: &Verdict) {
        self.rows += 1;
        *self.by_status.entry(v.status).or_default() += 1;
        match table.final_label(v) {
            Some((Label::Fake, _)) => self.fake += 1,
            Some(_) => self.real += 1,
            None => {}
        }
    }

    pub fn scored(&self) -> u64 {
        self.by_status.get(&Status::Ok).copied().unwrap_or(0)
    }

    pub fn errors(&self) -> u64 {
        self.rows - self.scored()
    }

    pub fn images_per_sec(&self) -> f64 {
        self.scored() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The stage whose threads were busiest relative to the wall time: the one to speed up.
    pub fn bottleneck(&self) -> Option<(Stage, f64)> {
        let wall = self.wall.as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        let load = |stage: Stage, threads: usize| {
            let busy = self.stages.get(&stage).map_or(0.0, Duration::as_secs_f64);
            (stage, busy / threads.max(1) as f64 / wall)
        };
        let decode_and_resize = {
            let (_, d) = load(Stage::Decode, self.decode_threads);
            let (_, r) = load(Stage::Resize, self.decode_threads);
            (Stage::Decode, d + r)
        };
        [
            decode_and_resize,
            load(Stage::Infer, self.infer_workers),
            load(Stage::Write, 1),
        ]
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} files, {} scored, {} errors in {:.1}s ({:.1} images/s)",
            self.rows,
            self.scored(),
            self.errors(),
            self.wall.as_secs_f64(),
            self.images_per_sec()
        )?;
        writeln!(f, "verdicts: {} fake, {} real", self.fake, self.real)?;
        let errors: Vec<String> = self
            .by_status
            .iter()
            .filter(|(s, _)| **s != Status::Ok)
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        if !errors.is_empty() {
            writeln!(f, "errors by kind: {}", errors.join(", "))?;
        }
        if let Some((stage, load)) = self.bottleneck() {
            let busy: Vec<String> = self
                .stages
                .iter()
                .map(|(s, d)| format!("{s:?} {:.1}s", d.as_secs_f64()).to_lowercase())
                .collect();
            writeln!(
                f,
                "busiest stage: {:?} ({:.0}% busy); stage time: {}",
                stage,
                load * 100.0,
                busy.join(", ")
            )?;
        }
        if let Some(out) = &self.output {
            write!(f, "wrote {}", out.display())?;
        }
        Ok(())
    }
}
