//! When a changed file is complete: one state per file waiting to be handed on, and one rule
//! for when it is due to be looked at.

use std::time::{Duration, Instant};

use crate::source::{Candidate, Version};

/// Events for one path closer together than this are one burst.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// A file we saw being written waits for its close; if the close never comes (an event lost, a
/// writer that keeps its handle open while idle) it falls back to the settle rule after this
/// many settle intervals without any event.
pub const CLOSE_PATIENCE: u32 = 20;

/// What is known about a file's completeness.
#[derive(Debug, Clone)]
pub enum Readiness {
    /// Changed, or found by a walk: complete once its size and modification time stay the same
    /// for the settle interval.
    Settling,
    /// Written since it was last closed (only where the platform reports close-after-write):
    /// complete at its close.
    Writing,
    /// Closed after writing, or moved in by a rename (which is atomic): complete unless written
    /// again.
    Complete,
    /// The walk could not read it (a loop, an unreadable folder): final as found, handed on as
    /// this candidate.
    Defect(Candidate),
}

/// A file that changed and has not been handed on yet.
#[derive(Debug, Clone)]
pub struct Pending {
    pub readiness: Readiness,
    /// Size and modification time at the last look.
    pub seen: Option<Version>,
    /// The last event or observed change.
    pub changed: Instant,
}

impl Pending {
    pub fn new(readiness: Readiness, changed: Instant) -> Self {
        Pending {
            readiness,
            seen: None,
            changed,
        }
    }

    /// Whether the file has been quiet long enough to be looked at: a complete file after a
    /// debounce, one being written after the close patience, any other after the settle
    /// interval.
    pub fn due(&self, now: Instant, settle: Duration) -> bool {
        let needed = match self.readiness {
            Readiness::Complete | Readiness::Defect(_) => DEBOUNCE,
            Readiness::Writing => settle * CLOSE_PATIENCE,
            Readiness::Settling => settle,
        };
        now.saturating_duration_since(self.changed) >= needed
    }

    /// Whether a due file is handed on as it is, without checking that its size and time held.
    pub fn is_final(&self) -> bool {
        matches!(self.readiness, Readiness::Complete | Readiness::Defect(_))
    }

    /// An event said the file was written (`wrote`), or only touched: it is quiet from `now`,
    /// and a write reopens a complete file where close events will tell when it is done.
    pub fn touched(&mut self, now: Instant, wrote: bool, close_events: bool) {
        self.changed = now;
        if wrote && close_events {
            self.readiness = Readiness::Writing;
        }
    }

    /// The writer closed the file.
    pub fn closed(&mut self, now: Instant) {
        self.readiness = Readiness::Complete;
        self.changed = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_waits_its_own_interval() {
        let t0 = Instant::now();
        let settle = Duration::from_secs(1);
        let at = |d: Duration| t0 + d;
        let complete = Pending::new(Readiness::Complete, t0);
        assert!(!complete.due(at(DEBOUNCE / 2), settle));
        assert!(complete.due(at(DEBOUNCE), settle));
        let settling = Pending::new(Readiness::Settling, t0);
        assert!(!settling.due(at(settle / 2), settle));
        assert!(settling.due(at(settle), settle));
        let writing = Pending::new(Readiness::Writing, t0);
        assert!(!writing.due(at(settle * 2), settle));
        assert!(writing.due(at(settle * CLOSE_PATIENCE), settle));
        assert!(complete.is_final() && !settling.is_final() && !writing.is_final());
    }

    #[test]
    fn a_write_reopens_a_complete_file_only_where_closes_are_reported() {
        let t0 = Instant::now();
        let mut p = Pending::new(Readiness::Complete, t0);
        p.touched(t0, true, false);
        assert!(p.is_final());
        p.touched(t0, false, true);
        assert!(p.is_final());
        p.touched(t0, true, true);
        assert!(matches!(p.readiness, Readiness::Writing));
        p.closed(t0);
        assert!(p.is_final());
    }
}
