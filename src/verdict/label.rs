//! What a row is called, and why: the one place that turns scores into `real`/`fake` and
//! decides how the final `label` follows from the model's verdict and what the file declares.
//!
//! - A score at or above its threshold is `fake`, for each model and for their mean.
//! - A believed declaration of AI generation (a valid or untrusted C2PA manifest, the IPTC
//!   digital source type, a generator UI's metadata) makes the label `fake`, whatever the score:
//!   the file says so itself.
//! - An invalid C2PA signature is reported (`c2pa_state`) and not believed: the reader never
//!   lets an invalid store's claims count as a declaration of AI
//!   ([`crate::provenance::content_credentials`]).
//! - A declaration of camera capture, or no declaration, never overrides the model: metadata is
//!   easy to strip and to forge, and a photo claim is exactly what a forger would add.
//! - Rows without a pixel verdict (decode errors and the like) keep a null label; their
//!   provenance columns still say what the file declares.

use crate::provenance::Provenance;

/// A verdict on an image: real, or generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Real,
    Fake,
}

impl Label {
    /// A score against its threshold; at the threshold is fake, as everywhere in the scanner.
    pub fn of_score(score: f32, threshold: f32) -> Self {
        if score >= threshold {
            Label::Fake
        } else {
            Label::Real
        }
    }

    /// As the label columns write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Real => "real",
            Label::Fake => "fake",
        }
    }

    /// The label a column holds; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "real" => Some(Label::Real),
            "fake" => Some(Label::Fake),
            _ => None,
        }
    }
}

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
    model: Option<Label>,
    provenance: Option<&Provenance>,
) -> Option<(Label, Basis)> {
    let model = model?;
    if provenance.is_some_and(Provenance::ai) {
        return Some((Label::Fake, Basis::Declared));
    }
    Some((model, Basis::Model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provenance::{Declaration, Kind};
    use Label::{Fake as FAKE, Real as REAL};

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
    fn a_score_at_the_threshold_is_fake_and_labels_round_trip() {
        assert_eq!(Label::of_score(0.5, 0.5), FAKE);
        assert_eq!(Label::of_score(0.499, 0.5), REAL);
        for l in [REAL, FAKE] {
            assert_eq!(Label::parse(l.as_str()), Some(l));
        }
        assert_eq!(Label::parse("provenance"), None);
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
