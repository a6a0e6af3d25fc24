//! Decodes one window of a JPEG, not the whole image: what a crop model reads of a large photo.
//!
//! A 224 px centre crop of a 12 MP photo covers a fiftieth of its pixels. libjpeg-turbo can
//! leave the rest mostly undone: `jpeg_crop_scanline` limits every row to the iMCU columns the
//! window needs, `jpeg_skip_scanlines` skips the inverse DCT and colour conversion of the rows
//! above it, and decoding stops after its last row. Entropy decoding of the rows above cannot
//! be skipped (Huffman data has no row index), so the saving is largest for windows high in
//! the image and smallest for progressive files, whose coefficients are all read up front.
//!
//! The pixels are those of a full decode (tested): the window is widened by a margin before
//! decoding, so that chroma upsampling at its edges sees the same neighbours as it would in
//! the whole image, and the margin is cut away afterwards.

use std::mem;

use image::RgbImage;
use mozjpeg_sys as ffi;

use super::libjpeg_errors;
use crate::decode::crop::Window;

/// Room around the window for the upsampler's context: fancy upsampling reads one chroma
/// sample beyond each edge, which is at most two luma pixels, and `jpeg_skip_scanlines` resumes
/// on an iMCU row; 16 covers both with room to spare.
const MARGIN: u32 = 16;

/// The pixels of `window` (in stored, un-oriented coordinates) of a YCbCr, grayscale or RGB
/// JPEG as RGB8. `Ok(None)` for colour spaces libjpeg does not convert to RGB (CMYK, YCCK);
/// `Err` with libjpeg's message for data it cannot decode or only decodes with corrupt-data
/// warnings (see [`libjpeg_errors`]), even where the damage lies outside the window.
pub fn decode_window(bytes: &[u8], window: Window) -> Result<Option<RgbImage>, String> {
    // libjpeg's errors and corrupt-data warnings unwind from here; the decoder state is freed
    // by `Decompress`'s drop on the way out.
    std::panic::catch_unwind(|| unsafe { decode(bytes, window) })
        .unwrap_or_else(|panic| Err(libjpeg_errors::panic_message(&*panic)))
}

/// Owns libjpeg's decompressor and its error manager, which it points to (hence boxed).
struct Decompress {
    cinfo: Box<ffi::jpeg_decompress_struct>,
    _err: Box<ffi::jpeg_error_mgr>,
}

impl Drop for Decompress {
    fn drop(&mut self) {
        unsafe { ffi::jpeg_destroy_decompress(&mut self.cinfo) };
    }
}

unsafe fn decode(bytes: &[u8], window: Window) -> Result<Option<RgbImage>, String> {
    let err = Box::new(libjpeg_errors::error_mgr());
    let mut d = Decompress {
        cinfo: Box::new(mem::zeroed()),
        _err: err,
    };
    d.cinfo.common.err = &mut *d._err;
    ffi::jpeg_create_decompress(&mut *d.cinfo);
    let cinfo = &mut *d.cinfo;
    ffi::jpeg_mem_src(cinfo, bytes.as_ptr(), bytes.len() as _);
    ffi::jpeg_read_header(cinfo, 1);
    use ffi::J_COLOR_SPACE::{JCS_YCbCr, JCS_GRAYSCALE, JCS_RGB};
    if !matches!(cinfo.jpeg_color_space, JCS_YCbCr | JCS_GRAYSCALE | JCS_RGB) {
        return Ok(None);
    }
    let (w, h) = (cinfo.image_width, cinfo.image_height);
    if window.x + window.width > w || window.y + window.height > h {
        return Err(format!("window {window:?} lies outside the {w}x{h} image"));
    }
    cinfo.out_color_space = JCS_RGB;
    ffi::jpeg_start_decompress(cinfo);

    let top = window.y.saturating_sub(MARGIN);
    let bottom = (window.y + window.height + MARGIN).min(h);
    let mut left = window.x.saturating_sub(MARGIN);
    let mut span = (window.x + window.width + MARGIN).min(w) - left;
    // Moves `left` down to an iMCU boundary and widens `span` to match.
    ffi::jpeg_crop_scanline(cinfo, &mut left, &mut span);
    if top > 0 && ffi::jpeg_skip_scanlines(cinfo, top) != top {
        return Err("the data ends before the crop's rows".into());
    }
    let stride = cinfo.output_width as usize * 3;
    let mut rows = vec![0u8; stride * (bottom - top) as usize];
    for row in rows.chunks_exact_mut(stride) {
        let mut ptr = row.as_mut_ptr();
        if ffi::jpeg_read_scanlines(cinfo, &mut ptr, 1) != 1 {
            return Err("the data ends before the crop's rows".into());
        }
    }
    // The rows below are never needed: stop without decoding them.
    ffi::jpeg_abort_decompress(cinfo);

    let (dx, dy) = ((window.x - left) as usize, (window.y - top) as usize);
    let line = window.width as usize * 3;
    let mut out = Vec::with_capacity(line * window.height as usize);
    for row in rows
        .chunks_exact(stride)
        .skip(dy)
        .take(window.height as usize)
    {
        out.extend_from_slice(&row[dx * 3..dx * 3 + line]);
    }
    Ok(RgbImage::from_raw(window.width, window.height, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mozjpeg::{ColorSpace, Compress, Decompress as Full};

    fn photo(w: u32, h: u32) -> Vec<u8> {
        let mut seed = 0x9e37_79b9_u32;
        (0..w * h)
            .flat_map(|i| {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let (x, y) = (i % w, i / w);
                [
                    (x * 255 / w) as u8 ^ (seed as u8 & 15),
                    (y * 255 / h) as u8,
                    ((x + y) % 256) as u8 ^ (seed >> 8) as u8 & 31,
                ]
            })
            .collect()
    }

    fn encode(
        w: u32,
        h: u32,
        colour: ColorSpace,
        sampling: (u8, u8),
        progressive: bool,
    ) -> Vec<u8> {
        let mut c = Compress::new(colour);
        c.set_size(w as usize, h as usize);
        c.set_quality(90.0);
        if colour != ColorSpace::JCS_GRAYSCALE {
            c.set_chroma_sampling_pixel_sizes(sampling, sampling);
        }
        if progressive {
            c.set_progressive_mode();
        }
        let mut c = c.start_compress(Vec::new()).unwrap();
        let pixels = photo(w, h);
        let pixels: Vec<u8> = if colour == ColorSpace::JCS_GRAYSCALE {
            pixels.chunks(3).map(|p| p[0]).collect()
        } else {
            pixels
        };
        c.write_scanlines(&pixels).unwrap();
        c.finish().unwrap()
    }

    fn full_decode(bytes: &[u8]) -> RgbImage {
        let mut d = Full::new_mem(bytes).unwrap().rgb().unwrap();
        let (w, h) = (d.width() as u32, d.height() as u32);
        let pixels = d.read_scanlines::<u8>().unwrap();
        RgbImage::from_raw(w, h, pixels).unwrap()
    }

    #[test]
    fn a_window_has_the_pixels_of_a_full_decode() {
        let (w, h) = (333, 250);
        for (colour, sampling, progressive) in [
            (ColorSpace::JCS_RGB, (2, 2), false),
            (ColorSpace::JCS_RGB, (2, 1), false),
            (ColorSpace::JCS_RGB, (1, 1), false),
            (ColorSpace::JCS_RGB, (2, 2), true),
            (ColorSpace::JCS_GRAYSCALE, (1, 1), false),
        ] {
            let jpeg = encode(w, h, colour, sampling, progressive);
            let full = full_decode(&jpeg);
            for (x, y, cw, ch) in [
                (55, 13, 224, 224),
                (0, 0, 100, 50),
                (w - 37, h - 21, 37, 21),
                (101, 117, 3, 5),
            ] {
                let window = Window {
                    x,
                    y,
                    width: cw,
                    height: ch,
                };
                let got = decode_window(&jpeg, window).unwrap().unwrap();
                let expected = image::imageops::crop_imm(&full, x, y, cw, ch).to_image();
                assert!(
                    got == expected,
                    "{colour:?} {sampling:?} progressive={progressive} {window:?}"
                );
            }
        }
    }

    #[test]
    fn bad_data_and_bad_windows_are_errors() {
        let jpeg = encode(64, 48, ColorSpace::JCS_RGB, (2, 2), false);
        let outside = Window {
            x: 60,
            y: 0,
            width: 8,
            height: 8,
        };
        assert!(decode_window(&jpeg, outside).is_err());
        let mut broken = jpeg.clone();
        broken.truncate(40);
        let inside = Window {
            x: 0,
            y: 0,
            width: 8,
            height: 8,
        };
        assert!(decode_window(&broken, inside).is_err());
        assert!(decode_window(b"not a jpeg at all", inside).is_err());
    }
}
