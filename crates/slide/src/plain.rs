//! Plain PNG, JPEG and strip TIFF images, decoded whole into memory.
//!
//! These have one level and usually no resolution. The whole image is held
//! decoded (3 bytes per pixel), so a 40k×40k PNG needs about 4.8 GB of memory.

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
        reader.no_limits();
        let pixels = reader.decode().map_err(decode_err)?.into_rgb8();
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
