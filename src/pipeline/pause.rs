//! Holding a file in the decode stage for a while, for the tests of files that change while
//! they are being scored: the test rewrites the file during the pause, at a known moment.
//!
//! [`decode`] sleeps when the environment variable [`PAUSE_VAR`] is `MARKER:MILLIS` and the
//! file's path contains MARKER, and logs that it does so the test knows when to act. The
//! variable exists for the test suite only; unset, the hook costs one read of a `OnceLock`.

use std::sync::OnceLock;
use std::time::Duration;

/// Makes the decode stage wait before reading matching files, for tests.
pub const PAUSE_VAR: &str = "SYNTHSCAN_TEST_PAUSE_DECODE";

/// Sleeps when [`PAUSE_VAR`] asks for a pause and `path` contains its marker.
pub fn decode(path: &str) {
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
