//! How the final `label` follows from the model's verdict and what the file declares. This is
//! the only place that decides it.
//!
//! - A believed declaration of AI generation (a valid or untrusted C2PA manifest, the IPTC
//!   digital source type, a generator UI's metadata) makes the label `fake`, whatever the score:
//!   the file says so itself.
//! - An invalid C2PA signature is reported (`c2pa_state`) and not believed: the reader never
//!   lets an invalid store's claims count as a declaration of AI ([`super::Reader`]).
//! - A declaration of camera capture, or no declaration, never overrides the model: metadata is
//!   easy to strip and to forge, and a photo claim is exactly what a forger would add.
//! - Rows without a pixel verdict (decode errors and the like) keep a null label; their
//!   provenance columns still say what the file declares.

use super::Provenance;
use crate::verdict::FAKE;

/// What the final label rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The file's own declaration of AI generation.
    Declared,
    /// The model's score against its threshold.
    Model,
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Basis::Declared => "declared",
            Basis::Model => "model",
        }
    }
}

/// The final label and its basis, from the model's label (`None` when the row has no pixel
/// verdict) and the file's provenance (`None` when it was not read).
pub fn final_label(
    model: Option<&'static str>,
    provenance: Option<&Provenance>,
) -> Option<(&'static str, Basis)> {
    let model = model?;
    if provenance.is_some_and(Provenance::ai) {
        return Some((FAKE, Basis::Declared));
    }
    Some((model, Basis::Model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::{Declaration, Kind};
    use crate::verdict::REAL;

    fn declared(kind: Kind, ai: bool) -> Provenance {
        Provenance {
            declaration: Some(Declaration {
                kind,
                generator: None,
                ai,
            }),
            ..Provenance::default()
        }
    }

    #[test]
    fn a_declaration_of_ai_overrides_a_real_score_and_nothing_else_does() {
        let ai = declared(Kind::Iptc, true);
        assert_eq!(
            final_label(Some(REAL), Some(&ai)),
            Some((FAKE, Basis::Declared))
        );
        // A camera-capture declaration leaves a fake score fake.
        let camera = declared(Kind::Iptc, false);
        assert_eq!(
            final_label(Some(FAKE), Some(&camera)),
            Some((FAKE, Basis::Model))
        );
        assert_eq!(
            final_label(Some(REAL), Some(&camera)),
            Some((REAL, Basis::Model))
        );
        assert_eq!(final_label(Some(REAL), None), Some((REAL, Basis::Model)));
        // No pixel verdict: no label, whatever the file says.
        assert_eq!(final_label(None, Some(&ai)), None);
    }
}
