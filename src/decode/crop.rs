//! Where a crop model looks: the geometry shared by the preprocessor, which cuts the crops,
//! and the decoder, which can then decode only the window a crop covers.
//!
//! Both sides must agree to the pixel; so this module, and nothing else, says where a crop
//! lies. Offsets round half to even, as torchvision's `CenterCrop` and the training code do.

use image::metadata::Orientation;

/// Size an image of `w` x `h` is scaled to so that it covers a `cw` x `ch` crop (unchanged
/// when it already does). Rounds half to even, as Python's `round` in the training code.
pub fn fill_size(w: u32, h: u32, cw: u32, ch: u32) -> (u32, u32) {
    if w >= cw && h >= ch {
        return (w, h);
    }
    let f = (f64::from(cw) / f64::from(w)).max(f64::from(ch) / f64::from(h));
    let scaled = |v: u32, min: u32| ((f64::from(v) * f).round_ties_even() as u32).max(min);
    (scaled(w, cw), scaled(h, ch))
}

/// Crop origins along one axis: evenly spread, or the centre for one tile.
pub fn tile_offsets(length: u32, crop: u32, tiles: u32) -> Vec<u32> {
    let room = f64::from(length - crop);
    if tiles <= 1 {
        return vec![(room / 2.0).round_ties_even() as u32];
    }
    (0..tiles)
        .map(|i| (f64::from(i) * room / f64::from(tiles - 1)).round_ties_even() as u32)
        .collect()
}

/// A rectangle of pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Window {
    /// The centre `cw` x `ch` crop of a `w` x `h` image, exactly where the preprocessor cuts
    /// it; `None` when the image is smaller than the crop on either side, since then the whole
    /// image is scaled up first and every pixel counts.
    pub fn centre(w: u32, h: u32, cw: u32, ch: u32) -> Option<Window> {
        (w >= cw && h >= ch).then(|| Window {
            x: tile_offsets(w, cw, 1)[0],
            y: tile_offsets(h, ch, 1)[0],
            width: cw,
            height: ch,
        })
    }

    /// The window of the stored image (`w` x `h`, as the file holds it) that becomes `self`
    /// once `orientation` is applied: crops are placed on the image as it is displayed, and
    /// the decoder reads the image as it is stored.
    pub fn unorient(self, orientation: Orientation, w: u32, h: u32) -> Window {
        // Maps a displayed pixel to the stored pixel it came from.
        let stored = |x: u32, y: u32| -> (u32, u32) {
            use Orientation::*;
            match orientation {
                NoTransforms => (x, y),
                FlipHorizontal => (w - 1 - x, y),
                FlipVertical => (x, h - 1 - y),
                Rotate180 => (w - 1 - x, h - 1 - y),
                // Clockwise: stored (x, y) is displayed at (h - 1 - y, x).
                Rotate90 => (y, h - 1 - x),
                Rotate270 => (w - 1 - y, x),
                Rotate90FlipH => (y, x),
                Rotate270FlipH => (w - 1 - y, h - 1 - x),
            }
        };
        let (ax, ay) = stored(self.x, self.y);
        let (bx, by) = stored(self.x + self.width - 1, self.y + self.height - 1);
        Window {
            x: ax.min(bx),
            y: ay.min(by),
            width: ax.abs_diff(bx) + 1,
            height: ay.abs_diff(by) + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, GenericImageView, RgbImage};

    #[test]
    fn centre_offsets_round_half_to_even() {
        assert_eq!(
            Window::centre(10, 9, 4, 4),
            Some(Window {
                x: 3,
                y: 2,
                width: 4,
                height: 4
            })
        );
        assert_eq!(Window::centre(3, 9, 4, 4), None);
    }

    #[test]
    fn small_images_are_filled_keeping_aspect() {
        assert_eq!(fill_size(3, 6, 4, 4), (4, 8));
        assert_eq!(fill_size(10, 10, 4, 4), (10, 10));
    }

    /// Cropping the displayed image equals orienting the crop of the stored image, for every
    /// EXIF orientation and windows touching each edge.
    #[test]
    fn unorient_finds_the_stored_pixels_of_a_displayed_window() {
        use Orientation::*;
        let (w, h) = (7, 5);
        let stored = RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 0]));
        for orientation in [
            NoTransforms,
            FlipHorizontal,
            FlipVertical,
            Rotate180,
            Rotate90,
            Rotate270,
            Rotate90FlipH,
            Rotate270FlipH,
        ] {
            let mut shown = DynamicImage::ImageRgb8(stored.clone());
            shown.apply_orientation(orientation);
            let (sw, sh) = shown.dimensions();
            for (x, y, cw, ch) in [(0, 0, 2, 3), (1, 2, 3, 2), (sw - 2, sh - 1, 2, 1)] {
                let window = Window {
                    x,
                    y,
                    width: cw,
                    height: ch,
                };
                let expected = shown.crop_imm(x, y, cw, ch).to_rgb8();
                let s = window.unorient(orientation, w, h);
                let mut got =
                    DynamicImage::ImageRgb8(stored.clone()).crop_imm(s.x, s.y, s.width, s.height);
                got.apply_orientation(orientation);
                assert_eq!(got.to_rgb8(), expected, "{orientation:?} {window:?}");
            }
        }
    }
}
