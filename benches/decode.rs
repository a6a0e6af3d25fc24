//! Microbenchmarks of the input side: JPEG decoding in full, at reduced (DCT-domain) scale and
//! as a centre-crop window, the resize + normalize into a 224x224 tensor, and reading provenance
//! from the same files (to set against the decode it rides along with).
//!
//! ```text
//! cargo bench --bench decode
//! ```

use std::hint::black_box;
use std::io::Cursor;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use image::{ImageFormat, RgbImage};
use synthscan::decode::preprocess::Preprocessor;
use synthscan::decode::{decode_bytes, Extent, Limits};
use synthscan::model::manifest::{self, InputSpec};
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
        .expect("the default model's manifest")
        .manifest
        .input
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_jpeg");
    group.sample_size(20);
    // What a 224 px resize model and a 224 px centre-crop model need decoded.
    let extents = [
        ("full", Extent::Full),
        ("reduced", Extent::Reduced { min_side: 672 }),
        (
            "centre_crop",
            Extent::CentreCrop {
                width: 224,
                height: 224,
            },
        ),
    ];
    for (w, h) in [(512, 384), (1600, 1200), (4000, 3000)] {
        let bytes = jpeg(w, h);
        group.throughput(Throughput::Elements(1));
        for (mode, extent) in extents {
            group.bench_function(format!("{w}x{h}/{mode}"), |b| {
                b.iter(|| {
                    let mut meta = FileMeta::default();
                    black_box(decode_bytes(&bytes, &Limits::default(), extent, &mut meta).unwrap())
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

/// Provenance on files without metadata (the common case: the container walk only) and on a
/// 1600x1200 JPEG carrying EXIF and XMP with an IPTC digital source type.
fn provenance(c: &mut Criterion) {
    let mut group = c.benchmark_group("provenance");
    let reader = synthscan::provenance::Reader::new(None).unwrap();
    let mut xmp = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    xmp.extend(br#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/digitalCapture"/></rdf:RDF></x:xmpmeta>"#);
    for (w, h) in [(512, 384), (1600, 1200), (4000, 3000)] {
        let plain = bytes::Bytes::from(jpeg(w, h));
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{w}x{h}/no_metadata"), |b| {
            b.iter(|| black_box(reader.read(&plain)))
        });
        if w == 1600 {
            let mut tagged = plain[..2].to_vec();
            tagged.extend([0xFF, 0xE1]);
            tagged.extend(((xmp.len() + 2) as u16).to_be_bytes());
            tagged.extend(&xmp);
            tagged.extend(&plain[2..]);
            let tagged = bytes::Bytes::from(tagged);
            group.bench_function(format!("{w}x{h}/xmp"), |b| {
                b.iter(|| black_box(reader.read(&tagged)))
            });
        }
    }
    // Files that declare their making: a signed C2PA manifest (validated in full, the costly
    // case) and AUTOMATIC1111 parameters in a PNG text chunk.
    for name in ["Firefly_tabby_cat.jpg", "automatic1111_cropped.png"] {
        let bytes =
            bytes::Bytes::from(std::fs::read(format!("tests/fixtures/provenance/{name}")).unwrap());
        group.bench_function(format!("declared/{name}"), |b| {
            b.iter(|| black_box(reader.read(&bytes)))
        });
    }
    group.finish();
}

criterion_group!(benches, decode, resize, provenance);
criterion_main!(benches);
