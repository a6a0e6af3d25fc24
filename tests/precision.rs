//! `--precision`: the variant that runs is the one asked for (or the one `auto` picks for this
//! machine), the `precision` column says which, and a missing variant stops the run at start.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use arrow::array::AsArray;
use common::{fixtures, read_batch, read_rows, run_ok, synthscan};
use synthscan::model::precision::Host;

/// Scans the samples with the tiny model that has an INT8 variant; returns the rows' scores and
/// labels by path, and the distinct values of the `precision` column.
fn scan(precision: &str, out: &Path) -> (BTreeMap<String, (f32, String)>, Vec<String>) {
    let manifest = fixtures().join("tiny-cnn-int8.json");
    run_ok(&mut synthscan(&[
        "scan",
        "samples",
        "--model",
        manifest.to_str().unwrap(),
        "--precision",
        precision,
        "--out",
        out.to_str().unwrap(),
    ]));
    let rows = read_rows(out)
        .into_iter()
        .map(|r| {
            assert_eq!(r.status, "ok", "{}: {:?}", r.path, r.error);
            (r.path, (r.score.unwrap(), r.label.unwrap()))
        })
        .collect();
    let batch = read_batch(out);
    let column = batch
        .column_by_name("precision")
        .unwrap()
        .as_string::<i32>();
    let mut precisions: Vec<String> = column.iter().map(|p| p.unwrap().to_string()).collect();
    precisions.dedup();
    (rows, precisions)
}

#[test]
fn int8_runs_close_to_fp32_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (int8, p8) = scan("int8", &dir.path().join("int8.parquet"));
    let (fp32, p32) = scan("fp32", &dir.path().join("fp32.parquet"));
    assert_eq!(p8, ["int8"]);
    assert_eq!(p32, ["fp32"]);
    assert_eq!(int8.len(), 32);
    assert_eq!(
        int8.keys().collect::<Vec<_>>(),
        fp32.keys().collect::<Vec<_>>()
    );
    let mut largest = 0f32;
    for (path, (score, label)) in &int8 {
        let (s32, l32) = &fp32[path];
        largest = largest.max((score - s32).abs());
        // The manifest's gate found every label of these images unchanged.
        assert_eq!(label, l32, "{path}");
    }
    // Quantized, so not identical; close, as the gate in the card measured.
    assert!(
        largest > 0.0 && largest < 0.02,
        "largest score change {largest}"
    );
}

#[test]
fn auto_picks_int8_only_on_a_cpu_with_int8_dot_products() {
    let dir = tempfile::tempdir().unwrap();
    let (_, chosen) = scan("auto", &dir.path().join("auto.parquet"));
    let expected = if Host::detect().int8_dot {
        "int8"
    } else {
        "fp32"
    };
    assert_eq!(chosen, [expected]);
    // Without a listed INT8 variant, auto stays at FP32 on any CPU.
    let out = dir.path().join("plain.parquet");
    let tiny = fixtures().join("tiny-cnn.json");
    run_ok(&mut synthscan(&[
        "scan",
        "samples/real",
        "--model",
        tiny.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    let batch = read_batch(&out);
    let column = batch
        .column_by_name("precision")
        .unwrap()
        .as_string::<i32>();
    assert!(column.iter().all(|p| p == Some("fp32")));
}

#[test]
fn a_missing_variant_stops_the_run_before_any_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.parquet");
    let tiny = fixtures().join("tiny-cnn.json");
    let result = synthscan(&[
        "scan",
        "samples",
        "--model",
        tiny.to_str().unwrap(),
        "--precision",
        "int8",
        "--out",
        out.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no int8 variant"), "{stderr}");
    assert!(!out.exists());
}
