//! RGB8 → model input tensor, matched to the training side: resize to the model's size with no
//! crop, bilinear with antialias (Pillow's convolution resampler, which torchvision's
//! `Resize((h, w), antialias=True)` uses on PIL images), then scale and normalize per channel
//! into planar (CHW) f32.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use crate::manifest::InputSpec;
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

    /// One CHW tensor per spec.
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

/// The distinct input specs of a set of models, and for each model the index of its spec.
pub fn distinct_specs<'a>(
    specs: impl IntoIterator<Item = &'a InputSpec>,
) -> (Vec<InputSpec>, Vec<usize>) {
    let mut distinct: Vec<InputSpec> = Vec::new();
    let mut index = Vec::new();
    for spec in specs {
        // The input name differs between otherwise identical models and does not change pixels.
        let same = |d: &InputSpec| {
            (d.height, d.width, d.scale, d.mean, d.std)
                == (spec.height, spec.width, spec.scale, spec.mean, spec.std)
        };
        match distinct.iter().position(same) {
            Some(i) => index.push(i),
            None => {
                index.push(distinct.len());
                distinct.push(spec.clone());
            }
        }
    }
    (distinct, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(size: u32) -> InputSpec {
        InputSpec {
            name: "input".into(),
            layout: "NCHW".into(),
            color: "RGB".into(),
            height: size,
            width: size,
            resize: "bilinear_antialias".into(),
            scale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
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

    #[test]
    fn equal_specs_share_one_tensor() {
        let mut other = spec(224);
        other.name = "pixel_values".into();
        let (distinct, index) = distinct_specs([&spec(224), &spec(256), &other]);
        assert_eq!(distinct.len(), 2);
        assert_eq!(index, vec![0, 1, 0]);
    }
}
