//! The collector: the one place rows leave the pipeline. It counts them into the summary,
//! shows them to the observer, and hands them to the sink in groups, written promptly when
//! files trickle in and on time ticks when none come.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_channel::Receiver;

use super::summary::{Stage, StageClock, Summary};
use super::test_hooks;
use super::{Observer, PipelineError};
use crate::sink::Sink;
use crate::verdict::{Table, Verdict};

/// The collector hands rows to the sink in groups of this size (or when the input pauses).
const SINK_GROUP: usize = 256;
/// How often an idle collector lets the sink act on time (see [`Sink::tick`]).
const SINK_TICK: Duration = Duration::from_millis(200);

pub fn collect(
    input: Receiver<Verdict>,
    mut sink: Box<dyn Sink>,
    mut observer: Observer,
    clock: &StageClock,
    discovered: &AtomicU64,
    table: Table,
) -> Result<Summary, PipelineError> {
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
        test_hooks::inject(test_hooks::Site::Collect, [v.meta.path.as_str()]);
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
