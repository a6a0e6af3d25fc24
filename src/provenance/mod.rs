//! Provenance: what an image file declares about its own making, read from the bytes the decode
//! stage already holds. No network, ever.
//!
//! A file can say it was generated: a C2PA manifest store ([`content_credentials`]), the IPTC
//! digital source type in its XMP ([`xmp`]), or the prompt and settings a generator UI wrote into
//! text chunks or EXIF ([`generator`]). [`container`] finds those blocks in JPEG, PNG and WebP.
//! How a declaration and the model's score make the final label is decided in
//! `verdict::label`; the model's own columns never change.
//!
//! Depends on nothing else in the crate, so it could become a crate of its own (isolating
//! `c2pa`).

pub mod container;
pub mod content_credentials;
pub mod exif_text;
pub mod generator;
pub mod xmp;

use std::panic::AssertUnwindSafe;
use std::path::Path;

use bytes::Bytes;

pub use content_credentials::C2paState;

/// Which kind of declaration the row's provenance comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    C2pa,
    Iptc,
    A1111,
    ComfyUi,
    InvokeAi,
    NovelAi,
    Fooocus,
    Midjourney,
    ExifSoftware,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::C2pa => "c2pa",
            Kind::Iptc => "iptc",
            Kind::A1111 => "a1111",
            Kind::ComfyUi => "comfyui",
            Kind::InvokeAi => "invokeai",
            Kind::NovelAi => "novelai",
            Kind::Fooocus => "fooocus",
            Kind::Midjourney => "midjourney",
            Kind::ExifSoftware => "exif_software",
        }
    }
}

/// One statement a file makes about its origin.
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    pub kind: Kind,
    /// The generator or tool named, as the file names it ("ComfyUI", "ChatGPT (GPT-4o)").
    pub generator: Option<String>,
    /// Whether it declares generation by a trained model.
    pub ai: bool,
}

/// What the file declares, as one row's columns see it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// The declaration the row reports: the first that declares AI in the order of
    /// [`Kind`] (signed before unsigned), else the first of any kind.
    pub declaration: Option<Declaration>,
    /// The C2PA validation state, when the file has a manifest store.
    pub c2pa_state: Option<C2paState>,
    /// Metadata that could not be read (truncated, malformed, a parser that gave up). The row
    /// keeps its pixel verdict; these are reported beside it.
    pub problems: Vec<String>,
}

impl Provenance {
    pub fn kind(&self) -> Option<Kind> {
        self.declaration.as_ref().map(|d| d.kind)
    }

    pub fn generator(&self) -> Option<&str> {
        self.declaration.as_ref()?.generator.as_deref()
    }

    /// True when a declaration that is believed says the image was generated (see `verdict::label`).
    pub fn ai(&self) -> bool {
        self.declaration.as_ref().is_some_and(|d| d.ai)
    }

    pub fn problems_text(&self) -> Option<String> {
        (!self.problems.is_empty()).then(|| self.problems.join("; "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProvenanceError {
    #[error("cannot read the C2PA trust anchors {path}: {reason}")]
    TrustAnchors { path: String, reason: String },
}

/// Reads provenance from file bytes. Made once per run and shared by the decode threads.
#[derive(Clone)]
pub struct Reader {
    credentials: content_credentials::Verifier,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader that validates C2PA signatures against `trust_anchors` (a PEM bundle), if any;
    /// without them a valid signature is reported as untrusted.
    pub fn new(trust_anchors: Option<&Path>) -> Result<Self, ProvenanceError> {
        let pem = trust_anchors
            .map(|path| {
                std::fs::read_to_string(path).map_err(|e| ProvenanceError::TrustAnchors {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let credentials = content_credentials::Verifier::new(pem.as_deref()).map_err(|reason| {
            ProvenanceError::TrustAnchors {
                path: trust_anchors
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                reason,
            }
        })?;
        Ok(Reader { credentials })
    }

    /// Everything the file declares. Never fails and never panics: what cannot be read is a
    /// problem in the result.
    pub fn read(&self, bytes: &Bytes) -> Provenance {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.read_unguarded(bytes))) {
            Ok(p) => p,
            Err(_) => Provenance {
                problems: vec!["metadata: a reader gave up on the data".into()],
                ..Provenance::default()
            },
        }
    }

    fn read_unguarded(&self, bytes: &Bytes) -> Provenance {
        let embedded = container::Embedded::find(bytes);
        let mut problems = embedded.problems.clone();
        let mut found: Vec<Declaration> = Vec::new();
        let mut c2pa_state = None;

        if embedded.c2pa {
            match self.credentials.read(bytes) {
                // The container holds a C2PA segment, so a store that cannot be found in it
                // is damage, not absence.
                Ok(None) => {
                    problems.push("c2pa: a C2PA segment without a readable manifest store".into())
                }
                Ok(Some(store)) => {
                    // An invalid signature is reported and not believed: the manifest still
                    // names its generator, but its claim of AI does not count.
                    let believed = !matches!(store.state, C2paState::Invalid(_));
                    found.push(Declaration {
                        ai: store.declaration.ai && believed,
                        ..store.declaration
                    });
                    c2pa_state = Some(store.state);
                }
                Err(e) => problems.push(format!("c2pa: {e}")),
            }
        }
        for packet in &embedded.xmp {
            match xmp::read(packet) {
                Ok(Some(d)) => found.push(d),
                Ok(None) => {}
                Err(e) => problems.push(format!("xmp: {e}")),
            }
        }
        let mut fields = embedded.text.clone();
        for block in &embedded.exif {
            match exif_text::fields(block) {
                Ok(f) => fields.extend(f),
                Err(e) => problems.push(format!("exif: {e}")),
            }
        }
        let (declared, unreadable) = generator::recognise(&fields);
        found.extend(declared);
        problems.extend(unreadable);

        found.sort_by_key(|d| d.kind);
        let declaration = found
            .iter()
            .find(|d| d.ai)
            .or_else(|| found.first())
            .cloned();
        Provenance {
            declaration,
            c2pa_state,
            problems,
        }
    }
}
