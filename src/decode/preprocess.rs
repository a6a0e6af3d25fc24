//! RGB8 → model input tensor, matched to the training side (`train.data.eval_transform`).
//!
//! Two modes, as the manifest says:
//! - resize: the whole image to the model's size with no crop, bilinear with antialias
//!   (Pillow's convolution resampler, which torchvision's `Resize((h, w), antialias=True)` uses
//!   on PIL images);
//! - crop (native resolution): no resize, `tiles` x `tiles` crops spread evenly over the image
//!   (one tile: the centre crop), because generator traces live in pixel-level noise that a
//!   resize averages away. An image smaller than the crop is scaled up first, keeping its
//!   aspect ratio, until it covers the crop. The tiles of one image are consecutive inputs.
//!
//! Then scale and normalize per channel into planar (CHW) f32.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::decode::crop::{fill_size, tile_offsets};
use crate::model::manifest::InputSpec;
use crate::verdict::FileMeta;

/// A decoded image ready for the models: one tensor per distinct input spec.
#[derive(Debug)]
pub struct Prepared {
    pub meta: FileMeta,
    pub tensors: Vec<Vec<f32>>,
}

#[derive(Debug, thiserror::Error)]
#[error("resize failed: {0}")]
pub struct PreprocessError(String);

/// One input layout; several models with equal specs share its tensor.
#[derive(Debug, Clone)]
struct Plan {
    width: u32,
    height: u32,
    /// Crop mode: tiles per side. `None`: resize mode.
    tiles: Option<u32>,
    /// `lut[c][v]` = normalized value of channel `c` for byte `v`.
    lut: [[f32; 256]; 3],
}

impl Plan {
    fn new(spec: &InputSpec) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 * spec.scale - spec.mean[c]) / spec.std[c];
            }
        }
        Plan {
            width: spec.width,
            height: spec.height,
            tiles: spec.crop.as_ref().map(|c| c.tiles),
            lut,
        }
    }

    pub fn len(&self) -> usize {
        3 * self.width as usize * self.height as usize
    }
}

/// Owns a resizer and its scratch buffers; one per decode thread.
pub struct Preprocessor {
    plans: Vec<Plan>,
    /// One resized RGB8 image per plan, reused from image to image.
    resized: Vec<Image<'static>>,
    resizer: Resizer,
    options: ResizeOptions,
}

impl Preprocessor {
    /// `specs` must already be deduplicated; the tensors come back in the same order.
    pub fn new(specs: &[InputSpec]) -> Self {
        let plans: Vec<Plan> = specs.iter().map(Plan::new).collect();
        Preprocessor {
            resized: plans
                .iter()
                .map(|p| Image::new(p.width, p.height, PixelType::U8x3))
                .collect(),
            plans,
            resizer: Resizer::new(),
            options: ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        }
    }

    /// One tensor per spec: CHW, or for crop specs `tiles`² CHW crops one after the other.
    pub fn prepare(&mut self, image: &RgbImage) -> Result<Vec<Vec<f32>>, PreprocessError> {
        let src = ImageRef::new(
            image.width(),
            image.height(),
            image.as_raw(),
            PixelType::U8x3,
        )
        .map_err(|e| PreprocessError(e.to_string()))?;
        let mut out = Vec::with_capacity(self.plans.len());
        for (plan, dst) in self.plans.iter().zip(&mut self.resized) {
            if let Some(tiles) = plan.tiles {
                out.push(crops(
                    &mut self.resizer,
                    &self.options,
                    plan,
                    tiles,
                    image,
                    &src,
                )?);
                continue;
            }
            let rgb = if (image.width(), image.height()) == (plan.width, plan.height) {
                image.as_raw().as_slice()
            } else {
                self.resizer
                    .resize(&src, dst, &self.options)
                    .map_err(|e| PreprocessError(e.to_string()))?;
                dst.buffer()
            };
            out.push(to_chw(plan, rgb));
        }
        Ok(out)
    }
}

/// The crop-mode tensor of one image: `tiles`² CHW crops, after scaling a small image up.
fn crops(
    resizer: &mut Resizer,
    options: &ResizeOptions,
    plan: &Plan,
    tiles: u32,
    image: &RgbImage,
    src: &ImageRef,
) -> Result<Vec<f32>, PreprocessError> {
    let (w, h) = fill_size(image.width(), image.height(), plan.width, plan.height);
    let filled;
    let pixels = if (w, h) == (image.width(), image.height()) {
        image.as_raw().as_slice()
    } else {
        let mut up = Image::new(w, h, PixelType::U8x3);
        resizer
            .resize(src, &mut up, options)
            .map_err(|e| PreprocessError(e.to_string()))?;
        filled = up;
        filled.buffer()
    };
    let stride = w as usize * 3;
    let row = plan.width as usize * 3;
    let mut tensor = Vec::with_capacity(plan.len() * (tiles * tiles) as usize);
    let mut tile = vec![0u8; plan.len()];
    for y0 in tile_offsets(h, plan.height, tiles) {
        for x0 in tile_offsets(w, plan.width, tiles) {
            for (r, dst) in tile.chunks_exact_mut(row).enumerate() {
                let start = (y0 as usize + r) * stride + x0 as usize * 3;
                dst.copy_from_slice(&pixels[start..start + row]);
            }
            tensor.extend(to_chw(plan, &tile));
        }
    }
    Ok(tensor)
}

fn to_chw(plan: &Plan, rgb: &[u8]) -> Vec<f32> {
    let plane = plan.width as usize * plan.height as usize;
    let mut tensor = vec![0f32; plan.len()];
    let (r, rest) = tensor.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        r[i] = plan.lut[0][px[0] as usize];
        g[i] = plan.lut[1][px[1] as usize];
        b[i] = plan.lut[2][px[2] as usize];
    }
    tensor
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u32) -> InputSpec {
        InputSpec::for_tests(size, None)
    }

    fn crop_spec(size: u32, tiles: u32) -> InputSpec {
        InputSpec::for_tests(size, Some(tiles))
    }

    /// Byte `x + 10 * y` in every channel, so a value tells where it was cropped from.
    fn ramp(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x + 10 * y) as u8;
            image::Rgb([v, v, v])
        })
    }

    fn byte_at(tensor: &[f32], index: usize) -> u8 {
        ((tensor[index] * 0.229 + 0.485) * 255.0).round() as u8
    }

    #[test]
    fn centre_crop_keeps_native_pixels() {
        let mut p = Preprocessor::new(&[crop_spec(4, 1)]);
        let t = p.prepare(&ramp(10, 9)).unwrap().remove(0);
        assert_eq!(t.len(), 3 * 16);
        // Offsets round((10-4)/2)=3 and round((9-4)/2)=round(2.5)=2 (half to even).
        assert_eq!(byte_at(&t, 0), 3 + 10 * 2);
        assert_eq!(byte_at(&t, 15), 6 + 10 * 5);
    }

    #[test]
    fn tiles_span_the_image_corner_to_corner() {
        let mut p = Preprocessor::new(&[crop_spec(4, 2)]);
        let t = p.prepare(&ramp(10, 8)).unwrap().remove(0);
        assert_eq!(t.len(), 4 * 3 * 16);
        let first = |tile: usize| byte_at(&t, tile * 48);
        assert_eq!([first(0), first(1), first(2), first(3)], [0, 6, 40, 46]);
    }

    #[test]
    fn small_images_are_scaled_up_to_cover_the_crop() {
        let mut p = Preprocessor::new(&[crop_spec(4, 1)]);
        let t = p
            .prepare(&RgbImage::from_pixel(2, 3, image::Rgb([9, 9, 9])))
            .unwrap();
        assert_eq!(t[0].len(), 3 * 16);
        assert!(t[0].iter().take(16).all(|&v| byte_at(&[v], 0) == 9));
    }

    #[test]
    fn normalizes_planar_with_imagenet_stats() {
        let img = RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 128]));
        let mut p = Preprocessor::new(&[spec(4)]);
        let t = p.prepare(&img).unwrap().remove(0);
        assert_eq!(t.len(), 3 * 16);
        assert!((t[0] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((t[16] - (0.0 - 0.456) / 0.224).abs() < 1e-5);
        assert!((t[32] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-5);
    }

    #[test]
    fn antialiased_downscale_averages_fine_detail() {
        // A one-pixel checkerboard halved must come out mid-grey, not aliased to black or white.
        let img = RgbImage::from_fn(64, 64, |x, y| {
            let v = if (x + y) % 2 == 0 { 255 } else { 0 };
            image::Rgb([v, v, v])
        });
        let mut p = Preprocessor::new(&[spec(32)]);
        let t = p.prepare(&img).unwrap().remove(0);
        let mid = (0.5 - 0.485) / 0.229;
        let inner = &t[32 * 8..32 * 24];
        assert!(
            inner.iter().all(|v| (v - mid).abs() < 0.05),
            "{:?}",
            &inner[..4]
        );
    }
}
