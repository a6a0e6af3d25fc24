//! C2PA manifest stores (Content Credentials), read and validated with the `c2pa` crate, offline:
//! remote manifests and OCSP are never fetched.
//!
//! Every manifest in the store is walked, not only the active one: ChatGPT, for one, puts its
//! `c2pa.created` action with `trainedAlgorithmicMedia` in the manifest of the parent
//! ingredient, and the active manifest only says `c2pa.opened`.

use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use c2pa::{Context, Manifest, ValidationState};
use serde_json::Value;

use super::{Declaration, Kind};

/// What validating the store's signatures concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum C2paState {
    /// Well formed, signed, and the signing credential chains to a trust anchor.
    Valid,
    /// Well formed and correctly signed, but by a credential no trust anchor vouches for (the
    /// state of every valid signature when no anchors are given).
    Untrusted,
    /// Failed validation; the failure codes say why (`signingCredential.expired`,
    /// `assertion.dataHash.mismatch`, ...).
    Invalid(Vec<String>),
}

impl std::fmt::Display for C2paState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            C2paState::Valid => f.write_str("valid"),
            C2paState::Untrusted => f.write_str("untrusted"),
            C2paState::Invalid(codes) if codes.is_empty() => f.write_str("invalid"),
            C2paState::Invalid(codes) => write!(f, "invalid: {}", codes.join(", ")),
        }
    }
}

/// A read manifest store: what it declares, and whether its signatures hold.
#[derive(Debug, Clone)]
pub struct Store {
    pub declaration: Declaration,
    pub state: C2paState,
}

/// Validates manifest stores with one shared configuration.
#[derive(Clone)]
pub struct Verifier {
    context: Arc<Context>,
}

const AI_SOURCE_TYPES: [&str; 3] = [
    "trainedAlgorithmicMedia",
    "compositeWithTrainedAlgorithmicMedia",
    "compositeSynthetic",
];

impl Verifier {
    /// `trust_anchors`: a PEM bundle of root certificates that make a signature trusted.
    pub fn new(trust_anchors: Option<&str>) -> Result<Self, String> {
        let settings = serde_json::json!({
            "verify": {
                "verify_after_reading": true,
                "verify_trust": true,
                "remote_manifest_fetch": false,
                "ocsp_fetch": false,
            },
            // A compressed (brotli) store inflates within the same budget as text chunks.
            "core": {
                "decode_identity_assertions": false,
                "max_decompressed_manifest_size_in_mb":
                    super::container::TEXT_BUDGET / (1024 * 1024),
            },
            "trust": { "trust_anchors": trust_anchors },
            // Thumbnails are a signing feature, which a reader never uses; left on, the crate
            // warns on every scan that it was built without them.
            "builder": { "thumbnail": { "enabled": false } },
        });
        let context = Context::new()
            .with_settings(settings)
            .map_err(|e| e.to_string())?;
        Ok(Verifier {
            context: context.into_shared(),
        })
    }

    /// The store embedded in `bytes`; `None` when there is none after all. The crate's panics
    /// are kept to this file.
    pub fn read(&self, bytes: &[u8]) -> Result<Option<Store>, String> {
        let format = mime(bytes);
        let read = std::panic::catch_unwind(AssertUnwindSafe(|| {
            c2pa::Reader::from_shared_context(&self.context).with_stream(format, Cursor::new(bytes))
        }));
        let reader = match read {
            Ok(Ok(reader)) => reader,
            Ok(Err(c2pa::Error::JumbfNotFound | c2pa::Error::ProvenanceMissing)) => {
                return Ok(None)
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("the C2PA reader gave up on the data".into()),
        };
        Ok(Some(Store {
            declaration: declaration(&reader),
            state: state(&reader),
        }))
    }
}

fn mime(bytes: &[u8]) -> &'static str {
    match image::guess_format(bytes) {
        Ok(image::ImageFormat::Jpeg) => "image/jpeg",
        Ok(image::ImageFormat::Png) => "image/png",
        Ok(image::ImageFormat::WebP) => "image/webp",
        Ok(image::ImageFormat::Tiff) => "image/tiff",
        Ok(image::ImageFormat::Gif) => "image/gif",
        Ok(image::ImageFormat::Avif) => "image/avif",
        _ => "application/octet-stream",
    }
}

fn declaration(reader: &c2pa::Reader) -> Declaration {
    // The manifests in a fixed order, the active one first, so that the reported generator does
    // not depend on hash-map order.
    let mut manifests: Vec<(&String, &Manifest)> = reader.manifests().iter().collect();
    manifests.sort_by_key(|(label, _)| (Some(label.as_str()) != reader.active_label(), *label));
    let active_generator = manifests.first().and_then(|(_, m)| claim_generator(m));
    for (_, manifest) in &manifests {
        for action in actions(manifest) {
            let source_type = action
                .get("digitalSourceType")
                .and_then(Value::as_str)
                .map(|uri| uri.rsplit('/').next().unwrap_or(uri));
            if !source_type.is_some_and(|t| AI_SOURCE_TYPES.contains(&t)) {
                continue;
            }
            let agent = action.get("softwareAgent").and_then(|a| match a {
                Value::String(s) => Some(s.clone()),
                other => other.get("name")?.as_str().map(str::to_string),
            });
            let generator = match (claim_generator(manifest), agent) {
                (Some(g), Some(a)) if g.eq_ignore_ascii_case(&a) => Some(g),
                (Some(g), Some(a)) => Some(format!("{g} ({a})")),
                (g, a) => g.or(a),
            };
            return Declaration {
                kind: Kind::C2pa,
                generator,
                ai: true,
            };
        }
    }
    Declaration {
        kind: Kind::C2pa,
        generator: active_generator,
        ai: false,
    }
}

/// The claim generator's product name (`Adobe_Firefly` → `Adobe Firefly`).
fn claim_generator(m: &Manifest) -> Option<String> {
    let name = m
        .claim_generator_info
        .as_ref()
        .and_then(|info| info.first())
        .map(|i| i.name.clone())
        .or_else(|| {
            let full = m.claim_generator.as_deref()?;
            Some(full.split('/').next().unwrap_or(full).to_string())
        })?;
    let name = name.replace('_', " ").trim().to_string();
    (!name.is_empty()).then_some(name)
}

fn actions(m: &Manifest) -> Vec<Value> {
    m.assertions()
        .iter()
        .filter(|a| a.label().starts_with("c2pa.actions"))
        .filter_map(|a| a.value().ok()?.get("actions")?.as_array().cloned())
        .flatten()
        .collect()
}

fn state(reader: &c2pa::Reader) -> C2paState {
    match reader.validation_state() {
        ValidationState::Trusted => C2paState::Valid,
        ValidationState::Valid => C2paState::Untrusted,
        ValidationState::Invalid => {
            let mut codes: Vec<String> = Vec::new();
            if let Some(results) = reader.validation_results() {
                let active = results
                    .active_manifest()
                    .into_iter()
                    .flat_map(|s| s.failure());
                let deltas = results
                    .ingredient_deltas()
                    .into_iter()
                    .flatten()
                    .flat_map(|d| d.validation_deltas().failure());
                codes.extend(active.chain(deltas).map(|s| s.code().to_string()));
            } else if let Some(status) = reader.validation_status() {
                codes.extend(status.iter().map(|s| s.code().to_string()));
            }
            // Untrusted is not the reason a store is invalid; the other codes are.
            codes.retain(|c| c != "signingCredential.untrusted");
            codes.sort();
            codes.dedup();
            C2paState::Invalid(codes)
        }
    }
}
