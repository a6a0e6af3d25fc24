//! One long-lived pipeline shared by every request: uploads go in as in-memory candidates on a
//! bounded channel, and each verdict comes back to the request that sent its file through a
//! ticket. Many clients therefore share the same decode pool, batches and inference workers as
//! `scan`, and a burst of uploads waits on the channel instead of growing memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_channel::{Receiver, Sender};
use tokio::sync::oneshot;

use crate::pipeline::Source;
use crate::sink::{Sink, SinkError};
use crate::source::{Candidate, Defect};
use crate::verdict::Verdict;

/// Uploaded files waiting to be decoded, across all requests.
const INGEST_CAPACITY: usize = 64;

/// A file taken from a request (a multipart part or a zip entry), before scoring.
#[derive(Debug, Clone)]
pub struct NamedFile {
    /// The client's name for it; only ever a label, never a filesystem path.
    pub name: String,
    pub bytes: bytes::Bytes,
    /// Set when the upload layer already knows it cannot be scored (an unsafe zip entry name).
    pub defect: Option<Defect>,
}

type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Verdict>>>>;

#[derive(Debug, thiserror::Error)]
#[error("the scoring pipeline has stopped")]
pub struct Stopped;

#[derive(Clone)]
pub struct Dispatcher {
    ingest: Sender<Candidate>,
    waiting: Waiting,
    next_ticket: Arc<AtomicU64>,
}

impl Dispatcher {
    /// The dispatcher, the pipeline source it feeds, the sink that routes rows back, and the
    /// [`Closer`] for when the pipeline has ended. The source ends when every clone of the
    /// dispatcher is dropped, or when the closer closes it.
    pub fn new() -> (Self, Source, Box<dyn Sink>, Closer) {
        let (ingest, candidates) = async_channel::bounded(INGEST_CAPACITY);
        let waiting = Waiting::default();
        let dispatcher = Dispatcher {
            ingest,
            waiting: waiting.clone(),
            next_ticket: Arc::new(AtomicU64::new(1)),
        };
        let closer = Closer {
            waiting: waiting.clone(),
            candidates: candidates.clone(),
        };
        (
            dispatcher,
            source(candidates),
            Box::new(RouteSink { waiting }),
            closer,
        )
    }

    /// Scores the files; one verdict per file, in the order given.
    pub async fn score(&self, files: Vec<NamedFile>) -> Result<Vec<Verdict>, Stopped> {
        let mut answers = Vec::with_capacity(files.len());
        for file in files {
            let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
            let (tx, rx) = oneshot::channel();
            self.waiting
                .lock()
                .expect("no panics while locked")
                .insert(ticket, tx);
            let candidate = Candidate {
                defect: file.defect,
                ..Candidate::in_memory(file.name, ticket, file.bytes)
            };
            if self.ingest.send(candidate).await.is_err() {
                self.waiting.lock().expect("no panics").remove(&ticket);
                return Err(Stopped);
            }
            answers.push(rx);
        }
        let mut verdicts = Vec::with_capacity(answers.len());
        for rx in answers {
            verdicts.push(rx.await.map_err(|_| Stopped)?);
        }
        Ok(verdicts)
    }
}

/// Answers everyone once the pipeline has ended (done or failed): the requests waiting for rows
/// and every later one get [`Stopped`] instead of waiting for rows that will never come.
pub struct Closer {
    waiting: Waiting,
    candidates: Receiver<Candidate>,
}

impl Closer {
    pub fn close(&self) {
        self.candidates.close();
        // Dropping the senders wakes their requests with an error.
        self.waiting.lock().expect("no panics while locked").clear();
    }
}

fn source(candidates: Receiver<Candidate>) -> Source {
    Box::new(move |emit| {
        while let Ok(candidate) = candidates.recv_blocking() {
            if !emit(candidate) {
                break;
            }
        }
    })
}

/// Hands each row to the request waiting for it. A row whose request has gone (the client
/// disconnected) is dropped: nobody is left to receive it.
struct RouteSink {
    waiting: Waiting,
}

impl Sink for RouteSink {
    fn write(&mut self, rows: &[Verdict]) -> Result<(), SinkError> {
        let mut waiting = self.waiting.lock().expect("no panics while locked");
        for row in rows {
            let Some(ticket) = row.meta.ticket else {
                tracing::warn!("{}: a row without a ticket", row.meta.path);
                continue;
            };
            if let Some(tx) = waiting.remove(&ticket) {
                let _ = tx.send(row.clone());
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Option<PathBuf>, SinkError> {
        Ok(None)
    }
}

impl NamedFile {
    pub fn new(name: String, bytes: bytes::Bytes) -> Self {
        NamedFile {
            name,
            bytes,
            defect: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{FileMeta, Status};

    #[tokio::test]
    async fn rows_find_their_request_whatever_order_they_come_in() {
        let (dispatcher, source, mut sink, _closer) = Dispatcher::new();
        // A stand-in pipeline: takes the candidates, answers them in reverse order.
        let pipeline = std::thread::spawn(move || {
            let mut got = Vec::new();
            source(&mut |c| {
                got.push(c);
                got.len() < 3
            });
            let rows: Vec<Verdict> = got
                .iter()
                .rev()
                .map(|c| {
                    let mut meta = FileMeta::new(c.display());
                    meta.ticket = c.content.as_ref().map(|u| u.ticket);
                    Verdict::failed(meta, Status::Unsupported, c.display())
                })
                .collect();
            sink.write(&rows).unwrap();
        });
        let files = ["a", "b", "c"]
            .map(|n| NamedFile::new(n.into(), bytes::Bytes::from_static(b"x")))
            .to_vec();
        let rows = dispatcher.score(files).await.unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r.meta.path.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        pipeline.join().unwrap();
    }

    #[tokio::test]
    async fn a_closed_dispatcher_answers_waiting_and_later_requests() {
        let (dispatcher, source, _sink, closer) = Dispatcher::new();
        // A pipeline that takes one file and dies without answering it.
        let pipeline = std::thread::spawn(move || source(&mut |_| false));
        let file = || vec![NamedFile::new("a".into(), bytes::Bytes::from_static(b"x"))];
        let waiting = tokio::spawn({
            let dispatcher = dispatcher.clone();
            async move { dispatcher.score(file()).await }
        });
        tokio::task::spawn_blocking(move || pipeline.join().unwrap())
            .await
            .unwrap();
        closer.close();
        assert!(waiting.await.unwrap().is_err());
        assert!(dispatcher.score(file()).await.is_err());
    }
}
