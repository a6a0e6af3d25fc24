//! Bytes → RGB8: read, hash, sniff the format from the content, check limits before the decoder
//! allocates, decode, apply EXIF orientation, convert any colour type to RGB8.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use super::{jpeg, jpeg_window, libjpeg_errors, precheck};
use crate::decode::crop::Window;
use crate::model::manifest::InputSpec;
use crate::verdict::{to_ms, FileMeta, Status};

/// The default of [`Limits::max_metadata_bytes`].
pub const METADATA_BUDGET: u64 = 16 * 1024 * 1024;

/// Limits that keep one hostile file from taking the machine down.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_file_bytes: u64,
    /// Width x height after decoding; checked from the header before any pixel is allocated.
    pub max_pixels: u64,
    /// What one compressed metadata block may inflate to (a PNG colour profile here; text
    /// chunks and C2PA stores in provenance), counted on the inflated bytes as they come out.
    pub max_metadata_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 256 * 1024 * 1024,
            // Pillow's own decompression-bomb error threshold.
            max_pixels: 178_956_970,
            // ICC profiles are a few KiB to a few MiB; ComfyUI workflows a few hundred KiB.
            max_metadata_bytes: METADATA_BUDGET,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Io(String),
    #[error("is a directory or other non-regular file")]
    NotAFile,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Corrupt(String),
}

impl DecodeError {
    pub fn status(&self) -> Status {
        match self {
            DecodeError::Io(_) => Status::IoError,
            DecodeError::NotAFile => Status::NotAFile,
            DecodeError::TooLarge(_) => Status::TooLarge,
            DecodeError::Unsupported(_) => Status::Unsupported,
            DecodeError::Corrupt(_) => Status::DecodeError,
        }
    }
}

/// How much of a JPEG the models read, so that the decoder can leave the rest undone. `meta`
/// always keeps the file's full size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Extent {
    /// Every pixel at full scale.
    #[default]
    Full,
    /// Resize models: a large JPEG may be decoded at 1/4 or 1/8 scale in the DCT domain
    /// (libjpeg's scaled IDCT), as long as both sides stay at least `min_side` pixels; a 12 MP
    /// photo that the model sees at 224 px then costs a fraction of a full decode.
    Reduced { min_side: u32 },
    /// Crop models with one tile: only the centre `width` x `height` window is decoded (see
    /// [`jpeg_window`]), and the image handed on is that window. An image smaller than the
    /// window is decoded whole, since it is scaled up before cropping.
    CentreCrop { width: u32, height: u32 },
}

impl Extent {
    /// The least a decoder must produce for models with these inputs: reduced for resize
    /// models (keeping [`DCT_MARGIN`] times the largest input), the centre window when every
    /// model reads the same single centre crop, and everything otherwise (tiles span the
    /// image; a resize model beside a crop model needs the whole image).
    pub fn for_inputs(specs: &[InputSpec]) -> Extent {
        let Some(first) = specs.first() else {
            return Extent::Full;
        };
        if specs.iter().all(|s| s.crop.is_none()) {
            let largest = specs.iter().map(|s| s.width.max(s.height)).max();
            return Extent::Reduced {
                min_side: largest.unwrap_or(0) * DCT_MARGIN,
            };
        }
        let centre = |s: &InputSpec| {
            s.crop.as_ref().is_some_and(|c| c.tiles == 1)
                && (s.width, s.height) == (first.width, first.height)
        };
        if specs.iter().all(centre) {
            Extent::CentreCrop {
                width: first.width,
                height: first.height,
            }
        } else {
            Extent::Full
        }
    }
}

/// Reads and decodes one file, filling `meta` as far as it gets, so that a failed file's row
/// still carries size, hash and format where they were known.
pub fn decode_file(
    path: &Path,
    limits: &Limits,
    extent: Extent,
    meta: &mut FileMeta,
) -> Result<RgbImage, DecodeError> {
    let bytes = read_file(path, limits, meta)?;
    // The file can change between stat and read; the row describes what was read.
    decode_file_bytes(&bytes, limits, extent, meta)
}

/// Reads a whole file within the size limit, filling in its size and modification time.
pub fn read_file(
    path: &Path,
    limits: &Limits,
    meta: &mut FileMeta,
) -> Result<Vec<u8>, DecodeError> {
    let md = std::fs::metadata(path).map_err(|e| io_error(path, &e))?;
    if !md.is_file() {
        return Err(DecodeError::NotAFile);
    }
    meta.size_bytes = Some(md.len());
    meta.modified_ms = md.modified().ok().map(to_ms);
    check_file_size(md.len(), limits)?;
    std::fs::read(path).map_err(|e| io_error(path, &e))
}

/// Decodes a whole file that is already in memory (an upload): the same checks and the same
/// row facts as [`decode_file`], without the filesystem.
pub fn decode_file_bytes(
    bytes: &[u8],
    limits: &Limits,
    extent: Extent,
    meta: &mut FileMeta,
) -> Result<RgbImage, DecodeError> {
    meta.size_bytes = Some(bytes.len() as u64);
    check_file_size(bytes.len() as u64, limits)?;
    meta.blake3 = Some(blake3::hash(bytes).to_hex().to_string());
    decode_bytes(bytes, limits, extent, meta)
}

fn check_file_size(len: u64, limits: &Limits) -> Result<(), DecodeError> {
    if len > limits.max_file_bytes {
        return Err(DecodeError::TooLarge(format!(
            "file is {len} bytes, over the limit of {} bytes",
            limits.max_file_bytes
        )));
    }
    Ok(())
}

/// Decodes the bytes of an image, as much of it as `extent` asks for.
pub fn decode_bytes(
    bytes: &[u8],
    limits: &Limits,
    extent: Extent,
    meta: &mut FileMeta,
) -> Result<RgbImage, DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Unsupported("empty file (0 bytes)".into()));
    }
    let format = match image::guess_format(bytes) {
        Ok(format) => format,
        // `image` wants three bytes of JPEG signature; a start-of-image marker alone is a JPEG
        // cut right after it, which the completeness check below refuses.
        Err(_) if bytes.starts_with(&[0xFF, 0xD8]) => ImageFormat::Jpeg,
        Err(_) => {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            return Err(DecodeError::Unsupported(format!(
                "not a recognised image format (first bytes: {})",
                head.join(" ")
            )));
        }
    };
    meta.format = Some(format_name(format));
    if format == ImageFormat::Jpeg {
        meta.jpeg_quality = jpeg::estimate_quality(bytes);
        if !jpeg::is_complete(bytes) {
            return Err(DecodeError::Corrupt(
                "truncated JPEG: the end-of-image marker is missing".into(),
            ));
        }
    }

    check_before_decoding(bytes, format, limits)?;

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    // Room for the decoded frame at 16-bit RGBA plus the decoder's own buffers.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(image_error)?;
    let (w, h) = decoder.dimensions();
    check_pixels(u64::from(w), u64::from(h), limits)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    use image::metadata::Orientation::{Rotate270, Rotate270FlipH, Rotate90, Rotate90FlipH};
    let turned = matches!(
        orientation,
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH
    );
    let shown = if turned { (h, w) } else { (w, h) };
    meta.width = Some(shown.0);
    meta.height = Some(shown.1);

    let libjpeg = if format == ImageFormat::Jpeg {
        match extent {
            Extent::CentreCrop { width, height } => {
                match Window::centre(shown.0, shown.1, width, height) {
                    Some(window) => decode_jpeg_window(bytes, window.unorient(orientation, w, h)),
                    None => decode_jpeg_libjpeg(bytes, 1),
                }
            }
            Extent::Reduced { min_side } => {
                decode_jpeg_libjpeg(bytes, dct_reduction(w, h, min_side))
            }
            Extent::Full => decode_jpeg_libjpeg(bytes, 1),
        }
    } else {
        None
    };
    let mut image = match libjpeg {
        Some(rgb) => DynamicImage::ImageRgb8(rgb?),
        None => DynamicImage::from_decoder(decoder).map_err(image_error)?,
    };
    image.apply_orientation(orientation);
    Ok(image.into_rgb8())
}

fn check_pixels(w: u64, h: u64, limits: &Limits) -> Result<(), DecodeError> {
    if w.saturating_mul(h) > limits.max_pixels {
        return Err(DecodeError::TooLarge(format!(
            "{w}x{h} pixels is over the limit of {} pixels (decompression bomb?)",
            limits.max_pixels
        )));
    }
    Ok(())
}

/// What the decoder would spend memory on before its own limits apply (see [`precheck`]).
fn check_before_decoding(
    bytes: &[u8],
    format: ImageFormat,
    limits: &Limits,
) -> Result<(), DecodeError> {
    match format {
        ImageFormat::Png => {
            let budget = limits.max_metadata_bytes;
            if precheck::png_profile_over_budget(bytes, budget).is_some() {
                return Err(DecodeError::TooLarge(format!(
                    "the PNG colour profile (iCCP) inflates to over {budget} bytes, the limit \
                     for a metadata block (decompression bomb?)"
                )));
            }
        }
        // The BMP decoder refuses sides over 65535 as a format error, before the pixel check.
        ImageFormat::Bmp => {
            if let Some((w, h)) = precheck::bmp_dimensions(bytes) {
                check_pixels(w, h, limits)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The centre window of a JPEG (see [`jpeg_window`]); `None` for colour spaces it leaves to
/// the `image` crate, which then decodes the whole image.
fn decode_jpeg_window(bytes: &[u8], window: Window) -> Option<Result<RgbImage, DecodeError>> {
    jpeg_window::decode_window(bytes, window)
        .map_err(|e| DecodeError::Corrupt(format!("JPEG: {e}")))
        .transpose()
}

/// Decodes a YCbCr or grayscale JPEG with libjpeg-turbo's decoder (accurate integer IDCT, fancy
/// chroma upsampling): the decoder Pillow uses, so the scanner sees the same pixels as the
/// training side. Detectors react to pixel-level noise, and another JPEG decoder's rounding
/// moved some scores by several hundredths. `None` for colour spaces it does not convert to
/// RGB (CMYK), which go to the `image` crate's decoder.
fn decode_jpeg_libjpeg(bytes: &[u8], reduction: u8) -> Option<Result<RgbImage, DecodeError>> {
    use mozjpeg::{ColorSpace, Decompress};
    let corrupt = |e: String| DecodeError::Corrupt(format!("JPEG: {e}"));
    // libjpeg reports fatal errors and corrupt data by unwinding; keep them to this file.
    let result = std::panic::catch_unwind(|| -> Result<Option<RgbImage>, String> {
        let mut d = Decompress::with_err(libjpeg_errors::error_mgr())
            .from_mem(bytes)
            .map_err(|e| e.to_string())?;
        d.scale(8 / reduction);
        if !matches!(
            d.color_space(),
            ColorSpace::JCS_YCbCr | ColorSpace::JCS_GRAYSCALE | ColorSpace::JCS_RGB
        ) {
            return Ok(None);
        }
        let mut started = d.rgb().map_err(|e| e.to_string())?;
        let (w, h) = (started.width() as u32, started.height() as u32);
        let pixels = started.read_scanlines::<u8>().map_err(|e| e.to_string())?;
        started.finish().map_err(|e| e.to_string())?;
        Ok(RgbImage::from_raw(w, h, pixels))
    });
    match result {
        Ok(Ok(Some(img))) => Some(Ok(img)),
        Ok(Ok(None)) => None,
        Ok(Err(e)) => Some(Err(corrupt(e))),
        Err(panic) => Some(Err(corrupt(libjpeg_errors::panic_message(&*panic)))),
    }
}

/// Reduced JPEG decoding keeps both sides at least this many times the largest model input, so
/// that the resize to the input still averages several source pixels per output pixel.
pub const DCT_MARGIN: u32 = 3;

/// How far a `w` x `h` JPEG may be reduced in the DCT domain (1, 4 or 8) so that both sides
/// stay at least `min_side`. Halving is not used: it saves a fifth of the decode at most, and
/// it is where the reduced decode moved scores the most (measured on the benchmark corpus).
fn dct_reduction(w: u32, h: u32, min_side: u32) -> u8 {
    if min_side == 0 {
        return 1;
    }
    let short = w.min(h);
    [8u8, 4]
        .into_iter()
        .find(|&r| short / u32::from(r) >= min_side)
        .unwrap_or(1)
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Bmp => "bmp",
        ImageFormat::Tiff => "tiff",
        other => other.extensions_str().first().copied().unwrap_or("unknown"),
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> DecodeError {
    let broken_link = e.kind() == std::io::ErrorKind::NotFound
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if broken_link {
        DecodeError::Io("broken symlink: its target does not exist".into())
    } else {
        DecodeError::Io(e.to_string())
    }
}

fn image_error(e: ImageError) -> DecodeError {
    match e {
        ImageError::Limits(l) => DecodeError::TooLarge(format!("over the decoder's limits: {l}")),
        ImageError::Unsupported(u) => DecodeError::Unsupported(u.to_string()),
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Corrupt("truncated: the data ends before the image does".into())
        }
        other => DecodeError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_bytes(w: u32, h: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 100]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn sniffs_content_not_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("really-a-png.jpg");
        std::fs::write(&path, png_bytes(20, 10)).unwrap();
        let mut meta = FileMeta::default();
        let image = decode_file(&path, &Limits::default(), Extent::Full, &mut meta).unwrap();
        assert_eq!(meta.format, Some("png"));
        assert_eq!((image.width(), image.height()), (20, 10));
        assert_eq!(meta.jpeg_quality, None);
        assert_eq!(meta.blake3.as_ref().map(String::len), Some(64));
    }

    #[test]
    fn large_jpegs_decode_reduced_but_report_their_full_size() {
        let img = RgbImage::from_fn(2000, 1600, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut jpeg = Cursor::new(Vec::new());
        img.write_to(&mut jpeg, ImageFormat::Jpeg).unwrap();
        let jpeg = jpeg.into_inner();
        let mut meta = FileMeta::default();
        let full = decode_bytes(&jpeg, &Limits::default(), Extent::Full, &mut meta).unwrap();
        assert_eq!(full.dimensions(), (2000, 1600));
        // 1/4 keeps the short side at 400 >= 300; 1/8 would not.
        let reduced = decode_bytes(
            &jpeg,
            &Limits::default(),
            Extent::Reduced { min_side: 300 },
            &mut meta,
        )
        .unwrap();
        assert_eq!(reduced.dimensions(), (500, 400));
        assert_eq!((meta.width, meta.height), (Some(2000), Some(1600)));
        // Too small to reduce by 4 while keeping 450: decoded in full.
        let kept = decode_bytes(
            &jpeg,
            &Limits::default(),
            Extent::Reduced { min_side: 450 },
            &mut meta,
        )
        .unwrap();
        assert_eq!(kept.dimensions(), (2000, 1600));
    }

    /// A JPEG of `w` x `h` whose EXIF says to display it with `orientation` (1-8).
    fn oriented_jpeg(w: u32, h: u32, orientation: u8) -> Vec<u8> {
        let img = RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 7 % 256) as u8,
                (y * 5 % 256) as u8,
                ((x ^ y) % 256) as u8,
            ])
        });
        let mut plain = Cursor::new(Vec::new());
        img.write_to(&mut plain, ImageFormat::Jpeg).unwrap();
        let plain = plain.into_inner();
        // Exif header, big-endian TIFF header, one IFD entry: 0x0112 SHORT 1 = orientation.
        let mut exif = b"Exif\0\0MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
        exif.extend([0, orientation, 0, 0, 0, 0, 0, 0]);
        let mut out = plain[..2].to_vec();
        out.extend([0xFF, 0xE1]);
        out.extend(((exif.len() + 2) as u16).to_be_bytes());
        out.extend(exif);
        out.extend(&plain[2..]);
        out
    }

    #[test]
    fn crop_models_get_the_centre_window_as_a_full_decode_would_show_it() {
        let extent = Extent::CentreCrop {
            width: 64,
            height: 48,
        };
        for orientation in 1..=8 {
            let jpeg = oriented_jpeg(301, 200, orientation);
            let mut meta = FileMeta::default();
            let full = decode_bytes(&jpeg, &Limits::default(), Extent::Full, &mut meta).unwrap();
            let shown = full.dimensions();
            assert_eq!(
                shown,
                if orientation >= 5 {
                    (200, 301)
                } else {
                    (301, 200)
                }
            );
            let window = Window::centre(shown.0, shown.1, 64, 48).unwrap();
            let expected = image::imageops::crop_imm(&full, window.x, window.y, 64, 48).to_image();
            let mut meta = FileMeta::default();
            let got = decode_bytes(&jpeg, &Limits::default(), extent, &mut meta).unwrap();
            assert!(got == expected, "orientation {orientation}");
            assert_eq!((meta.width, meta.height), (Some(shown.0), Some(shown.1)));
        }
        // Smaller than the crop: decoded whole, to be scaled up by the preprocessor.
        let small = oriented_jpeg(50, 40, 1);
        let mut meta = FileMeta::default();
        let got = decode_bytes(&small, &Limits::default(), extent, &mut meta).unwrap();
        assert_eq!(got.dimensions(), (50, 40));
    }

    #[test]
    fn the_extent_follows_the_models_inputs() {
        let resize = |size: u32| InputSpec::for_tests(size, None);
        let crop = |size: u32, tiles: u32| InputSpec::for_tests(size, Some(tiles));
        assert_eq!(
            Extent::for_inputs(&[resize(224), resize(256)]),
            Extent::Reduced { min_side: 768 }
        );
        assert_eq!(
            Extent::for_inputs(&[crop(224, 1)]),
            Extent::CentreCrop {
                width: 224,
                height: 224
            }
        );
        assert_eq!(Extent::for_inputs(&[crop(224, 2)]), Extent::Full);
        assert_eq!(
            Extent::for_inputs(&[crop(224, 1), resize(224)]),
            Extent::Full
        );
        assert_eq!(
            Extent::for_inputs(&[crop(224, 1), crop(256, 1)]),
            Extent::Full
        );
    }

    #[test]
    fn a_camera_jpeg_cut_in_half_is_a_decode_error_not_grey_filler() {
        // Its EXIF thumbnail, whole, sits before the cut.
        let full = include_bytes!("../../tests/fixtures/camera/Canon_40D.jpg");
        let mut meta = FileMeta::default();
        decode_bytes(full, &Limits::default(), Extent::Full, &mut meta).unwrap();
        let err = decode_bytes(
            &full[..full.len() / 2],
            &Limits::default(),
            Extent::Full,
            &mut meta,
        )
        .unwrap_err();
        assert_eq!(err.status(), Status::DecodeError, "{err}");
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn refuses_oversize_images_from_the_header() {
        let limits = Limits {
            max_pixels: 100,
            ..Limits::default()
        };
        let mut meta = FileMeta::default();
        let err = decode_bytes(&png_bytes(20, 10), &limits, Extent::Full, &mut meta).unwrap_err();
        assert_eq!(err.status(), Status::TooLarge, "{err}");
    }

    #[test]
    fn corrupt_and_empty_inputs_have_distinct_statuses() {
        let mut meta = FileMeta::default();
        let png = png_bytes(64, 64);
        let err = decode_bytes(
            &png[..png.len() / 2],
            &Limits::default(),
            Extent::Full,
            &mut meta,
        )
        .unwrap_err();
        assert_eq!(err.status(), Status::DecodeError, "{err}");
        let err = decode_bytes(b"", &Limits::default(), Extent::Full, &mut meta).unwrap_err();
        assert_eq!(err.status(), Status::Unsupported);
        let err = decode_bytes(
            b"hello there, not an image",
            &Limits::default(),
            Extent::Full,
            &mut meta,
        )
        .unwrap_err();
        assert_eq!(err.status(), Status::Unsupported);
    }

    /// A PNG whose colour profile is `inflated` bytes of zeros (about 1000:1 deflated).
    fn png_with_profile(inflated: usize) -> Vec<u8> {
        let png = png_bytes(16, 16);
        let chunk = crate::decode::precheck::tests::profile_chunk(inflated);
        // After the signature (8) and IHDR (25), before the image data.
        [&png[..33], &chunk[..], &png[33..]].concat()
    }

    #[test]
    fn a_colour_profile_bomb_is_too_large_before_it_is_inflated() {
        let limits = Limits {
            max_metadata_bytes: 64 * 1024,
            ..Limits::default()
        };
        let mut meta = FileMeta::default();
        let small = png_with_profile(60 * 1024);
        let image = decode_bytes(&small, &limits, Extent::Full, &mut meta).unwrap();
        assert_eq!(image.dimensions(), (16, 16));
        let bomb = png_with_profile(8 * 1024 * 1024);
        let err = decode_bytes(&bomb, &limits, Extent::Full, &mut meta).unwrap_err();
        assert_eq!(err.status(), Status::TooLarge, "{err}");
        assert!(err.to_string().contains("colour profile (iCCP)"), "{err}");
        assert!(err.to_string().contains("65536 bytes"), "{err}");
    }

    fn noisy_jpeg(w: u32, h: u32) -> Vec<u8> {
        let mut seed = 0x2545_f491_u32;
        let img = RgbImage::from_fn(w, h, |x, y| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            image::Rgb([
                (x % 256) as u8 ^ seed as u8,
                (y % 256) as u8,
                (seed >> 8) as u8,
            ])
        });
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    /// Where the entropy-coded data of the (first) scan starts.
    fn scan_start(jpeg: &[u8]) -> usize {
        let sos = jpeg.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        sos + 2 + usize::from(u16::from_be_bytes([jpeg[sos + 2], jpeg[sos + 3]]))
    }

    const EXTENTS: [Extent; 3] = [
        Extent::Full,
        Extent::Reduced { min_side: 64 },
        Extent::CentreCrop {
            width: 64,
            height: 64,
        },
    ];

    #[test]
    fn a_scan_cut_short_with_an_end_marker_appended_is_a_decode_error() {
        let jpeg = noisy_jpeg(640, 480);
        let scan = scan_start(&jpeg);
        let cut = scan + (jpeg.len() - scan) / 10;
        let forged = [&jpeg[..cut], &[0xFF, 0xD9][..]].concat();
        for extent in EXTENTS {
            let mut meta = FileMeta::default();
            decode_bytes(&jpeg, &Limits::default(), extent, &mut meta).unwrap();
            let err = decode_bytes(&forged, &Limits::default(), extent, &mut meta).unwrap_err();
            assert_eq!(err.status(), Status::DecodeError, "{extent:?}: {err}");
            assert!(
                err.to_string().contains("premature end of data segment"),
                "{extent:?}: {err}"
            );
        }
    }

    #[test]
    fn a_header_far_larger_than_its_data_is_a_decode_error() {
        let mut jpeg = noisy_jpeg(256, 192);
        // Baseline SOF0: length (2), precision (1), then height and width.
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        jpeg[sof + 5..sof + 7].copy_from_slice(&7000u16.to_be_bytes());
        jpeg[sof + 7..sof + 9].copy_from_slice(&7000u16.to_be_bytes());
        for extent in EXTENTS {
            let mut meta = FileMeta::default();
            let err = decode_bytes(&jpeg, &Limits::default(), extent, &mut meta).unwrap_err();
            assert_eq!(err.status(), Status::DecodeError, "{extent:?}: {err}");
            assert!(
                err.to_string().contains("Corrupt JPEG data"),
                "{extent:?}: {err}"
            );
        }
    }

    #[test]
    fn camera_files_padded_after_or_before_their_end_marker_stay_ok() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/camera");
        for name in ["Canon_40D", "Canon_DIGITAL_IXUS_400", "Nikon_D70"] {
            let camera = std::fs::read(fixtures.join(format!("{name}.jpg"))).unwrap();
            let eoi = camera.len() - 2;
            assert_eq!(camera[eoi..], [0xFF, 0xD9], "{name}");
            // Cameras pad files out to a block size after the end marker, and some writers
            // leave padding between the last scan and the marker (libjpeg: "extraneous bytes").
            let mut after = camera.clone();
            after.extend(vec![0u8; 4096]);
            let before = [&camera[..eoi], &[0u8; 100][..], &camera[eoi..]].concat();
            for (how, bytes) in [
                ("as made", &camera),
                ("padded after", &after),
                ("padded before", &before),
            ] {
                for extent in EXTENTS {
                    let mut meta = FileMeta::default();
                    let got = decode_bytes(bytes, &Limits::default(), extent, &mut meta);
                    assert!(got.is_ok(), "{name} {how} {extent:?}: {}", got.unwrap_err());
                }
            }
        }
    }

    #[test]
    fn a_start_marker_alone_is_a_truncated_jpeg() {
        let mut meta = FileMeta::default();
        let err =
            decode_bytes(&[0xFF, 0xD8], &Limits::default(), Extent::Full, &mut meta).unwrap_err();
        assert_eq!(err.status(), Status::DecodeError, "{err}");
        assert!(err.to_string().contains("truncated JPEG"), "{err}");
        assert_eq!(meta.format, Some("jpeg"));
    }

    #[test]
    fn a_bmp_over_the_pixel_limit_is_too_large_from_its_header() {
        // File header, then a BITMAPINFOHEADER claiming 100000 x 100000 at 24 bits.
        let mut bmp = b"BM".to_vec();
        bmp.extend(54u32.to_le_bytes());
        bmp.extend([0; 4]);
        bmp.extend(54u32.to_le_bytes());
        bmp.extend(40u32.to_le_bytes());
        bmp.extend(100_000i32.to_le_bytes());
        bmp.extend(100_000i32.to_le_bytes());
        bmp.extend(1u16.to_le_bytes());
        bmp.extend(24u16.to_le_bytes());
        bmp.extend([0; 24]);
        let mut meta = FileMeta::default();
        let err = decode_bytes(&bmp, &Limits::default(), Extent::Full, &mut meta).unwrap_err();
        assert_eq!(err.status(), Status::TooLarge, "{err}");
        assert!(err.to_string().contains("100000x100000"), "{err}");
    }

    /// Seeds for the fuzzing below: the camera fixtures and a small file of every other format.
    fn fuzz_seeds() -> Vec<Vec<u8>> {
        let camera = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/camera");
        let mut seeds: Vec<Vec<u8>> = ["Canon_40D", "Canon_DIGITAL_IXUS_400", "Nikon_D70"]
            .iter()
            .map(|name| std::fs::read(camera.join(format!("{name}.jpg"))).unwrap())
            .collect();
        let img = RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 77]));
        for format in [
            ImageFormat::Png,
            ImageFormat::WebP,
            ImageFormat::Gif,
            ImageFormat::Bmp,
            ImageFormat::Tiff,
        ] {
            let mut out = Cursor::new(Vec::new());
            img.write_to(&mut out, format).unwrap();
            seeds.push(out.into_inner());
        }
        seeds.push(png_with_profile(4096));
        seeds
    }

    proptest::proptest! {
        // Cases: PROPTEST_CASES (256 by default); see README for a longer run.
        #![proptest_config(proptest::prelude::ProptestConfig::default())]

        /// Mutated and cut files never panic the decoder, never come out larger than the
        /// limits allow, and a success reports the size it decoded.
        #[test]
        fn decode_fuzz_mutated_files_are_rows_not_panics(
            seed in proptest::sample::select(fuzz_seeds()),
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                0..12,
            ),
            // Half the cases keep the whole file: a cut one mostly stops at the first check.
            cut in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
            extent in proptest::sample::select(EXTENTS.to_vec()),
        ) {
            let mut bytes = seed;
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            let keep = cut.map_or(bytes.len(), |c| c.index(bytes.len()) + 1);
            let limits = Limits {
                max_pixels: 4_000_000,
                max_metadata_bytes: 1 << 20,
                ..Limits::default()
            };
            let mut meta = FileMeta::default();
            if let Ok(image) = decode_bytes(&bytes[..keep], &limits, extent, &mut meta) {
                let (w, h) = (meta.width.unwrap(), meta.height.unwrap());
                proptest::prop_assert!(u64::from(w) * u64::from(h) <= limits.max_pixels);
                proptest::prop_assert!(image.width() <= w && image.height() <= h);
            }
        }
    }
}
