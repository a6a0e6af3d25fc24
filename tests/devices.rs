//! Inference dispatch without a GPU: several sessions and several "devices" (CPU stand-ins that
//! go through the same dispatch code as GPUs) give the same rows as one session, every file
//! exactly once; a failing session never drops rows; GPU requests fail fast and clearly.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use common::{read_rows, run_ok, synthscan, tiny_model, write_image};
use synthscan::model::device::Device;
use synthscan::model::infer::ModelSet;
use synthscan::model::runtime::Runtime;
use synthscan::pipeline::{Pipeline, PipelineConfig, Source};
use synthscan::sink::{self, Format};
use synthscan::source::walk::{walk, WalkOptions};
use synthscan::verdict::Table;

fn corpus(dir: &Path, n: u32) {
    for i in 0..n {
        write_image(
            &dir.join(format!("{i:03}.png")),
            24 + i * 5,
            40 + i % 7,
            image::ImageFormat::Png,
        );
    }
}

fn scores(path: &Path) -> BTreeMap<String, (String, Option<f32>)> {
    read_rows(path)
        .into_iter()
        .map(|r| (r.path, (r.status, r.score)))
        .collect()
}

/// Runs the library pipeline directly with the given devices and sessions per device.
fn scan_with(input: &Path, out: &Path, devices: Vec<Device>, sessions: usize, manifest: &Path) {
    let runtime = Runtime::load(None, false).expect("ONNX Runtime (scripts/install-ort)");
    let entry = synthscan::model::manifest::load(manifest).unwrap();
    let models = ModelSet::new(vec![entry], Default::default()).unwrap();
    let mut config = PipelineConfig::for_cores(1);
    config.devices = devices;
    config.sessions_per_device = sessions;
    config.batch_size = 3;
    let pipeline = Pipeline::new(&runtime, models, config).unwrap();
    let sink = sink::create(
        Format::Parquet,
        out,
        Table::new(pipeline.columns().to_vec()),
    )
    .unwrap();
    let opts = WalkOptions::new(vec![input.to_path_buf()]);
    let source: Source = Box::new(move |emit| walk(&opts, emit));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary = rt
        .block_on(pipeline.run(
            source,
            sink,
            Arc::new(AtomicBool::new(false)),
            Box::new(|_, _| {}),
        ))
        .unwrap();
    assert_eq!(summary.rows, summary.candidates);
}

#[test]
fn many_sessions_and_devices_give_the_rows_of_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    corpus(&input, 40);
    let manifest = common::fixtures().join("tiny-cnn.json");
    let one = dir.path().join("one.parquet");
    let many = dir.path().join("many.parquet");
    scan_with(&input, &one, vec![Device::Cpu], 1, &manifest);
    scan_with(&input, &many, vec![Device::Cpu; 3], 2, &manifest);
    let (a, b) = (scores(&one), scores(&many));
    assert_eq!(a.len(), 40);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (path, (status, score)) in &a {
        assert_eq!(status, "ok");
        let other = b[path].1.unwrap();
        assert!((score.unwrap() - other).abs() < 1e-5, "{path}");
    }
    // The CLI path too: --sessions-per-device on the CPU.
    let cli = dir.path().join("cli.parquet");
    run_ok(
        synthscan(&[
            "scan",
            input.to_str().unwrap(),
            "--sessions-per-device",
            "2",
            "--out",
        ])
        .arg(&cli)
        .args(tiny_model()),
    );
    assert_eq!(scores(&cli), a);
}

#[test]
fn io_bound_sessions_score_exactly_like_plain_ones_at_changing_batch_sizes() {
    use synthscan::model::infer::{ModelSession, SessionConfig};
    let runtime = Runtime::load(None, false).expect("ONNX Runtime (scripts/install-ort)");
    let entry =
        synthscan::model::manifest::load(&common::fixtures().join("tiny-cnn.json")).unwrap();
    let (h, w) = (
        entry.manifest.input.height as usize,
        entry.manifest.input.width as usize,
    );
    let mut config = SessionConfig::cpu(1);
    let mut plain = ModelSession::new(&runtime, &entry, 0, &config).unwrap();
    config.io_binding = true;
    let mut bound = ModelSession::new(&runtime, &entry, 0, &config).unwrap();
    // The staged input tensor is remade when the batch size changes, and reused when it does not.
    for (round, n) in [3usize, 5, 5, 1, 3].into_iter().enumerate() {
        let input: Vec<f32> = (0..n * 3 * h * w)
            .map(|i| ((i * 7 + round * 13) % 255) as f32 / 64.0 - 2.0)
            .collect();
        let want = plain.score(n, &input).unwrap();
        let got = bound.score(n, &input).unwrap();
        assert_eq!(got, want, "batch of {n}");
        assert_eq!(got.len(), n);
    }
}

#[test]
fn a_session_that_fails_every_batch_still_accounts_for_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    corpus(&input, 10);
    // The network takes 64x64 inputs; a manifest claiming 32x32 makes every run fail.
    let manifest = common::tiny_model_in(dir.path(), "tiny-cnn", |m| {
        m["input"]["height"] = 32.into();
        m["input"]["width"] = 32.into();
    });
    let out = dir.path().join("v.parquet");
    scan_with(&input, &out, vec![Device::Cpu; 2], 2, &manifest);
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 10);
    for r in &rows {
        assert_eq!(r.status, "inference_error");
        assert!(
            r.error.as_deref().unwrap().contains("tiny-cnn"),
            "{:?}",
            r.error
        );
    }
}

#[test]
fn a_gpu_request_without_a_gpu_runtime_fails_fast_or_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    corpus(&input, 3);
    let out = dir.path().join("v.parquet");
    let base = |extra: &[&str]| {
        let mut cmd = synthscan(&[
            "scan",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        cmd.args(extra).args(tiny_model());
        cmd
    };
    // No GPU visible at all.
    let run = base(&["--device", "cuda"])
        .env("CUDA_VISIBLE_DEVICES", "")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no NVIDIA GPU is visible"));
    // A GPU is claimed but the ONNX Runtime found is the CPU build: the message names the
    // missing provider library and the fix.
    let cpu_build = synthscan::model::runtime::locate(None, false).unwrap();
    let run = base(&["--device", "cuda:0"])
        .env("ORT_DYLIB_PATH", cpu_build)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("libonnxruntime_providers_cuda.so") && stderr.contains("--fallback cpu"),
        "{stderr}"
    );
    assert!(!out.exists());
    run_ok(&mut base(&["--device", "tensorrt:0", "--fallback", "cpu"]));
    let rows = read_rows(&out);
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.status == "ok"));
}
