//! Measuring the detector on the user's own labelled images: labelled sets in the layouts public
//! test sets use ([`labelled`]), the figures and their intervals ([`metrics`]), per-subset
//! evaluation of verdict rows ([`evaluate`]), and thresholds fitted on the user's real images
//! ([`calibration`]).
//!
//! Pure computation over scores and labels: imports only `model::manifest` (the operating
//! points and the identity a calibration is tied to).

pub mod calibration;
pub mod evaluate;
pub mod labelled;
pub mod metrics;
