//! PNG output: a grid of images, and the size of one image as a PNG (the complexity of the
//! complexity-corrected outlier score).

use std::path::Path;

use super::ImageSpec;
use crate::DataError;

fn to_dynamic(img: &[u8], spec: ImageSpec) -> image::DynamicImage {
    let (w, h) = (spec.width as u32, spec.height as u32);
    if spec.channels == 1 {
        image::DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w, h, img.to_vec()).expect("C x H x W bytes"),
        )
    } else {
        let hw = spec.height * spec.width;
        let mut rgb = vec![0u8; 3 * hw];
        for i in 0..hw {
            for c in 0..3 {
                rgb[3 * i + c] = img[c * hw + i];
            }
        }
        image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, rgb).expect("3 x H x W"))
    }
}

/// Length in bits of the image losslessly compressed as PNG at the best compression: the
/// complexity estimate of Serrà et al. (2020) for complexity-corrected outlier scores.
pub fn png_bits(img: &[u8], spec: ImageSpec) -> usize {
    use image::ImageEncoder;
    use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
    let mut bytes = Vec::new();
    let dynamic = to_dynamic(img, spec);
    let encoder =
        PngEncoder::new_with_quality(&mut bytes, CompressionType::Best, PngFilter::Adaptive);
    let color = if spec.channels == 1 {
        image::ExtendedColorType::L8
    } else {
        image::ExtendedColorType::Rgb8
    };
    let raw = match &dynamic {
        image::DynamicImage::ImageLuma8(g) => g.as_raw().clone(),
        other => other.to_rgb8().into_raw(),
    };
    encoder
        .write_image(&raw, spec.width as u32, spec.height as u32, color)
        .expect("PNG encoding into memory cannot fail");
    bytes.len() * 8
}

/// Length in bits of the image's raw bytes (`C x H x W`) compressed by a general-purpose
/// compressor, DEFLATE at its best level (no image filters, no header): the second complexity
/// estimate, as Serrà et al. (2020) find the choice of compressor matters.
pub fn deflate_bits(img: &[u8], spec: ImageSpec) -> usize {
    use std::io::Write;
    debug_assert_eq!(img.len(), spec.len());
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder
        .write_all(img)
        .expect("compressing into memory cannot fail");
    encoder
        .finish()
        .expect("compressing into memory cannot fail")
        .len()
        * 8
}

/// Save images (`C x H x W` bytes each) as one PNG grid of `cols` columns, each image scaled
/// up `scale` times (nearest neighbour), with a 2-pixel white border between images.
pub fn save_grid(
    path: &Path,
    images: &[Vec<u8>],
    spec: ImageSpec,
    cols: usize,
    scale: usize,
) -> Result<(), DataError> {
    let cols = cols.max(1);
    let rows = images.len().div_ceil(cols).max(1);
    let (cw, ch) = (spec.width * scale + 2, spec.height * scale + 2);
    let mut canvas = image::RgbImage::from_pixel(
        (cols * cw + 2) as u32,
        (rows * ch + 2) as u32,
        image::Rgb([255, 255, 255]),
    );
    let hw = spec.height * spec.width;
    for (k, img) in images.iter().enumerate() {
        let (r, c) = (k / cols, k % cols);
        for y in 0..spec.height * scale {
            for x in 0..spec.width * scale {
                let i = (y / scale) * spec.width + x / scale;
                let px = if spec.channels == 1 {
                    [img[i]; 3]
                } else {
                    [img[i], img[hw + i], img[2 * hw + i]]
                };
                canvas.put_pixel(
                    (2 + c * cw + x) as u32,
                    (2 + r * ch + y) as u32,
                    image::Rgb(px),
                );
            }
        }
    }
    // Encoded in memory, written beside the path and renamed over it: an error or a full disk
    // never leaves a truncated image under the real name.
    let err = |reason: String| DataError::Image {
        path: path.display().to_string(),
        reason,
    };
    let mut bytes = std::io::Cursor::new(Vec::new());
    canvas
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| err(e.to_string()))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{}.partial.{name}", std::process::id()));
    let written =
        std::fs::write(&tmp, bytes.into_inner()).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e.to_string()));
    }
    Ok(())
}

/// Model values in `[0, 1)` back to 8-bit pixels (the bin each value falls in).
pub fn to_pixels(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .map(|&v| (f64::from(v) * 256.0).floor().clamp(0.0, 255.0) as u8)
        .collect()
}
