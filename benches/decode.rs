//! Microbenchmarks of the input side: JPEG decoding at full and reduced (DCT-domain) scale, and
//! the resize + normalize into a 224x224 tensor.
//!
//! ```text
//! cargo bench --bench decode
//! ```

use std::hint::black_box;
use std::io::Cursor;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use image::{ImageFormat, RgbImage};
use synthscan::decode::{decode_bytes, reduced_min_side, Limits};
use synthscan::manifest::{self, InputSpec};
use synthscan::preprocess::Preprocessor;
use synthscan::verdict::FileMeta;

/// A photo-like image: smooth gradients with some texture, so the JPEG has real detail.
fn photo(w: u32, h: u32) -> RgbImage {
    let mut seed = 0x2545_f491_u32;
    RgbImage::from_fn(w, h, |x, y| {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let noise = seed % 24;
        image::Rgb([
            ((x * 200 / w) + noise) as u8,
            ((y * 200 / h) + noise) as u8,
            (((x + y) / 8 % 200) + noise) as u8,
        ])
    })
}

fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    photo(w, h).write_to(&mut out, ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// The default model's input, from its manifest (benches run from the repository root).
fn spec() -> InputSpec {
    manifest::resolve(manifest::DEFAULT_MODEL, &manifest::default_models_dirs())
        .expect("models/resnet18-demo.json")
        .manifest
        .input
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_jpeg");
    group.sample_size(20);
    let min_side = reduced_min_side(&[spec()]);
    for (w, h) in [(512, 384), (1600, 1200), (4000, 3000)] {
        let bytes = jpeg(w, h);
        group.throughput(Throughput::Elements(1));
        for (mode, min_side) in [("full", None), ("reduced", min_side)] {
            group.bench_function(format!("{w}x{h}/{mode}"), |b| {
                b.iter(|| {
                    let mut meta = FileMeta::default();
                    black_box(
                        decode_bytes(&bytes, &Limits::default(), min_side, &mut meta).unwrap(),
                    )
                })
            });
        }
    }
    group.finish();
}

fn resize(c: &mut Criterion) {
    let mut group = c.benchmark_group("resize_normalize");
    let mut pre = Preprocessor::new(&[spec()]);
    for (w, h) in [(512, 384), (1000, 750), (4000, 3000)] {
        let image = photo(w, h);
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{w}x{h}"), |b| {
            b.iter(|| black_box(pre.prepare(&image).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, decode, resize);
criterion_main!(benches);
