//! Misbehaviour on demand, for the tests that run the real binary: a stage that panics on
//! matching files (to test panic containment, [`crate::pipeline::contain`]) and a decode that
//! waits before reading them (to test files that change while they are scored).
//!
//! Compiled in only with the `test-hooks` feature, which the test suite enables and release
//! builds do not: without it both hooks are empty and the variables below are ignored.
//!
//! - [`INJECT_VAR`] = `decode:MARKER`, `infer:MARKER` or `collect:MARKER`: that stage panics on
//!   a file whose path contains MARKER.
//! - [`PAUSE_VAR`] = `MARKER:MILLIS`: the decode stage sleeps before reading a file whose path
//!   contains MARKER, and logs that it does, so the test knows when to rewrite the file.

/// Makes a stage panic on matching files, for tests of panic containment.
pub const INJECT_VAR: &str = "SYNTHSCAN_TEST_INJECT_PANIC";

/// Makes the decode stage wait before reading matching files, for tests.
pub const PAUSE_VAR: &str = "SYNTHSCAN_TEST_PAUSE_DECODE";

/// Where [`inject`] can be asked to panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// Decoding and preparing one file (contained per file).
    Decode,
    /// Scoring a batch (contained per batch).
    Infer,
    /// The collector handing rows to the sink (not contained: the run fails).
    Collect,
}

#[cfg(feature = "test-hooks")]
mod enabled {
    use std::sync::OnceLock;
    use std::time::Duration;

    use super::{Site, INJECT_VAR, PAUSE_VAR};

    fn site(s: &str) -> Option<Site> {
        match s {
            "decode" => Some(Site::Decode),
            "infer" => Some(Site::Infer),
            "collect" => Some(Site::Collect),
            _ => None,
        }
    }

    /// Panics when [`INJECT_VAR`] asks for a panic at `at` and one of `paths` contains its
    /// marker.
    pub fn inject<'a>(at: Site, paths: impl IntoIterator<Item = &'a str>) {
        static PLAN: OnceLock<Option<(Site, String)>> = OnceLock::new();
        let plan = PLAN.get_or_init(|| {
            let value = std::env::var(INJECT_VAR).ok()?;
            let (s, marker) = value.split_once(':')?;
            Some((site(s)?, marker.to_string())).filter(|(_, m)| !m.is_empty())
        });
        let Some((wanted, marker)) = plan else {
            return;
        };
        if *wanted != at {
            return;
        }
        if let Some(path) = paths.into_iter().find(|p| p.contains(marker.as_str())) {
            panic!("injected for a test ({INJECT_VAR}): {at:?} of {path}");
        }
    }

    /// Sleeps when [`PAUSE_VAR`] asks for a pause and `path` contains its marker.
    pub fn pause_decode(path: &str) {
        static PLAN: OnceLock<Option<(String, Duration)>> = OnceLock::new();
        let plan = PLAN.get_or_init(|| {
            let value = std::env::var(PAUSE_VAR).ok()?;
            let (marker, millis) = value.rsplit_once(':')?;
            let millis = millis.parse().ok()?;
            Some((marker.to_string(), Duration::from_millis(millis))).filter(|(m, _)| !m.is_empty())
        });
        if let Some((marker, pause)) = plan {
            if path.contains(marker.as_str()) {
                tracing::info!("pausing before reading {path} for {pause:?} ({PAUSE_VAR})");
                std::thread::sleep(*pause);
            }
        }
    }
}

#[cfg(feature = "test-hooks")]
pub use enabled::{inject, pause_decode};

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn inject<'a>(_at: Site, _paths: impl IntoIterator<Item = &'a str>) {}

#[cfg(not(feature = "test-hooks"))]
#[inline(always)]
pub fn pause_decode(_path: &str) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::contain::run;

    #[test]
    fn nothing_is_injected_without_the_variable() {
        // The suite never sets it for its own process; the hook then lets every path pass.
        assert!(std::env::var(INJECT_VAR).is_err());
        assert_eq!(run(|| inject(Site::Decode, ["a/boom.jpg"])), Ok(()));
    }
}
