//! Plain PNG, JPEG and strip TIFF images, decoded whole into memory.
//!
//! These have one level and usually no resolution. The whole image is held
//! decoded (3 bytes per pixel), so a 40k×40k PNG needs about 4.8 GB of memory;
//! an image whose header declares more than half of the machine's memory is
//! refused before anything is allocated ([`SlideError::TooLarge`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use image::{ImageFormat, ImageReader, RgbImage};

use crate::{Level, Mpp, Rect, Size, Slide, SlideError};

/// The plain image format of `path` from its first bytes, if it is one.
pub(crate) fn sniff(path: &Path) -> Result<Option<ImageFormat>, SlideError> {
    let mut head = [0u8; 32];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|source| SlideError::Io {
            path: path.to_path_buf(),
            what: "file",
            source,
        })?;
    Ok(match image::guess_format(&head[..n]) {
        Ok(f @ (ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Tiff)) => Some(f),
        _ => None,
    })
}

/// A decoded plain image: a slide with one level.
pub struct PlainImage {
    path: PathBuf,
    format: ImageFormat,
    pixels: RgbImage,
    levels: [Level; 1],
}

impl PlainImage {
    pub fn open(path: &Path, format: ImageFormat) -> Result<Self, SlideError> {
        let decode_err = |source| SlideError::Decode {
            path: path.to_path_buf(),
            source,
        };
        let mut reader = ImageReader::open(path).map_err(|source| SlideError::Io {
            path: path.to_path_buf(),
            what: "image",
            source,
        })?;
        reader.set_format(format);
        let mut decoder = reader.into_decoder().map_err(decode_err)?;
        // Check the size the header declares before allocating anything:
        // a 44 KB JPEG may declare 65000×65000 pixels.
        let (width, height) = image::ImageDecoder::dimensions(&decoder);
        let decoded = image::ImageDecoder::total_bytes(&decoder);
        let rgb = u64::from(width) * u64::from(height) * 3;
        let is_rgb8 = image::ImageDecoder::color_type(&decoder) == image::ColorType::Rgb8;
        let needed = if is_rgb8 {
            rgb
        } else {
            decoded.saturating_add(rgb)
        };
        let limit = memory_limit();
        if needed > limit {
            let gib = |b: u64| b as f64 / f64::from(1u32 << 30);
            return Err(SlideError::TooLarge {
                path: path.to_path_buf(),
                width,
                height,
                needed_gib: gib(needed),
                limit_gib: gib(limit),
            });
        }
        let mut limits = image::Limits::no_limits();
        limits.max_alloc = Some(limit);
        image::ImageDecoder::set_limits(&mut decoder, limits).map_err(decode_err)?;
        let pixels = image::DynamicImage::from_decoder(decoder)
            .map_err(decode_err)?
            .into_rgb8();
        let size = Size::new(pixels.width(), pixels.height());
        Ok(Self {
            path: path.to_path_buf(),
            format,
            pixels,
            levels: [Level {
                size,
                downsample: 1.0,
            }],
        })
    }
}

/// Half of this machine's memory: the most a plain image may take decoded.
fn memory_limit() -> u64 {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    if pages > 0 && page > 0 {
        (pages as u64).saturating_mul(page as u64) / 2
    } else {
        8 << 30
    }
}

impl Slide for PlainImage {
    fn path(&self) -> &Path {
        &self.path
    }
    fn format(&self) -> &str {
        match self.format {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpeg",
            _ => "tiff",
        }
    }
    fn levels(&self) -> &[Level] {
        &self.levels
    }
    fn mpp(&self) -> Option<Mpp> {
        None
    }
    fn read_inside(&self, level: u32, rect: Rect) -> Result<RgbImage, SlideError> {
        crate::slide::level(self, level)?;
        Ok(
            image::imageops::crop_imm(&self.pixels, rect.x as u32, rect.y as u32, rect.w, rect.h)
                .to_image(),
        )
    }
}
