//! The decode stage, one candidate at a time: read the bytes (or take the upload's), check the
//! file is still the version its source handed on, decode the pixels, read provenance, and
//! prepare each model's tensor. What cannot become an image becomes its final row here, so it
//! never reaches inference; a panic costs this file's row and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_channel::{Receiver, Sender};

use super::contain;
use super::summary::{Stage, StageClock};
use super::test_hooks;
use crate::decode::preprocess::{Prepared, Preprocessor};
use crate::decode::{self, Limits};
use crate::model::manifest::InputSpec;
use crate::provenance;
use crate::source::{Candidate, Version};
use crate::verdict::{FileMeta, Status, Verdict};

/// What the decode stage makes of a candidate: an image for the models, or its final row.
enum Decoded {
    Ready(Prepared),
    Done(Verdict),
    /// The file changed after its source handed it on; the source hands on the new version.
    Superseded,
}

/// Where the decode stage sends what it makes of each candidate.
pub struct DecodeOutput<'a> {
    pub prepared: &'a Sender<Prepared>,
    pub done: &'a Sender<Verdict>,
    /// Candidates dropped as [`Decoded::Superseded`]: they owe no row.
    pub superseded: &'a AtomicU64,
}

/// How the decode stage decodes: its limits, and how much of a JPEG it must decode.
pub struct DecodeSettings {
    pub limits: Limits,
    pub extent: decode::Extent,
    pub provenance: Option<Arc<provenance::Reader>>,
}

pub fn decode_loop(
    input: &Receiver<Candidate>,
    out: &DecodeOutput,
    specs: &[InputSpec],
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
    specs: &[InputSpec],
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
        test_hooks::inject(test_hooks::Site::Decode, [meta.path.as_str()]);
        test_hooks::pause_decode(&meta.path);
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
