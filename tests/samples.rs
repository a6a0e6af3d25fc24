//! The committed samples with the default model: what a new user sees first must be mostly
//! right. `samples/real/` should come out "real" and `samples/fake/` "fake". The samples are
//! outputs of real generators and real images that the model was not trained on.

mod common;

use std::path::Path;

use common::{read_rows, run_ok, synthscan};

/// A detector is not an oracle; a handful of misses is allowed. The samples are one image of
/// each of fourteen generators, several of them families the default catches about half the
/// time, and nine camera photos: the default (2.0.0) labels 25 of 32 in FP32 and 24 with its
/// INT8 variant, which `auto` picks on CPUs with VNNI (models/README.md). This bar fails on a
/// regression of two more images, and sits below the 0.9 that 1.1.0 met on Stable
/// Diffusion-only samples: the card says so.
const MIN_ACCURACY: f64 = 0.7;

#[test]
fn default_model_labels_the_samples() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let default = format!("models/{}.json", synthscan::model::manifest::DEFAULT_MODEL);
    assert!(
        root.join(&default).is_file(),
        "{default} is missing: build it with train/scripts/build_default_model.sh"
    );
    let samples = root.join("samples");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.parquet");
    // No --model: the default model must be found in the repository's models/.
    let run = run_ok(&mut synthscan(&[
        "scan",
        samples.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    // Nothing in a clean first run deserves a warning; one printed anyway teaches users to
    // ignore them.
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!stderr.contains("WARN"), "{stderr}");

    let rows = read_rows(&out);
    let mut total = 0usize;
    let mut correct = 0usize;
    let mut misses = Vec::new();
    for row in &rows {
        // The class is the folder the file sits in: samples/real/x.jpg, samples/fake/y.png.
        let class = Path::new(&row.path)
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str());
        let expected = match class {
            Some("real") => "real",
            Some("fake") => "fake",
            _ => continue,
        };
        total += 1;
        assert_eq!(row.status, "ok", "{}: {:?}", row.path, row.error);
        if row.label.as_deref() == Some(expected) {
            correct += 1;
        } else {
            misses.push(format!("{} (score {:?})", row.path, row.score));
        }
    }
    assert_eq!(total, 32, "expected 16 real and 16 fake samples");
    let accuracy = correct as f64 / total as f64;
    assert!(
        accuracy >= MIN_ACCURACY,
        "accuracy {accuracy:.3} < {MIN_ACCURACY}; misses:\n{}",
        misses.join("\n")
    );
}
