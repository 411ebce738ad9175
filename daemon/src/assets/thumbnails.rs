//! Thumbnails of raster images (PNG, JPEG, WebP, GIF's first frame): PNG files whose long
//! side is each configured size (never larger than the original), made on the blocking pool.
//!
//! A hostile image must fail its asset, never the daemon: the header's dimensions are checked
//! against `assets.max_image_pixels` before anything is decoded (a few hundred bytes can claim
//! 100000 × 100000 pixels, 40 GB once decoded), and the decoder runs under `image`'s
//! allocation limit as a second guard.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use super::{BlobFiles, TempPath};

#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("the image is {width}×{height} pixels, more than the {max} pixels allowed")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("the image cannot be decoded: {0}")]
    Decode(#[from] image::ImageError),
    #[error("the thumbnail cannot be written: {0}")]
    Io(#[from] io::Error),
}

/// The decoder limits for an image of at most `max_pixels` pixels: at most 8 bytes a pixel
/// (16-bit RGBA), whatever the decoder allocates besides.
fn limits(max_pixels: u64) -> Limits {
    let mut limits = Limits::default();
    limits.max_alloc = Some(max_pixels.saturating_mul(8));
    limits
}

fn reader(
    path: &Path,
    format: ImageFormat,
    max_pixels: u64,
) -> io::Result<ImageReader<BufReader<File>>> {
    let mut reader = ImageReader::with_format(BufReader::new(File::open(path)?), format);
    reader.limits(limits(max_pixels));
    Ok(reader)
}

/// The width and height an image's header states; reads nothing else.
pub fn dimensions(path: &Path, format: ImageFormat) -> Result<(u32, u32), ThumbnailError> {
    let reader = ImageReader::with_format(BufReader::new(File::open(path)?), format);
    Ok(reader.into_decoder()?.dimensions())
}

/// Makes the thumbnails of the bytes with this hash, into temporary files; returns them by
/// size. Sizes whose file exists already are skipped.
pub fn render(
    files: &BlobFiles,
    sha256: &str,
    format: ImageFormat,
    sizes: &[u32],
    max_pixels: u64,
) -> Result<Vec<(u32, TempPath)>, ThumbnailError> {
    let mut missing: Vec<u32> = sizes
        .iter()
        .copied()
        .filter(|size| !files.thumbnail_path(sha256, *size).exists())
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    // Largest first, each made from the one before: far less work than from the original.
    missing.sort_unstable_by(|a, b| b.cmp(a));

    let source = files.blob_path(sha256);
    let decoder = reader(&source, format, max_pixels)?.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ThumbnailError::TooManyPixels {
            width,
            height,
            max: max_pixels,
        });
    }
    let mut image = DynamicImage::from_decoder(decoder)?;

    let mut made = Vec::with_capacity(missing.len());
    for size in missing {
        if image.width().max(image.height()) > size {
            image = image.thumbnail(size, size);
        }
        let temp = files.temp_path("thumbnail");
        write_png(&image, temp.path())?;
        made.push((size, temp));
    }
    Ok(made)
}

/// Writes `image` as an 8-bit PNG and syncs it, so that renaming it into place is safe.
fn write_png(image: &DynamicImage, path: &Path) -> Result<(), ThumbnailError> {
    // 8 bits a channel whatever the source: thumbnails are for screens, and half the size.
    let image = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    };
    let mut writer = BufWriter::new(File::create(path)?);
    image.write_to(&mut writer, ImageFormat::Png)?;
    writer.flush()?;
    let file = writer
        .into_inner()
        .map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(())
}
