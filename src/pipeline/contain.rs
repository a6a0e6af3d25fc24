//! Keeping a panic to the work it happened in. A decoder, the resizer or an ONNX Runtime call
//! that panics on one file must not take its worker thread down with it: the file (or the batch,
//! for inference) becomes a row with an error status, and the worker goes on with the next.
//!
//! The tests of that containment need a panic on demand, in a release build of the real binary.
//! [`inject`] panics when the environment variable [`INJECT_VAR`] names the stage and a marker
//! that the file's path contains (`decode:MARKER`, `infer:MARKER` or `collect:MARKER`). The
//! variable exists for the test suite only; unset, the hook costs one read of a `OnceLock`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// Makes a stage panic on matching files, for tests of panic containment.
pub const INJECT_VAR: &str = "SYNTHSCAN_TEST_INJECT_PANIC";

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

impl Site {
    fn parse(s: &str) -> Option<Site> {
        match s {
            "decode" => Some(Site::Decode),
            "infer" => Some(Site::Infer),
            "collect" => Some(Site::Collect),
            _ => None,
        }
    }
}

/// A panic caught by [`run`], with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(pub String);

/// Runs `f`, turning a panic into [`Panicked`]. Whatever `f` borrowed mutably may be half
/// updated after a panic; callers reset or discard it.
pub fn run<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Panicked(message(payload.as_ref())))
}

fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Panics when [`INJECT_VAR`] asks for a panic at `site` and one of `paths` contains its marker.
pub fn inject<'a>(site: Site, paths: impl IntoIterator<Item = &'a str>) {
    static PLAN: OnceLock<Option<(Site, String)>> = OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let value = std::env::var(INJECT_VAR).ok()?;
        let (site, marker) = value.split_once(':')?;
        Some((Site::parse(site)?, marker.to_string())).filter(|(_, m)| !m.is_empty())
    });
    let Some((wanted, marker)) = plan else {
        return;
    };
    if *wanted != site {
        return;
    }
    if let Some(path) = paths.into_iter().find(|p| p.contains(marker.as_str())) {
        panic!("injected for a test ({INJECT_VAR}): {site:?} of {path}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_value_with_its_message() {
        assert_eq!(run(|| 7), Ok(7));
        let formatted = run(|| -> u8 { panic!("bad {}", "pixels") });
        assert_eq!(formatted, Err(Panicked("bad pixels".into())));
        let literal = run(|| -> u8 { panic!("plain") });
        assert_eq!(literal, Err(Panicked("plain".into())));
    }

    #[test]
    fn nothing_is_injected_without_the_variable() {
        // The suite never sets it for its own process; the hook then lets every path pass.
        assert!(std::env::var(INJECT_VAR).is_err());
        assert_eq!(run(|| inject(Site::Decode, ["a/boom.jpg"])), Ok(()));
    }
}
