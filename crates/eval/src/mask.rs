use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use wsiseg_slide::{Rect, Slide};

use crate::EvalError;

/// A label mask read top to bottom in bands of rows.
pub enum MaskSource {
    /// An 8-bit single-channel PNG.
    Png {
        /// The file.
        path: PathBuf,
        /// Its decoder, at `next_row`.
        reader: Box<png::Reader<BufReader<File>>>,
        /// Width and height.
        size: (u32, u32),
        /// The next row the decoder gives.
        next_row: u32,
    },
    /// A slide (pyramidal TIFF mask), read at one level.
    Slide {
        /// The open slide.
        slide: Box<dyn Slide>,
        /// The level read.
        level: u32,
        /// That level's width and height.
        size: (u32, u32),
        /// A palette TIFF's colours back to labels (OpenSlide renders colours).
        palette: Option<wsiseg_slide::PaletteLookup>,
    },
    /// Annotations drawn at a prediction's pixels.
    Polygons(crate::Raster),
}

impl MaskSource {
    /// Opens the mask at `path`. With `at_least`, a pyramidal mask is read at
    /// its smallest level that is still at least that large.
    pub fn open(path: &Path, at_least: Option<(u32, u32)>) -> Result<Self, EvalError> {
        let io = |source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut magic = [0u8; 8];
        let n = File::open(path)
            .and_then(|mut f| f.read(&mut magic))
            .map_err(io)?;
        if n == 8 && magic == *b"\x89PNG\r\n\x1a\n" {
            return Self::open_png(path);
        }
        let slide = wsiseg_slide::open(path).map_err(|source| EvalError::Slide {
            path: path.to_path_buf(),
            source,
        })?;
        let levels = slide.levels();
        let level = at_least
            .and_then(|(w, h)| levels.iter().rposition(|l| l.size.w >= w && l.size.h >= h))
            .unwrap_or(0);
        let s = levels[level].size;
        Ok(Self::Slide {
            slide,
            level: level as u32,
            size: (s.w, s.h),
            palette: wsiseg_slide::tiff_palette(path).map(|c| wsiseg_slide::PaletteLookup::new(&c)),
        })
    }

    fn open_png(path: &Path) -> Result<Self, EvalError> {
        let png_err = |source| EvalError::Png {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut decoder = png::Decoder::new(BufReader::new(file));
        decoder.set_transformations(png::Transformations::IDENTITY);
        let reader = decoder.read_info().map_err(png_err)?;
        let info = reader.info();
        if info.color_type != png::ColorType::Grayscale
            || info.bit_depth != png::BitDepth::Eight
            || info.interlaced
        {
            return Err(EvalError::PngFormat {
                path: path.to_path_buf(),
                detail: format!(
                    "{:?} {}-bit{}",
                    info.color_type,
                    info.bit_depth as u8,
                    if info.interlaced { ", interlaced" } else { "" }
                ),
            });
        }
        let size = (info.width, info.height);
        Ok(Self::Png {
            path: path.to_path_buf(),
            reader: Box::new(reader),
            size,
            next_row: 0,
        })
    }

    /// Width and height of the mask as read.
    pub fn size(&self) -> (u32, u32) {
        match self {
            Self::Png { size, .. } | Self::Slide { size, .. } => *size,
            Self::Polygons(raster) => raster.size(),
        }
    }

    /// Rows `y0..y0+n`, `width` bytes each. PNG masks are read forward only.
    pub fn rows(&mut self, y0: u32, n: u32) -> Result<Vec<u8>, EvalError> {
        match self {
            Self::Polygons(raster) => Ok(raster.rows(y0, n)),
            Self::Slide {
                slide,
                level,
                size,
                palette,
            } => {
                let rgb = slide
                    .read_inside(*level, Rect::new(0, i64::from(y0), size.0, n))
                    .map_err(|source| EvalError::Slide {
                        path: slide.path().to_path_buf(),
                        source,
                    })?;
                Ok(match palette {
                    Some(lookup) => lookup.labels(&rgb),
                    None => rgb.pixels().map(|p| p.0[0]).collect(),
                })
            }
            Self::Png {
                path,
                reader,
                size,
                next_row,
            } => {
                assert!(y0 >= *next_row, "PNG masks are read forward only");
                let mut out = Vec::with_capacity((size.0 * n) as usize);
                while *next_row < y0 + n {
                    let row = reader
                        .next_row()
                        .map_err(|source| EvalError::Png {
                            path: path.clone(),
                            source,
                        })?
                        .ok_or_else(|| EvalError::Io {
                            path: path.clone(),
                            source: std::io::ErrorKind::UnexpectedEof.into(),
                        })?;
                    if *next_row >= y0 {
                        out.extend_from_slice(row.data());
                    }
                    *next_row += 1;
                }
                Ok(out)
            }
        }
    }
}
