//! The two limits the scanner's throughput is judged against, measured with the scanner's own
//! code on all the given threads:
//!
//! ```text
//! cargo run --release --example ceilings -- decode DIR [--threads N] [--full-decode]
//! cargo run --release --example ceilings -- infer MODEL.json [--threads N] [--batch 16] [--images 256]
//!     [--precision auto|fp32|fp16|int8]
//! ```
//!
//! `decode`: read + decode + resize + normalize every image under DIR, no model, with the
//! scanner's partial JPEG decoding (reduced scale or the crop's window) unless `--full-decode`.
//! `infer`: ONNX Runtime on pre-made tensors, no files, with the variant `--precision` picks
//! (as `scan` would).
//! Each prints one JSON line with `images_per_sec` (and `precision` for `infer`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use synthscan::decode::preprocess::Preprocessor;
use synthscan::decode::{decode_file, Extent, Limits};
use synthscan::model::infer::{ModelSession, SessionConfig};
use synthscan::model::manifest;
use synthscan::model::precision::Precision;
use synthscan::model::runtime::Runtime;
use synthscan::source::walk::{walk, WalkOptions};
use synthscan::verdict::FileMeta;

fn flag(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn precision_flag(args: &[String]) -> Precision {
    use clap::ValueEnum;
    match args.iter().position(|a| a == "--precision") {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| Precision::from_str(v, true).ok())
            .unwrap_or_else(|| {
                eprintln!("--precision takes auto, fp32, fp16 or int8");
                std::process::exit(2);
            }),
        None => Precision::Auto,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = flag(&args, "--threads", cores);
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("decode"), Some(dir)) => {
            decode(dir, threads, args.iter().any(|a| a == "--full-decode"))
        }
        (Some("infer"), Some(model)) => infer(
            model,
            threads,
            flag(&args, "--batch", 16),
            flag(&args, "--images", 256),
            precision_flag(&args),
        ),
        _ => {
            eprintln!("usage: ceilings decode DIR | infer MODEL.json [--threads N]");
            std::process::exit(2);
        }
    }
}

fn decode(dir: &str, threads: usize, full: bool) {
    let mut paths = Vec::new();
    walk(&WalkOptions::new(vec![dir.into()]), |c| {
        paths.push(c.path);
        true
    });
    let spec = manifest::resolve(manifest::DEFAULT_MODEL, &manifest::default_models_dirs())
        .map(|e| e.manifest.input)
        .expect("the default model's manifest gives the input size");
    let extent = if full {
        Extent::Full
    } else {
        Extent::for_inputs(std::slice::from_ref(&spec))
    };
    let paths = Arc::new(paths);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (paths, next, spec) = (paths.clone(), next.clone(), spec.clone());
            std::thread::spawn(move || {
                let mut pre = Preprocessor::new(std::slice::from_ref(&spec));
                let mut done = 0;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(i) else { break };
                    let mut meta = FileMeta::default();
                    if let Ok(img) = decode_file(path, &Limits::default(), extent, &mut meta) {
                        std::hint::black_box(pre.prepare(&img).ok());
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let images: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    println!("{}", report("decode", images, threads, started));
}

fn infer(model: &str, threads: usize, batch: usize, images: usize, precision: Precision) {
    let explicit = std::env::var_os("ORT_DYLIB_PATH").map(std::path::PathBuf::from);
    let runtime = Runtime::load(explicit.as_deref(), false).expect("ONNX Runtime");
    let entry = manifest::resolve(model, &manifest::default_models_dirs()).expect("model");
    let config = SessionConfig {
        precision,
        ..SessionConfig::cpu(threads)
    };
    let mut session = ModelSession::new(&runtime, &entry, 0, &config).expect("session");
    let (h, w) = (
        entry.manifest.input.height as usize,
        entry.manifest.input.width as usize,
    );
    let tensor: Vec<f32> = (0..batch * 3 * h * w)
        .map(|i| ((i % 255) as f32 / 255.0) - 0.5)
        .collect();
    session.score(batch, &tensor).expect("warm-up");
    let started = Instant::now();
    let rounds = images.div_ceil(batch);
    for _ in 0..rounds {
        std::hint::black_box(session.score(batch, &tensor).expect("run"));
    }
    let mut line = report("infer", rounds * batch, threads, started);
    line["precision"] = session.precision.clone().into();
    println!("{line}");
}

fn report(what: &str, images: usize, threads: usize, started: Instant) -> serde_json::Value {
    let secs = started.elapsed().as_secs_f64();
    serde_json::json!({
        "ceiling": what,
        "threads": threads,
        "images": images,
        "seconds": secs,
        "images_per_sec": images as f64 / secs,
    })
}
