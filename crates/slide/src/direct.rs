//! Direct access to the JPEG tiles of a tiled TIFF (Aperio SVS, generic
//! tiled TIFF, wsiseg's synthetic slides): the compressed bytes of each tile,
//! decoded without OpenSlide's compositing. Used to measure the raw decode
//! rate of a slide's own tiles.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::RgbImage;
use tiff::decoder::Decoder;
use tiff::tags::Tag;

use crate::SlideError;

/// The JPEG tiles of one pyramid level.
pub struct JpegTiles {
    path: PathBuf,
    pub tile_width: u32,
    pub tile_height: u32,
    pub tiles_across: u32,
    pub tiles_down: u32,
    offsets: Vec<u64>,
    counts: Vec<u64>,
    tables: Option<Vec<u8>>,
    /// Photometric RGB: the JPEG data is RGB, not YCbCr (Aperio writes this).
    rgb_jpeg: bool,
}

/// An Adobe APP14 segment with transform 0: tells a JPEG decoder that the
/// components are RGB, not YCbCr.
const ADOBE_RGB: [u8; 16] = [
    0xFF, 0xEE, 0x00, 0x0E, b'A', b'd', b'o', b'b', b'e', 0x00, 0x64, 0x00, 0x00, 0x00, 0x00, 0x00,
];

impl JpegTiles {
    /// The `level`-th tiled IFD of the TIFF at `path` (untiled IFDs, such as
    /// an Aperio thumbnail or label, are not levels). `None` when that level
    /// is not JPEG-compressed.
    pub fn open(path: &Path, level: u32) -> Result<Option<Self>, SlideError> {
        let corrupt = |detail: String| SlideError::Corrupt {
            path: path.to_path_buf(),
            detail,
        };
        let file = File::open(path).map_err(|source| SlideError::Io {
            path: path.to_path_buf(),
            what: "slide",
            source,
        })?;
        let mut d = Decoder::new(BufReader::new(file)).map_err(|e| corrupt(e.to_string()))?;
        let mut seen = 0;
        loop {
            if d.find_tag(Tag::TileWidth)
                .map_err(|e| corrupt(e.to_string()))?
                .is_some()
            {
                if seen == level {
                    break;
                }
                seen += 1;
            }
            if !d.more_images() {
                return Ok(None);
            }
            d.next_image().map_err(|e| corrupt(e.to_string()))?;
        }
        if d.get_tag_u32(Tag::Compression).ok() != Some(7) {
            return Ok(None);
        }
        let get = |d: &mut Decoder<_>, t| {
            d.get_tag_u32(t)
                .map_err(|e: tiff::TiffError| corrupt(e.to_string()))
        };
        let (tw, th) = (get(&mut d, Tag::TileWidth)?, get(&mut d, Tag::TileLength)?);
        let (w, h) = d.dimensions().map_err(|e| corrupt(e.to_string()))?;
        let offsets = d
            .get_tag_u64_vec(Tag::TileOffsets)
            .map_err(|e| corrupt(e.to_string()))?;
        let counts = d
            .get_tag_u64_vec(Tag::TileByteCounts)
            .map_err(|e| corrupt(e.to_string()))?;
        let tables = d.get_tag_u8_vec(Tag::JPEGTables).ok();
        let rgb_jpeg = d.get_tag_u32(Tag::PhotometricInterpretation).ok() == Some(2);
        Ok(Some(Self {
            path: path.to_path_buf(),
            tile_width: tw,
            tile_height: th,
            tiles_across: w.div_ceil(tw),
            tiles_down: h.div_ceil(th),
            offsets,
            counts,
            tables,
            rgb_jpeg,
        }))
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The compressed bytes of tile `n` (raster order), as a complete JPEG
    /// stream (shared JPEGTables spliced in when the file has them).
    pub fn raw(&self, file: &mut File, n: usize) -> Result<Vec<u8>, SlideError> {
        let io = |source| SlideError::Io {
            path: self.path.clone(),
            what: "tile",
            source,
        };
        let mut buf = vec![0u8; self.counts[n] as usize];
        file.seek(SeekFrom::Start(self.offsets[n])).map_err(io)?;
        file.read_exact(&mut buf).map_err(io)?;
        let stream = match &self.tables {
            // Tables stream: SOI … EOI; tile stream: SOI … EOI.
            Some(t) if t.len() > 4 && buf.len() > 2 => [&t[..t.len() - 2], &buf[2..]].concat(),
            _ => buf,
        };
        Ok(if self.rgb_jpeg && stream.len() > 2 {
            [&stream[..2], &ADOBE_RGB[..], &stream[2..]].concat()
        } else {
            stream
        })
    }

    /// Tile `n` decoded to RGB (the JPEG decoder of the `image` crate).
    pub fn decode(&self, file: &mut File, n: usize) -> Result<RgbImage, SlideError> {
        let bytes = self.raw(file, n)?;
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
            .map(|i| i.into_rgb8())
            .map_err(|source| SlideError::Decode {
                path: self.path.clone(),
                source,
            })
    }
}
