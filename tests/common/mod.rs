//! Helpers shared by the integration tests: run the real binary, make images, read verdicts.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{Float32Type, UInt32Type, UInt64Type, UInt8Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn synthscan(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synthscan"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--quiet")
        .args(args)
        .env_remove("SYNTHSCAN_MODELS");
    cmd
}

/// Runs a command to its end and asserts that it succeeded, showing its stderr if not.
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `--model` arguments for the random-weight test network.
pub fn tiny_model() -> Vec<String> {
    vec![
        "--model".into(),
        fixtures()
            .join("tiny-cnn.json")
            .to_string_lossy()
            .into_owned(),
    ]
}

/// Writes `dir/NAME.json`, the test network's manifest as `edit` changes it, beside a copy of
/// the network, and returns the manifest's path.
pub fn tiny_model_in(dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let network = dir.join("tiny-cnn.onnx");
    if !network.exists() {
        std::fs::copy(fixtures().join("tiny-cnn.onnx"), &network).unwrap();
    }
    let text = std::fs::read_to_string(fixtures().join("tiny-cnn.json")).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    edit(&mut manifest);
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, manifest.to_string()).unwrap();
    path
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A smooth colour pattern, so that images of different sizes get different scores.
pub fn write_image(path: &Path, w: u32, h: u32, format: image::ImageFormat) {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x ^ y) & 0xff) as u8,
        ])
    });
    let img = image::DynamicImage::ImageRgb8(img);
    let img = match format {
        image::ImageFormat::Gif | image::ImageFormat::WebP => {
            image::DynamicImage::ImageRgba8(img.to_rgba8())
        }
        _ => img,
    };
    img.save_with_format(path, format).unwrap();
}

pub fn read_batch(path: &Path) -> RecordBatch {
    let file = std::fs::File::open(path).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let schema = batches
        .first()
        .map(|b| b.schema())
        .expect("at least one batch");
    concat_batches(&schema, &batches).unwrap()
}

#[derive(Debug, Clone)]
pub struct Row {
    pub path: String,
    pub status: String,
    pub error: Option<String>,
    pub score: Option<f32>,
    pub label: Option<String>,
    pub format: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub jpeg_quality: Option<u8>,
    pub size_bytes: Option<u64>,
    pub blake3: Option<String>,
}

pub fn read_rows(path: &Path) -> Vec<Row> {
    let b = read_batch(path);
    let s = |name: &str, i: usize| {
        let c = b.column_by_name(name).unwrap().as_string::<i32>();
        c.is_valid(i).then(|| c.value(i).to_string())
    };
    let score = b
        .column_by_name("score")
        .unwrap()
        .as_primitive::<Float32Type>();
    let width = b
        .column_by_name("width")
        .unwrap()
        .as_primitive::<UInt32Type>();
    let height = b
        .column_by_name("height")
        .unwrap()
        .as_primitive::<UInt32Type>();
    let quality = b
        .column_by_name("jpeg_quality")
        .unwrap()
        .as_primitive::<UInt8Type>();
    let size = b
        .column_by_name("size_bytes")
        .unwrap()
        .as_primitive::<UInt64Type>();
    (0..b.num_rows())
        .map(|i| Row {
            path: s("path", i).unwrap(),
            status: s("status", i).unwrap(),
            error: s("error", i),
            score: score.is_valid(i).then(|| score.value(i)),
            label: s("label", i),
            format: s("format", i),
            width: width.is_valid(i).then(|| width.value(i)),
            height: height.is_valid(i).then(|| height.value(i)),
            jpeg_quality: quality.is_valid(i).then(|| quality.value(i)),
            size_bytes: size.is_valid(i).then(|| size.value(i)),
            blake3: s("blake3", i),
        })
        .collect()
}

/// A valid 1x1 PNG whose header is rewritten to claim `w` x `h` pixels (CRC fixed up), so only
/// a size check before allocation saves the decoder.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::new(1, 1)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    let mut png = out.into_inner();
    // signature (8) + length (4) + "IHDR" (4), then width and height.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A 1x1 PNG whose colour profile (iCCP) inflates to 1 MiB over the default metadata budget
/// from about 17 KB.
pub fn png_with_profile_bomb() -> Vec<u8> {
    use std::io::Write;
    let png = png_claiming(1, 1);
    let inflated = synthscan::decode::METADATA_BUDGET as usize + (1 << 20);
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; inflated]).unwrap();
    let mut data = b"bomb\0\0".to_vec();
    data.extend(z.finish().unwrap());
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend(b"iCCP");
    chunk.extend(&data);
    chunk.extend(crc32fast::hash(&chunk[4..]).to_be_bytes());
    // After the signature and IHDR (33 bytes), before the image data.
    [&png[..33], &chunk[..], &png[33..]].concat()
}

/// The 54-byte header of a 24-bit BMP claiming `w` x `h` pixels, without its pixels.
pub fn bmp_claiming(w: i32, h: i32) -> Vec<u8> {
    let mut bmp = b"BM".to_vec();
    bmp.extend(54u32.to_le_bytes());
    bmp.extend([0; 4]);
    bmp.extend(54u32.to_le_bytes());
    bmp.extend(40u32.to_le_bytes());
    bmp.extend(w.to_le_bytes());
    bmp.extend(h.to_le_bytes());
    bmp.extend(1u16.to_le_bytes());
    bmp.extend(24u16.to_le_bytes());
    bmp.extend([0; 24]);
    bmp
}

/// A zip archive of the given entries (deflated).
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}
